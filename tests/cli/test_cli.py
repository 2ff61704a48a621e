"""``pea`` against a real control plane on loopback: every command through ``tui.cli.run`` (the same
code path as the console script), plus the installed script itself in a subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from controlplane.api import ConfigMap, Event, Node, ObjectMeta, Pod, ReplicationController, Secret, Service
from controlplane.api.core import ObjectReference
from controlplane.client import Client, NotFound
from controlplane.client.apply import LAST_APPLIED
from controlplane.client.manifests import load
from controlplane.server.controlplane import ControlPlane
from tests.cli.conftest import pea
from tests.support import eventually
from tui.cli import run
from tui.printers import align, error_line, to_yaml

# A pod the replication manager made for the seed's php-controller RC.
RC_POD = re.compile(r"pod/php-controller-[a-z0-9]{5}")
SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds"
PEA = Path(sys.executable).with_name("pea")
# The seed manifests as the blogs meant them (their two mistakes live in mistakes/).
CORRECTED_SEEDS = sorted(p.name for p in SEEDS.glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("isolated_config")


def seed(name: str) -> str:
    return str(SEEDS / name)


def seed_text(name: str) -> str:
    return (SEEDS / name).read_text()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def header_cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def is_subset(wanted: Any, got: Any) -> bool:
    """Whether every field of ``wanted`` is in ``got`` with the same value (lists element by element)."""
    if isinstance(wanted, dict):
        return isinstance(got, dict) and all(k in got and is_subset(v, got[k]) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(got, list)
            and len(wanted) == len(got)
            and all(is_subset(w, g) for w, g in zip(wanted, got, strict=True))
        )
    return bool(wanted == got and type(wanted) is type(got))


# --- get -------------------------------------------------------------------------------------------


async def test_get_namespaces_table(controlplane: ControlPlane) -> None:
    r = await pea(controlplane, "get", "ns")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert header_cells(lines[0]) == ["NAME", "STATUS", "AGE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(rows)
    # Left aligned columns: each cell starts where its header starts.
    assert rows["default"].index("Active") == lines[0].index("STATUS")
    assert lines[0].index("STATUS") == len("kube-node-lease") + 3


async def test_get_pods_wide_labels_and_all_namespaces(controlplane: ControlPlane) -> None:
    assert (await pea(controlplane, "apply", "-f", seed("000-php-pod.yaml"))).code == 0
    plain = await pea(controlplane, "get", "pods")
    assert header_cells(plain.out.splitlines()[0]) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert plain.out.splitlines()[1].split()[:4] == ["php-test", "0/1", "Pending", "0"]

    wide = await pea(controlplane, "get", "pods", "-o", "wide")
    assert header_cells(wide.out.splitlines()[0]) == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES",
    ]  # fmt: skip

    labels = await pea(controlplane, "get", "pods", "--show-labels")
    header, row = labels.out.splitlines()
    assert header_cells(header)[-1] == "LABELS"
    assert row.split()[-1] == "name=php-test"

    everywhere = await pea(controlplane, "get", "pods", "-A")
    header, row = everywhere.out.splitlines()
    assert header_cells(header)[:2] == ["NAMESPACE", "NAME"]
    assert row.split()[:2] == ["default", "php-test"]


async def test_get_empty_list_says_so_on_stderr(controlplane: ControlPlane) -> None:
    r = await pea(controlplane, "get", "pods")
    assert (r.code, r.out, r.err) == (0, "", "No resources found in default namespace.\n")
    r = await pea(controlplane, "get", "rc", "-n", "kube-system")
    assert r.err == "No resources found in kube-system namespace.\n"
    r = await pea(controlplane, "get", "nodes")
    assert r.err == "No resources found\n"


async def test_get_output_name_yaml_json(controlplane: ControlPlane) -> None:
    for f in ("000-php-pod.yaml", "000-php-controller.yaml", "000-php-service.yaml"):
        assert (await pea(controlplane, "apply", "-f", seed(f))).code == 0
    # The RC's pods (php-controller-xxxxx, made by the replication manager) are listed too.
    pods = (await pea(controlplane, "get", "pods", "-o", "name")).out.splitlines()
    assert "pod/php-test" in pods
    assert all(RC_POD.fullmatch(n) for n in pods if n != "pod/php-test")
    assert (
        await pea(controlplane, "get", "rc", "-o", "name")
    ).out == "replicationcontroller/php-controller\n"
    assert (await pea(controlplane, "get", "svc", "php-service", "-o", "name")).out == "service/php-service\n"

    one = await pea(controlplane, "get", "pod", "php-test", "-o", "yaml")
    obj = yaml.safe_load(one.out)
    assert (obj["kind"], obj["metadata"]["name"]) == ("Pod", "php-test")
    assert one.out.startswith("apiVersion: v1\nkind: Pod\nmetadata:\n")  # the server's key order
    assert "\n  - name: php-test\n" in one.out  # block style, lists not indented under their key
    assert 'resourceVersion: "' in one.out  # strings that look like numbers are double-quoted

    listed = yaml.safe_load((await pea(controlplane, "get", "pods", "-o", "yaml")).out)
    assert listed["kind"] == "List"
    listed_names = [i["metadata"]["name"] for i in listed["items"]]
    assert [n for n in listed_names if not RC_POD.fullmatch(f"pod/{n}")] == ["php-test"]

    as_json = await pea(controlplane, "get", "svc", "php-service", "-o", "json")
    assert json.loads(as_json.out)["spec"]["ports"][0]["port"] == 8081
    assert as_json.out.splitlines()[1] == '  "apiVersion": "v1",'


async def test_get_all_and_resource_slash_name(controlplane: ControlPlane) -> None:
    for f in ("000-php-pod.yaml", "000-php-controller.yaml", "000-php-service.yaml"):
        assert (await pea(controlplane, "apply", "-f", seed(f))).code == 0
    r = await pea(controlplane, "get", "all")
    assert r.code == 0
    names = [line.split()[0] for line in r.out.splitlines() if line and not line.startswith("NAME")]
    mine = [n for n in names if not RC_POD.fullmatch(n)]  # less the RC's pods
    assert mine == [
        "pod/php-test",
        "replicationcontroller/php-controller",
        "service/kubernetes",  # the API server's own, as in every Kubernetes cluster
        "service/php-service",
    ]
    assert "\n\nNAME " in r.out  # one table per kind, a blank line between them

    r = await pea(controlplane, "get", "rc/php-controller", "svc/php-service", "-o", "name")
    assert r.out == "replicationcontroller/php-controller\nservice/php-service\n"


async def test_get_errors(controlplane: ControlPlane) -> None:
    r = await pea(controlplane, "get", "pods", "web")
    assert (r.code, r.out, r.err) == (1, "", 'Error from server (NotFound): pods "web" not found\n')
    r = await pea(controlplane, "get", "foo")
    assert (r.code, r.err) == (1, 'error: the server doesn\'t have a resource type "foo"\n')
    r = await pea(controlplane, "get", "pods", "-o", "jsonpath={.items}")
    assert r.code == 1
    assert r.err.startswith('error: unable to match a printer suitable for the output format "jsonpath')
    r = await pea(controlplane, "get")
    assert r.code == 1
    assert r.err.startswith("error: you must specify the type of resource")


async def test_get_watch_prints_new_rows(controlplane: ControlPlane, client: Client) -> None:
    out, err = io.StringIO(), io.StringIO()
    task = asyncio.create_task(run(["get", "pods", "-w", "--server", controlplane.url], out, err))
    try:
        for _ in range(200):
            if err.getvalue():
                break
            await asyncio.sleep(0.05)
        assert err.getvalue() == "No resources found in default namespace.\n"
        await client.create_raw(
            _info("pods"), {"apiVersion": "v1", "kind": "Pod", **_pod_body("watched")}, "default"
        )
        for _ in range(200):
            if "watched" in out.getvalue():
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    lines = out.getvalue().splitlines()
    assert header_cells(lines[0])[:3] == ["NAME", "READY", "STATUS"]
    assert lines[1].split()[:3] == ["watched", "0/1", "Pending"]


def _info(plural: str) -> Any:
    from controlplane.api.registry import resolve

    return resolve(plural)


def _pod_body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


# --- apply -----------------------------------------------------------------------------------------


async def test_apply_creates_then_unchanged_then_configured(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    manifest = seed_text("000-php-pod.yaml")
    f = write(tmp_path / "pod.yaml", manifest)
    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "pod/php-test created\n")
    live = await client.get(Pod, "php-test", "default")
    recorded = json.loads((live.metadata.annotations or {})[LAST_APPLIED])
    expected = load([f])[0].object
    expected["metadata"]["namespace"] = "default"
    expected["metadata"]["annotations"] = {}  # as kubectl records it
    assert recorded == expected

    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "pod/php-test unchanged\n")

    write(
        tmp_path / "pod.yaml", manifest.replace("    name: php-test\n", "    name: php-test\n    tier: web\n")
    )
    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "pod/php-test configured\n")
    live = await client.get(Pod, "php-test", "default")
    assert live.metadata.labels == {"name": "php-test", "tier": "web"}


async def test_apply_keeps_a_label_added_by_pea_label(controlplane: ControlPlane, client: Client) -> None:
    assert (await pea(controlplane, "apply", "-f", seed("000-php-service.yaml"))).code == 0
    r = await pea(controlplane, "label", "svc", "php-service", "owner=ops")
    assert (r.code, r.out) == (0, "service/php-service labeled\n")
    r = await pea(controlplane, "apply", "-f", seed("000-php-service.yaml"))
    assert (r.code, r.out) == (0, "service/php-service unchanged\n")
    svc = await client.get(Service, "php-service", "default")
    assert svc.metadata.labels == {"name": "php-service", "owner": "ops"}


async def test_apply_keeps_replicas_set_by_scale(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    text = seed_text("000-php-controller.yaml").replace("  replicas: 2\n", "")
    f = write(tmp_path / "rc.yaml", text)
    assert (await pea(controlplane, "apply", "-f", f)).code == 0
    r = await pea(controlplane, "scale", "rc", "php-controller", "--replicas", "3")
    assert (r.code, r.out) == (0, "replicationcontroller/php-controller scaled\n")
    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "replicationcontroller/php-controller unchanged\n")
    rc = await client.get(ReplicationController, "php-controller", "default")
    assert rc.spec.replicas == 3


async def test_apply_removes_fields_dropped_from_the_manifest(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    original = seed_text("000-php-controller.yaml")
    text = original.replace("    name: php-controller\n", "    name: php-controller\n    tier: web\n", 1)
    f = write(tmp_path / "rc.yaml", text)
    assert (await pea(controlplane, "apply", "-f", f)).code == 0
    rc = await client.get(ReplicationController, "php-controller", "default")
    assert rc.metadata.labels == {"name": "php-controller", "tier": "web"}
    trimmed = original.replace("        - name: ENV_TEST_2\n          value: env_test_2\n", "")
    assert trimmed != original
    write(tmp_path / "rc.yaml", trimmed)
    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "replicationcontroller/php-controller configured\n")
    rc = await client.get(ReplicationController, "php-controller", "default")
    assert rc.spec.template is not None and rc.spec.template.spec is not None
    env = rc.spec.template.spec.containers[0].env or []
    assert [e.name for e in env] == ["ENV_TEST_1"]  # merged by name: only the dropped one went
    assert rc.metadata.labels == {"name": "php-controller"}


async def test_apply_typo_fails_strict_and_warns_otherwise(
    controlplane: ControlPlane, client: Client
) -> None:
    typo = seed("mistakes/000-typo-clusterIp-service.yaml")
    r = await pea(controlplane, "apply", "-f", typo)
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith(f'Error from server (Invalid): error when creating "{typo}": ')
    assert "spec.clusterIp" in r.err
    assert r.err.count("\n") == 1
    with pytest.raises(NotFound):
        await client.get(Service, "php-loadbalancer-service", "default")

    r = await pea(controlplane, "apply", "-f", typo, "--validate=warn")
    assert (r.code, r.out) == (0, "service/php-loadbalancer-service created\n")
    assert 'Warning: unknown field "spec.clusterIp"' in r.err
    svc = await client.get(Service, "php-loadbalancer-service", "default")
    # The misspelt field was dropped, not taken as clusterIP: the Service got an allocated one instead.
    assert svc.spec.cluster_ip and svc.spec.cluster_ip != "10.254.165.216"


async def test_apply_invalid_name_uses_kubernetes_wording(controlplane: ControlPlane) -> None:
    f = seed("mistakes/000-invalid-name-php-nodePort-service.yaml")
    r = await pea(controlplane, "apply", "-f", f)
    assert r.code == 1
    assert r.err.startswith(f'Error from server (Invalid): error when creating "{f}": ')
    assert 'metadata.name: Invalid value: "php-nodePort-service"' in r.err
    assert "1035 label must consist of lower case alphanumeric characters or '-'" in r.err
    assert r.err.count("\n") == 1


@pytest.mark.parametrize("name", CORRECTED_SEEDS)
async def test_corrected_seed_round_trips(controlplane: ControlPlane, name: str) -> None:
    r = await pea(controlplane, "apply", "-f", seed(name))
    assert r.code == 0, r
    assert r.err == ""
    for manifest in load([seed(name)]):
        kind = manifest.kind.lower()
        got = await pea(controlplane, "get", kind, manifest.name, "-o", "yaml")
        assert got.code == 0, got
        live = yaml.safe_load(got.out)
        assert is_subset(manifest.object, live), (manifest.object, live)


async def test_apply_sorts_continues_after_errors_and_fails_at_the_end(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    d = tmp_path / "app"
    d.mkdir()
    write(d / "a-pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: team}\n"
          "spec: {containers: [{name: c, image: busybox}]}\n")  # fmt: skip
    write(d / "b-bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name, namespace: team}\n"
          "spec: {ports: [{port: 80}]}\n")  # fmt: skip
    write(d / "c-ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
    r = await pea(controlplane, "apply", "-f", str(d))
    assert r.code == 1
    assert (
        r.out == "namespace/team created\npod/app created\n"
    )  # the namespace first, whatever the file order
    assert r.err.count("\n") == 1
    assert "Bad_Name" in r.err
    assert (await client.get(Pod, "app", "team")).metadata.name == "app"


async def test_apply_namespace_flag_conflict_and_manifest_namespace(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    f = write(
        tmp_path / "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: kube-public}\n",
    )
    r = await pea(controlplane, "apply", "-f", f, "-n", "default")
    assert r.code == 1
    assert r.err == (
        'error: the namespace from the provided object "kube-public" does not match the namespace "default". '
        "You must pass '--namespace=kube-public' to perform this operation.\n"
    )
    r = await pea(controlplane, "apply", "-f", f)
    assert (r.code, r.out) == (0, "configmap/settings created\n")
    assert (await client.get(ConfigMap, "settings", "kube-public")).metadata.namespace == "kube-public"

    g = write(
        tmp_path / "cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {a: b}\n"
    )
    r = await pea(controlplane, "apply", "-f", g, "-n", "kube-system")
    assert r.code == 0
    assert (await client.get(ConfigMap, "other", "kube-system")).data == {"a": "b"}


async def test_apply_dry_run_and_stdin(controlplane: ControlPlane, client: Client) -> None:
    text = seed_text("004-nginx-pod.yaml")
    r = await pea(controlplane, "apply", "-f", "-", "--dry-run=server", stdin=text)
    assert (r.code, r.out) == (0, "pod/nginx-pod created (server dry run)\n")
    with pytest.raises(NotFound):
        await client.get(Pod, "nginx-pod", "default")
    r = await pea(controlplane, "apply", "-f", "-", stdin=text)
    assert (r.code, r.out) == (0, "pod/nginx-pod created\n")


async def test_apply_input_errors(controlplane: ControlPlane, tmp_path: Path) -> None:
    r = await pea(controlplane, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert (r.code, r.err) == (1, f'error: the path "{tmp_path / "nope.yaml"}" does not exist\n')
    bad = write(tmp_path / "bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   labels: x\n")
    r = await pea(controlplane, "apply", "-f", bad)
    assert r.code == 1
    assert r.err.startswith(f"error: {bad}:5:10: ")
    assert r.err.count("\n") == 1
    r = await pea(controlplane, "apply", "-f", bad, "--validate=sometimes")
    assert r.code == 1
    assert r.err.startswith('error: invalid - validate option "sometimes"')
    r = await pea(controlplane, "apply")
    assert (r.code, r.err) == (1, "error: the following arguments are required: -f/--filename\n")


# --- create ----------------------------------------------------------------------------------------


async def test_create_from_file_and_already_exists(controlplane: ControlPlane) -> None:
    f = seed("004-my-service.yaml")
    r = await pea(controlplane, "create", "-f", f)
    assert (r.code, r.out) == (0, "service/my-service created\n")
    r = await pea(controlplane, "create", "-f", f)
    assert r.code == 1
    assert r.err == (
        f'Error from server (AlreadyExists): error when creating "{f}": '
        'services "my-service" already exists\n'
    )


async def test_create_configmap_from_literal_and_file(
    controlplane: ControlPlane, client: Client, tmp_path: Path
) -> None:
    conf = seed("001-nginx.conf")
    r = await pea(
        controlplane,
        "create", "configmap", "nginx-config",
        f"--from-file=nginx.conf={conf}", "--from-literal=mode=proxy",
    )  # fmt: skip
    assert (r.code, r.out) == (0, "configmap/nginx-config created\n")
    cm = await client.get(ConfigMap, "nginx-config", "default")
    assert isinstance(cm.data, dict)
    assert cm.data["mode"] == "proxy"
    assert cm.data["nginx.conf"] == seed_text("001-nginx.conf")

    (tmp_path / "blob.bin").write_bytes(b"\xff\x00\x01")
    r = await pea(controlplane, "create", "cm", "bin", f"--from-file={tmp_path / 'blob.bin'}")
    assert r.code == 0
    cm = await client.get(ConfigMap, "bin", "default")
    assert cm.binary_data == {"blob.bin": "/wAB"}

    r = await pea(controlplane, "create", "configmap", "dup", "--from-literal=a=1", "--from-literal=a=2")
    assert r.code == 1
    assert (
        r.err
        == 'error: cannot add key "a", another key by that name already exists in Data for ConfigMap "dup"\n'
    )
    r = await pea(controlplane, "create", "configmap", "bad", "--from-literal=novalue")
    assert (r.code, r.err) == (1, "error: invalid literal source novalue, expected key=value\n")


# --- describe --------------------------------------------------------------------------------------


async def _event(
    client: Client, obj: Any, kind: str, reason: str, message: str, uid: str | None = "same"
) -> None:
    meta = obj.metadata
    ev = Event(
        metadata=ObjectMeta(name=f"{meta.name}.{reason.lower()}", namespace=meta.namespace or "default"),
        involved_object=ObjectReference(
            kind=kind, name=meta.name, namespace=meta.namespace, uid=meta.uid if uid == "same" else uid
        ),
        reason=reason,
        message=message,
        type="Warning",
        count=1,
    )
    await client.create(ev)


async def test_describe_pod_with_events(controlplane: ControlPlane, client: Client) -> None:
    assert (await pea(controlplane, "apply", "-f", seed("000-php-pod.yaml"))).code == 0
    pod = await client.get(Pod, "php-test", "default")
    await _event(client, pod, "Pod", "Inspected", "looked at by the test")
    await _event(client, pod, "Pod", "NoUid", "recorded without the uid", uid=None)
    await _event(client, pod, "Pod", "Stale", "about an earlier pod of that name", uid="0000-old")
    r = await pea(controlplane, "describe", "pod", "php-test")
    assert r.code == 0, r
    text = r.out
    assert re.search(r"^Name:\s+php-test$", text, re.M)
    assert re.search(r"^Namespace:\s+default$", text, re.M)
    assert re.search(r"^Labels:\s+name=php-test$", text, re.M)
    assert re.search(r"^Annotations:\s+<none>$", text, re.M)  # last-applied is not shown
    assert re.search(r"^Status:\s+Pending$", text, re.M)
    assert re.search(r"^Node:\s+<none>$", text, re.M)
    assert "Containers:\n  php-test:\n" in text
    assert re.search(r"^    Image:\s+192\.168\.174\.131:5000/php-base:1\.0$", text, re.M)
    assert re.search(r"^    Port:\s+80/TCP$", text, re.M)
    assert re.search(r"^    Host Port:\s+80/TCP$", text, re.M)
    assert re.search(r"^      ENV_TEST_1:\s+env_test_1$", text, re.M)
    events = text[text.index("\nEvents:\n") :].splitlines()
    assert header_cells(events[2]) == ["Type", "Reason", "Age", "From", "Message"]
    ours = [line for line in events[4:] if "Inspected" in line]
    assert len(ours) == 1
    assert ours[0].split()[:2] == ["Warning", "Inspected"]
    assert ours[0].endswith("  looked at by the test")
    assert any("NoUid" in line for line in events[4:])
    assert not any("Stale" in line for line in events[4:])
    # Values in a section are aligned: every top-level "Key:" cell has the same width.
    starts = {line.index(line.split(":", 1)[1].strip()) for line in text.splitlines()[:4]}
    assert len(starts) == 1


async def test_describe_rc_service_and_no_events(controlplane: ControlPlane, client: Client) -> None:
    for f in ("000-php-controller.yaml", "000-php-nodeport-service.yaml"):
        assert (await pea(controlplane, "apply", "-f", seed(f))).code == 0

    async def described() -> str | None:
        # The replication manager creates two pods and says so in events; wait for both.
        text = (await pea(controlplane, "describe", "rc", "php-controller")).out
        created = re.findall(r"^  Normal\s+SuccessfulCreate\s.*Created pod: php-controller-", text, re.M)
        return text if "2 current / 2 desired" in text and len(created) == 2 else None

    rc = await eventually(described, "the RC's two pods and their events")
    assert re.search(r"^Selector:\s+name=php-test-pod$", rc, re.M)
    assert re.search(r"^Replicas:\s+2 current / 2 desired$", rc, re.M)
    assert re.search(r"^Pods Status:\s+\d+ Running / \d+ Waiting / 0 Succeeded / 0 Failed$", rc, re.M)
    assert "Pod Template:\n" in rc
    assert re.search(r"^Events:\n", rc, re.M)

    svc = (await pea(controlplane, "describe", "svc/php-nodeport-service")).out
    assert re.search(r"^Type:\s+NodePort$", svc, re.M)
    assert re.search(r"^Port:\s+<unset>\s+8081/TCP$", svc, re.M)
    assert re.search(r"^TargetPort:\s+80/TCP$", svc, re.M)
    assert re.search(r"^NodePort:\s+<unset>\s+30001/TCP$", svc, re.M)
    assert re.search(r"^Endpoints:\s+<none>$", svc, re.M)
    assert re.search(r"^Events:\s+<none>$", svc, re.M)


async def test_describe_configmap_secret_namespace_node(controlplane: ControlPlane, client: Client) -> None:
    await client.create(ConfigMap(metadata=ObjectMeta(name="conf"), data={"key": "line1\nline2"}))
    await client.create(Secret(metadata=ObjectMeta(name="creds"), string_data={"password": "s3cret"}))
    await client.create(Node(metadata=ObjectMeta(name="node-1")))
    cm = (await pea(controlplane, "describe", "cm", "conf")).out
    assert "Data\n====\nkey:\n----\nline1\nline2\n" in cm
    secret = (await pea(controlplane, "describe", "secret", "creds")).out
    assert re.search(r"^Type:\s+Opaque$", secret, re.M)
    assert re.search(r"^password:\s+6 bytes$", secret, re.M)
    assert "s3cret" not in secret and "czNjcmV0" not in secret
    ns = (await pea(controlplane, "describe", "ns", "default")).out
    assert re.search(r"^Status:\s+Active$", ns, re.M)
    node = await pea(controlplane, "describe", "node", "node-1")
    assert node.code == 0
    assert re.search(r"^Name:\s+node-1$", node.out, re.M)
    assert re.search(r"^Non-terminated Pods:\s+\(0 in total\)$", node.out, re.M)
    missing = await pea(controlplane, "describe", "pod", "ghost")
    assert (missing.code, missing.err) == (1, 'Error from server (NotFound): pods "ghost" not found\n')


# --- delete / scale / label / annotate -------------------------------------------------------------


async def test_delete_by_name_selector_file_and_all(controlplane: ControlPlane, client: Client) -> None:
    info = _info("pods")
    for name, app in (("a", "web"), ("b", "web"), ("c", "db"), ("d", "db")):
        await client.create_raw(
            info, {"apiVersion": "v1", "kind": "Pod", **_pod_body(name, {"app": app})}, "default"
        )
    r = await pea(controlplane, "delete", "pod", "a")
    assert (r.code, r.out) == (0, 'pod "a" deleted\n')
    r = await pea(controlplane, "delete", "pods", "-l", "app=web", "--now")
    assert (r.code, r.out) == (0, 'pod "b" deleted\n')
    r = await pea(controlplane, "delete", "pod", "c", "--force", "--grace-period=0")
    assert (r.code, r.out) == (0, 'pod "c" force deleted\n')
    assert r.err.startswith("Warning: Immediate deletion does not wait")
    r = await pea(controlplane, "delete", "pods", "--all")
    assert (r.code, r.out) == (0, 'pod "d" deleted\n')
    assert (await client.list(Pod, "default")).items == []

    f = seed("000-php-service.yaml")
    assert (await pea(controlplane, "apply", "-f", f)).code == 0
    r = await pea(controlplane, "delete", "-f", f)
    assert (r.code, r.out) == (0, 'service "php-service" deleted\n')
    r = await pea(controlplane, "delete", "-f", f)
    assert r.code == 1
    assert (
        r.err
        == f'Error from server (NotFound): error when deleting "{f}": services "php-service" not found\n'
    )
    r = await pea(controlplane, "delete", "pod", "gone")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): pods "gone" not found\n')
    r = await pea(controlplane, "delete", "pod")
    assert (r.code, r.err) == (1, "error: resource(s) were provided, but no name was specified\n")


async def test_scale_both_forms(controlplane: ControlPlane, client: Client) -> None:
    assert (await pea(controlplane, "apply", "-f", seed("000-php-controller.yaml"))).code == 0
    r = await pea(controlplane, "scale", "rc", "php-controller", "--replicas", "3")
    assert (r.code, r.out) == (0, "replicationcontroller/php-controller scaled\n")
    assert (await client.get(ReplicationController, "php-controller", "default")).spec.replicas == 3
    r = await pea(controlplane, "scale", "--replicas=1", "rc/php-controller")
    assert (r.code, r.out) == (0, "replicationcontroller/php-controller scaled\n")
    assert (await client.get(ReplicationController, "php-controller", "default")).spec.replicas == 1
    r = await pea(controlplane, "scale", "rc", "nope", "--replicas=2")
    assert (r.code, r.err) == (1, 'Error from server (NotFound): replicationcontrollers "nope" not found\n')
    r = await pea(controlplane, "scale", "rc", "php-controller")
    assert (r.code, r.err) == (1, "error: the following arguments are required: --replicas\n")


async def test_label_and_annotate(controlplane: ControlPlane, client: Client) -> None:
    assert (await pea(controlplane, "apply", "-f", seed("000-php-pod.yaml"))).code == 0
    r = await pea(controlplane, "label", "pod", "php-test", "env=dev")
    assert (r.code, r.out) == (0, "pod/php-test labeled\n")
    r = await pea(controlplane, "label", "pod", "php-test", "env=prod")
    assert (r.code, r.out) == (1, "")
    assert r.err == "error: 'env' already has a value (dev), and --overwrite is false\n"
    r = await pea(controlplane, "label", "pods/php-test", "env=prod", "--overwrite")
    assert (r.code, r.out) == (0, "pod/php-test labeled\n")
    assert (await client.get(Pod, "php-test", "default")).metadata.labels == {
        "name": "php-test",
        "env": "prod",
    }
    r = await pea(controlplane, "label", "pod", "php-test", "env-")
    assert (r.code, r.out) == (0, "pod/php-test unlabeled\n")
    assert (await client.get(Pod, "php-test", "default")).metadata.labels == {"name": "php-test"}
    r = await pea(controlplane, "label", "pod", "php-test", "bad key=x")
    assert r.code == 1
    assert r.err.startswith("Error from server (Invalid): ")

    r = await pea(controlplane, "annotate", "pod", "php-test", "owner=team-a")
    assert (r.code, r.out) == (0, "pod/php-test annotated\n")
    r = await pea(controlplane, "annotate", "pod", "php-test", "owner=team-b")
    assert r.err == "error: 'owner' already has a value (team-a), and --overwrite is false\n"
    r = await pea(controlplane, "annotate", "pod", "php-test", "owner=team-b", "--overwrite")
    assert r.code == 0
    annotations = (await client.get(Pod, "php-test", "default")).metadata.annotations or {}
    assert annotations["owner"] == "team-b"
    assert LAST_APPLIED in annotations  # a merge patch of one key leaves the others


# --- connection, config, console script, control plane -------------------------------------------


async def test_unreachable_server_is_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run(["get", "pods", "--server", "http://127.0.0.1:1"], out, err)
    assert code == 1
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?\n"
    )


async def test_usage_errors_and_help() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run(["bogus"], out, err) == 1
    assert err.getvalue() == 'error: unknown command "bogus" for "pea"\n'
    out, err = io.StringIO(), io.StringIO()
    assert await run(["--help"], out, err) == 0
    assert "Commands:" in out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert await run(["get", "--help"], out, err) == 0
    assert "--show-labels" in out.getvalue()


async def test_config_write_then_use_the_kubeconfig(controlplane: ControlPlane, tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    out, err = io.StringIO(), io.StringIO()
    code = await run(["config", "write", "--server", controlplane.url, "--kubeconfig", str(path)], out, err)
    assert code == 0, err.getvalue()
    data = yaml.safe_load(path.read_text())
    assert data["clusters"][0]["cluster"]["server"] == controlplane.url
    assert data["current-context"]
    out, err = io.StringIO(), io.StringIO()
    assert await run(["get", "ns", "default", "--kubeconfig", str(path)], out, err) == 0
    assert out.getvalue().splitlines()[1].split()[0] == "default"


async def test_console_script_get_ns(controlplane: ControlPlane) -> None:
    assert PEA.exists(), PEA
    proc = await asyncio.create_subprocess_exec(
        str(PEA), "get", "ns", "--server", controlplane.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert "default" in out.decode().split()


async def test_controlplane_command_serves_until_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(PEA), "controlplane", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
        "--no-scheduler", "--no-controllers",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        out, err = io.StringIO(), io.StringIO()
        assert await run(["get", "ns", "--server", match.group(1)], out, err) == 0
        assert "kube-system" in out.getvalue()
        proc.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, errors
        assert b"Traceback" not in errors
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_controlplane_command_errors_are_one_line(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run(["controlplane", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:0"], out, err)
    assert code == 1
    assert err.getvalue().startswith("error: refusing to listen on 0.0.0.0:0 without --token-file")
    assert err.getvalue().count("\n") == 1
    out, err = io.StringIO(), io.StringIO()
    assert await run(["controlplane", "--listen", "nowhere"], out, err) == 1
    assert err.getvalue() == 'error: --listen must be HOST:PORT, got "nowhere"\n'
    out, err = io.StringIO(), io.StringIO()
    missing = tmp_path / "tokens.csv"
    assert (
        await run(["controlplane", "--data-dir", str(tmp_path), "--token-file", str(missing)], out, err) == 1
    )
    assert err.getvalue().startswith("error: cannot load token file")


# --- printers --------------------------------------------------------------------------------------


def test_align_like_tabwriter() -> None:
    lines = align([["Name:", "x"], ["Namespace:", "default"], ["Containers:"], ["  a:", "b", "c"]], padding=2)
    assert lines == ["Name:       x", "Namespace:  default", "Containers:", "  a:  b  c"]


def test_yaml_style_and_error_lines() -> None:
    text = to_yaml({"a": "80", "b": "yes", "c": "", "d": "x\ny\n", "e": [1], "f": {}, "g": "k: v"})
    assert text == 'a: "80"\nb: "yes"\nc: ""\nd: |\n  x\n  y\ne:\n- 1\nf: {}\ng: \'k: v\'\n'
    assert error_line(ValueError("bad\nthing")) == "error: bad thing"


def test_pod_struct_round_trip_helper() -> None:
    # is_subset is what the seed round-trip relies on: make sure it can fail.
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "z": 0})
    assert not is_subset({"a": [1]}, {"a": [1, 2]})
    assert not is_subset({"a": 1}, {"a": "1"})
    assert not is_subset({"a": {"b": 1}}, msgspec.to_builtins({"a": {}}))
