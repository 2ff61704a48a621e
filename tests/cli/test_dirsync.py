"""The manifest-directory follower (``pea apply -f DIR --watch``, ``pea controlplane --manifests DIR``)
against a real control plane on loopback: files added, edited, renamed and deleted become objects
created, updated, kept (same uid) and pruned; broken files, the empty-directory guard, the prune
opt-out, ``pea scale`` surviving re-applies and self-heal. Most tests call ``sync()`` directly, so
each step is deterministic; the watch tests wait (bounded) for what the watcher does."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.api import ConfigMap, Endpoints, Event, ReplicationController
from controlplane.client import Client, NotFound
from controlplane.client.dirsync import (
    COMPONENT,
    DIR_LABEL,
    PRUNE_ANNOTATION,
    SOURCE_ANNOTATION,
    DirectorySync,
    directory_id,
)
from controlplane.server.controlplane import ControlPlane
from tests.support import absent, eventually, rc_manifest
from tui.cli import run
from tui.printers import error_line


def cm(name: str, data: dict[str, str], namespace: str | None = None, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def write(path: Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


class Follower:
    """A DirectorySync on ``tmp_path/manifests`` with its output captured."""

    def __init__(self, client: Client, root: Path, **kw: Any) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.root = root
        self.sync = DirectorySync(
            client, root, out=self.out, err=self.err, format_error=error_line, manifest_id="test", **kw
        )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


async def cm_or_none(client: Client, name: str, namespace: str = "default") -> ConfigMap | None:
    try:
        return await client.get(ConfigMap, name, namespace)
    except Exception:
        return None


def meta(obj: Any) -> Any:
    return obj.metadata


async def test_add_edit_rename_delete(client: Client, root: Path) -> None:
    f = Follower(client, root)
    write(root / "app.yaml", cm("settings", {"mode": "one"}))
    write(root / "other.yaml", cm("other", {"k": "v"}))
    result = await f.sync.sync()
    assert (result.applied, result.failed) == (2, 0)
    first = await client.get(ConfigMap, "settings", "default")
    assert first.data == {"mode": "one"}
    assert meta(first).labels[DIR_LABEL] == "test"
    assert meta(first).annotations[SOURCE_ANNOTATION] == "app.yaml"

    write(root / "app.yaml", cm("settings", {"mode": "two"}))
    result = await f.sync.sync()
    assert result.applied == 1  # only the changed file is sent
    edited = await client.get(ConfigMap, "settings", "default")
    assert edited.data == {"mode": "two"}

    (root / "nested").mkdir()
    os.rename(root / "app.yaml", root / "nested" / "renamed.yaml")
    result = await f.sync.sync()
    assert result.pruned == 0
    moved = await client.get(ConfigMap, "settings", "default")
    assert meta(moved).uid == meta(first).uid
    assert meta(moved).annotations[SOURCE_ANNOTATION] == "nested/renamed.yaml"

    (root / "nested" / "renamed.yaml").unlink()
    result = await f.sync.sync()
    assert result.pruned == 1
    assert await absent(client, ConfigMap, "settings")
    assert await cm_or_none(client, "other") is not None
    assert "sync: 0 applied, 0 unchanged, 1 pruned, 0 failed" in f.out.getvalue()

    events = (await client.list(Event, "default")).items
    ours = {
        (e.reason, e.involved_object.name) for e in events if e.source and e.source.component == COMPONENT
    }
    assert {("Applied", "settings"), ("Applied", "other"), ("Pruned", "settings")} <= ours


async def test_multi_document_file_and_an_object_leaving_it(client: Client, root: Path) -> None:
    f = Follower(client, root)
    write(root / "all.yaml", cm("a", {"x": "1"}), cm("b", {"x": "2"}), cm("c", {"x": "3"}))
    assert (await f.sync.sync()).applied == 3
    write(root / "all.yaml", cm("a", {"x": "1"}), cm("c", {"x": "3"}))
    result = await f.sync.sync()
    assert (result.pruned, result.unchanged) == (1, 2)
    assert await absent(client, ConfigMap, "b")
    assert await cm_or_none(client, "a") is not None and await cm_or_none(client, "c") is not None


async def test_ordering_across_files(client: Client, root: Path) -> None:
    """The namespace is in a file that sorts last; it is still created before what goes in it."""
    f = Follower(client, root)
    write(root / "a-config.yaml", cm("conf", {"k": "v"}, namespace="team"))
    write(root / "z-namespace.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    result = await f.sync.sync()
    assert (result.applied, result.failed) == (2, 0), f.err.getvalue()
    assert await cm_or_none(client, "conf", "team") is not None


async def test_broken_file_beside_good_ones(client: Client, root: Path) -> None:
    f = Follower(client, root)
    write(root / "good.yaml", cm("good", {"v": "1"}))
    write(root / "bad.yaml", cm("from-bad", {"v": "1"}))
    await f.sync.sync()
    assert await cm_or_none(client, "from-bad") is not None

    (root / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    write(root / "good.yaml", cm("good", {"v": "2"}))
    result = await f.sync.sync()
    assert (result.applied, result.failed, result.pruned) == (1, 1, 0)
    assert "bad.yaml:4:1: " in f.err.getvalue()
    assert "Traceback" not in f.err.getvalue()
    assert (await client.get(ConfigMap, "good", "default")).data == {"v": "2"}
    assert await cm_or_none(client, "from-bad") is not None  # what it applied last time stays
    failed = [e for e in (await client.list(Event, "default")).items if e.reason == "ApplyFailed"]
    assert failed and "bad.yaml" in (failed[0].message or "")

    # A restarted follower knows nothing of last time; the live source annotation keeps the object.
    again = Follower(client, root)
    result = await again.sync.sync()
    assert result.failed == 1
    assert await cm_or_none(client, "from-bad") is not None


async def test_a_refused_object_applies_none_of_its_file(client: Client, root: Path) -> None:
    """All or nothing: the server's dry run refuses one object, so its file's valid one is not applied."""
    f = Follower(client, root)
    write(root / "ok.yaml", cm("fine", {"v": "1"}))
    write(root / "mixed.yaml", cm("valid-one", {"v": "1"}), cm("Not_A_Valid_Name", {"v": "1"}))
    result = await f.sync.sync()
    assert (result.applied, result.failed) == (1, 1)
    err = f.err.getvalue()
    assert "mixed.yaml" in err and "document at line" in err and "Error from server" in err, err
    assert await absent(client, ConfigMap, "valid-one")
    assert await cm_or_none(client, "fine") is not None


async def test_empty_directory_guard(client: Client, root: Path) -> None:
    f = Follower(client, root)
    write(root / "one.yaml", cm("keep-me", {"v": "1"}))
    await f.sync.sync()
    (root / "one.yaml").unlink()
    (root / ".hidden.yaml").write_text(yaml.safe_dump(cm("hidden", {})))  # ignored, as an editor's file
    result = await f.sync.sync()
    assert result.guarded and result.pruned == 0
    assert "pruning nothing" in f.err.getvalue()
    assert await cm_or_none(client, "keep-me") is not None
    assert await absent(client, ConfigMap, "hidden")

    # A directory that disappeared is no reason to prune either.
    (root / ".hidden.yaml").unlink()
    os.rmdir(root)
    result = await f.sync.sync()
    assert result.guarded and result.pruned == 0
    assert await cm_or_none(client, "keep-me") is not None


async def test_prune_opt_out_annotation(client: Client, root: Path) -> None:
    f = Follower(client, root)
    write(root / "keep.yaml", cm("sticky", {"v": "1"}, **{PRUNE_ANNOTATION: "false"}))
    write(root / "drop.yaml", cm("transient", {"v": "1"}))
    write(root / "stay.yaml", cm("anchor", {"v": "1"}))
    await f.sync.sync()
    (root / "keep.yaml").unlink()
    (root / "drop.yaml").unlink()
    result = await f.sync.sync()
    assert result.pruned == 1
    assert await absent(client, ConfigMap, "transient")
    assert await cm_or_none(client, "sticky") is not None


async def test_objects_a_controller_copied_the_label_onto_are_not_pruned(client: Client, root: Path) -> None:
    """The endpoints controller copies a Service's labels (the directory's too) onto its Endpoints;
    the follower did not apply those, so it must not prune them."""
    f = Follower(client, root)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    write(root / "svc.yaml", service)
    await f.sync.sync()

    async def labelled_endpoints() -> bool:
        try:
            endpoints = await client.get(Endpoints, "web", "default")
        except NotFound:
            return False
        return DIR_LABEL in (endpoints.metadata.labels or {})

    await eventually(labelled_endpoints, "the Service's Endpoints, with its labels")
    result = await f.sync.sync(full=True)
    assert result.pruned == 0
    assert await labelled_endpoints()


async def test_scale_survives_reapplies(client: Client, root: Path) -> None:
    f = Follower(client, root)
    manifest = rc_manifest("web", 1, {"app": "web"}, [{"name": "c", "image": "busybox"}])
    del manifest["spec"]["replicas"]
    write(root / "rc.yaml", manifest)
    await f.sync.sync()
    await client.scale(ReplicationController, "web", 3, "default")
    await f.sync.sync(full=True)
    manifest["metadata"]["labels"] = {"tier": "front"}
    write(root / "rc.yaml", manifest)
    result = await f.sync.sync()
    assert result.applied == 1
    rc = await client.get(ReplicationController, "web", "default")
    assert rc.spec is not None and rc.spec.replicas == 3
    assert meta(rc).labels.get("tier") == "front"


async def _running(follower: DirectorySync) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    return asyncio.create_task(follower.run(stop)), stop


async def _stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_watch_and_self_heal(client: Client, root: Path) -> None:
    """Driven by the watcher: a new file appears in the cluster, an edit follows; with self-heal a
    hand edit of a field the manifest sets is reverted."""
    f = Follower(client, root, self_heal=0.5)
    write(root / "cm.yaml", cm("watched", {"v": "1"}))
    task, stop = await _running(f.sync)
    try:
        await eventually(lambda: cm_or_none(client, "watched"), "the initial sync")
        write(root / "later.yaml", cm("later", {"v": "1"}))
        await eventually(lambda: cm_or_none(client, "later"), "the new file to be applied")

        async def edited() -> bool:
            obj = await cm_or_none(client, "watched")
            return obj is not None and obj.data == {"v": "2"}

        write(root / "cm.yaml", cm("watched", {"v": "2"}))
        await eventually(edited, "the edit to be applied")

        await client.patch(ConfigMap, "watched", {"data": {"v": "by hand"}}, "default")
        await eventually(edited, "self-heal to revert the hand edit")

        (root / "later.yaml").unlink()
        await eventually(lambda: absent(client, ConfigMap, "later"), "the deleted file's object to be pruned")
    finally:
        await _stopped(task, stop)


async def test_pea_apply_watch(
    controlplane: ControlPlane, client: Client, root: Path, isolated_config: None
) -> None:
    write(root / "cm.yaml", cm("via-cli", {"v": "1"}))
    out, err = io.StringIO(), io.StringIO()
    args = ["apply", "-f", str(root), "--watch", "--manifest-id", "cli", "--server", controlplane.url]
    if controlplane.admin_token:
        args += ["--token", controlplane.admin_token]
    task = asyncio.create_task(run(args, out, err))
    try:
        obj = await eventually(lambda: cm_or_none(client, "via-cli"), "pea apply --watch to apply")
        assert meta(obj).labels[DIR_LABEL] == "cli"
        write(root / "cm.yaml", cm("via-cli-2", {"v": "1"}))
        await eventually(lambda: absent(client, ConfigMap, "via-cli"), "the renamed object's old name pruned")
        assert await cm_or_none(client, "via-cli-2") is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "sync: 1 applied, 0 unchanged, 0 pruned, 0 failed" in out.getvalue()
    assert "Traceback" not in err.getvalue()


async def test_apply_watch_usage_errors(
    controlplane: ControlPlane, root: Path, isolated_config: None
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run(["apply", "-f", str(root), "--prune", "--server", controlplane.url], out, err) == 1
    assert "only works with --watch" in err.getvalue()
    err = io.StringIO()
    missing = str(root / "nope")
    assert await run(["apply", "-f", missing, "--watch", "--server", controlplane.url], out, err) == 1
    assert "needs exactly one -f DIRECTORY" in err.getvalue()
    err = io.StringIO()
    bad_heal = ["apply", "-f", str(root), "--watch", "--self-heal", "-5", "--server", controlplane.url]
    assert await run(bad_heal, out, err) == 1
    assert "self-heal" in err.getvalue() and "Traceback" not in err.getvalue()
    for argv, message in (
        (["controlplane", "--manifests-self-heal", "60"], "only works with --manifests"),
        (["controlplane", "--manifests", str(root), "--manifests-self-heal", "0"], "more than 0 seconds"),
    ):
        err = io.StringIO()
        assert await run([*argv, "--listen", "127.0.0.1:0"], out, err) == 1
        assert message in err.getvalue()


async def test_controlplane_follows_its_manifests_folder(tmp_path: Path, isolated_config: None) -> None:
    folder = tmp_path / "cp-manifests"
    write(folder / "ns.yaml", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "from-folder"}})
    out, err = io.StringIO(), io.StringIO()
    args = ["controlplane", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]
    task = asyncio.create_task(run([*args, "--manifests", str(folder)], out, err))
    try:

        async def synced() -> bool:
            return "sync: 1 applied" in out.getvalue()

        await eventually(synced, "the control plane's first sync", timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "0 failed" in out.getvalue(), err.getvalue()


def test_directory_id_is_stable(tmp_path: Path) -> None:
    assert directory_id(tmp_path) == directory_id(str(tmp_path) + "/")
    assert directory_id(tmp_path) != directory_id(tmp_path / "other")
    with pytest.raises(ValueError, match="invalid manifest id"):
        DirectorySync(None, tmp_path, manifest_id="-bad-")  # type: ignore[arg-type]


async def test_an_unreachable_server_does_not_end_the_follower(root: Path) -> None:
    write(root / "cm.yaml", cm("nowhere", {"v": "1"}))
    async with Client("http://127.0.0.1:1", None) as unreachable:
        f = Follower(unreachable, root, retry_seconds=0.1)
        task, stop = await _running(f.sync)

        async def reported() -> bool:
            return str(root) in f.err.getvalue() and "cm.yaml" in f.err.getvalue()

        try:
            await eventually(reported, "the failure reported")
        finally:
            await _stopped(task, stop)  # would raise the failure had it ended the follower
    assert "cm.yaml" in f.err.getvalue()
    assert "Traceback" not in f.err.getvalue()
