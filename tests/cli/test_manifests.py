"""Reading manifests (files, directories, stdin, YAML, JSON, lists), their errors and apply order.

No server: everything here is local parsing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from controlplane.client.manifests import (
    Manifest,
    ManifestError,
    load,
    parse,
    resolve_namespace,
    resource_info,
    sort_for_apply,
)

SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds"

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: c
    image: busybox
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def names(manifests: list[Manifest]) -> list[str]:
    return [m.name for m in manifests]


def test_multi_document_yaml_skips_empty_documents(tmp_path: Path) -> None:
    text = "---\n" + POD.format(name="a") + "---\n---\n# only a comment\n---\n" + POD.format(name="b")
    f = write(tmp_path / "pods.yaml", text)
    got = load([str(f)])
    assert names(got) == ["a", "b"]
    assert got[0].source == str(f)
    assert got[1].line == 14  # the second object's first line, for error messages
    assert got[0].object["spec"]["containers"][0]["image"] == "busybox"


def test_kind_list_is_flattened(tmp_path: Path) -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: s1}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c1}}\n"
    )
    got = load([str(write(tmp_path / "list.yml", text))])
    assert [(m.kind, m.name) for m in got] == [("Service", "s1"), ("ConfigMap", "c1")]


def test_json_file_and_json_stream(tmp_path: Path) -> None:
    one = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j1"}}
    two = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j2"}}
    single = write(tmp_path / "one.json", json.dumps(one, indent=4))
    stream = write(tmp_path / "stream.json", json.dumps(one) + "\n" + json.dumps(two) + "\n")
    assert names(load([str(single)])) == ["j1"]
    got = load([str(stream)])
    assert names(got) == ["j1", "j2"]
    assert got[1].line == 2


def test_json_list_is_flattened() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}],
    }
    assert names(parse(json.dumps(doc), "list.json")) == ["x"]


def test_timestamps_stay_strings() -> None:
    text = POD.format(name="t").replace(
        "  name: t\n", "  name: t\n  creationTimestamp: 2024-01-02T03:04:05Z\n"
    )
    (m,) = parse(text, "t.yaml")
    assert m.metadata["creationTimestamp"] == "2024-01-02T03:04:05Z"
    json.dumps(m.object)  # everything must be JSON-serialisable: it is sent as JSON


def test_directory_skips_hidden_and_editor_files_and_subdirectories(tmp_path: Path) -> None:
    d = tmp_path / "manifests"
    write(d / "b.yaml", POD.format(name="b"))
    write(d / "a.yml", POD.format(name="a"))
    write(d / "c.json", json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}))
    write(d / "notes.txt", "not a manifest")
    write(d / ".hidden.yaml", POD.format(name="hidden"))
    write(d / "b.yaml~", POD.format(name="backup"))
    write(d / ".#b.yaml", POD.format(name="lock"))
    write(d / ".b.yaml.swp", "\x00binary")
    write(d / "b.yaml.swp", "\x00binary")
    write(d / "sub" / "d.yaml", POD.format(name="d"))
    write(d / ".git" / "e.yaml", POD.format(name="e"))
    assert names(load([str(d)])) == ["a", "b", "c"]
    assert names(load([str(d)], recursive=True)) == ["a", "b", "c", "d"]


def test_several_paths_keep_their_order(tmp_path: Path) -> None:
    first = write(tmp_path / "z.yaml", POD.format(name="z"))
    second = write(tmp_path / "a.yaml", POD.format(name="a"))
    assert names(load([str(first), str(second)])) == ["z", "a"]


def test_stdin() -> None:
    got = load(["-"], stdin=io.StringIO(POD.format(name="from-stdin")))
    assert names(got) == ["from-stdin"]
    assert got[0].source == "STDIN"


def test_missing_path() -> None:
    with pytest.raises(ManifestError) as exc:
        load(["nope.yaml"])
    assert str(exc.value) == 'the path "nope.yaml" does not exist'


def test_directory_without_manifests(tmp_path: Path) -> None:
    write(tmp_path / "readme.txt", "hello")
    with pytest.raises(ManifestError, match="no manifests"):
        load([str(tmp_path)])


def test_bad_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   labels: x\n")
    with pytest.raises(ManifestError) as exc:
        load([str(f)])
    message = str(exc.value)
    assert message.startswith(f"{f}:5:10: ")
    assert "\n" not in message


def test_bad_json_names_file_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json", '{\n  "apiVersion": "v1",\n  "kind": "Pod",\n}\n')
    with pytest.raises(ManifestError) as exc:
        load([str(f)])
    assert str(exc.value).startswith(f"{f}:4:1: ")


def test_mangled_blog_yaml_is_not_an_object() -> None:
    # The seed blogs lost the space after ':' -- the whole document becomes one string.
    with pytest.raises(ManifestError) as exc:
        parse("apiVersion:v1\nkind:ReplicationController\n", "rc.yaml")
    assert 'error validating "rc.yaml"' in str(exc.value)
    assert "not an object" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: Pod\nmetadata: {name: a}\n", "apiVersion not set"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "kind not set"),
        ("apiVersion: v1\nkind: Pod\n", "metadata.name not set"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\n",
            "generateName cannot be used with apply",
        ),
        ("apiVersion: v1\nkind: Pod\nmetadata: [a]\n", "metadata must be an object"),
    ],
)
def test_required_fields(text: str, problem: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse(text, "x.yaml")
    assert str(exc.value).startswith('error validating "x.yaml": error validating data: ')
    assert problem in str(exc.value)
    assert "at line 1" in str(exc.value)


def test_generate_name_allowed_for_create() -> None:
    (m,) = parse(
        "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\n", "x.yaml", allow_generate_name=True
    )
    assert m.name == ""
    assert m.metadata["generateName"] == "web-"


def test_sort_for_apply_is_namespaces_config_services_workloads_and_stable() -> None:
    def m(kind: str, name: str) -> Manifest:
        return Manifest("x.yaml", 1, {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}})

    given = [
        m("Pod", "p1"),
        m("Service", "s1"),
        m("ReplicationController", "rc1"),
        m("Secret", "sec"),
        m("Namespace", "ns"),
        m("Pod", "p2"),
        m("ConfigMap", "cm"),
        m("Service", "s2"),
    ]
    assert names(sort_for_apply(given)) == ["ns", "sec", "cm", "s1", "s2", "p1", "rc1", "p2"]


def test_namespace_resolution() -> None:
    (with_ns,) = parse(POD.format(name="a").replace("  name: a\n", "  name: a\n  namespace: dev\n"), "a.yaml")
    (without,) = parse(POD.format(name="b"), "b.yaml")
    assert resolve_namespace(with_ns, "default", enforce=False) == "dev"
    assert resolve_namespace(without, "default", enforce=False) == "default"
    assert resolve_namespace(without, "prod", enforce=True) == "prod"
    assert resolve_namespace(with_ns, "dev", enforce=True) == "dev"
    with pytest.raises(ManifestError) as exc:
        resolve_namespace(with_ns, "prod", enforce=True)
    assert str(exc.value) == (
        'the namespace from the provided object "dev" does not match the namespace "prod". '
        "You must pass '--namespace=dev' to perform this operation."
    )


def test_resource_info_for_unknown_kind() -> None:
    (known,) = parse(POD.format(name="a"), "a.yaml")
    assert resource_info(known).plural == "pods"
    (unknown,) = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n", "d.yaml")
    with pytest.raises(ManifestError) as exc:
        resource_info(unknown)
    assert 'no matches for kind "Deployment" in version "apps/v1"' in str(exc.value)


def test_every_seed_example_parses() -> None:
    files = sorted(SEEDS.glob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        got = load([str(f)])
        assert got, f
        assert all(m.name and m.kind and m.api_version for m in got), f
        header = f.read_text().split("apiVersion")[0]
        assert "# From seed 00" in header, f
