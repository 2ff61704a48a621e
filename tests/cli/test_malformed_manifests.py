"""Malformed manifests: ``pea apply -f`` and the manifest-directory follower give one line naming the
file and the position for every kind of broken file, never a traceback, never half a file applied;
in a followed directory a broken file does not stop the others and is reported once per change."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest

from controlplane.api import ConfigMap
from controlplane.client import Client, NotFound
from controlplane.client.dirsync import DirectorySync
from controlplane.server.controlplane import ControlPlane
from tests.support import absent, eventually
from tui.cli import run
from tui.printers import error_line

from .conftest import pea

GOOD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: b\n"

# (file name, content, what the one error line must match after "error: <path>")
MALFORMED: list[tuple[str, bytes, str]] = [
    (
        "indent.yaml",
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   labels: x\n",
        r":5:10: mapping values",
    ),
    ("tabs.yaml", b"apiVersion: v1\nkind: Pod\nmetadata:\n\tname: a\n", r":4:1: .*'\\t'"),
    ("quote.yaml", b'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "a\n', r":5:1: .*quoted scalar"),
    ("bracket.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n", r":4:1: .*flow mapping"),
    (
        "dupkey.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n",
        r":5:3: .*key \"name\"",
    ),
    ("list.yaml", b"- apiVersion: v1\n- kind: Pod\n", r'": the document at line 1 is a list'),
    ("scalar.yaml", b"apiVersion:v1\nkind:Pod\n", r'": the document at line 1 is a string'),
    ("comma.json", b'{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n}\n', r":4:1: "),
    ("dup.json", b'{"apiVersion": "v1", "kind": "ConfigMap", "kind": "Pod"}', r':1:1: mapping key "kind"'),
    ("garbage.yaml", b"apiVersion: v1\n\xff\xfe\x00\x9c binary", r":2:1: the file is not UTF-8"),
    ("nul.yaml", b"apiVersion: v1\nkind: \x00Pod\n", r":2:7: .*unacceptable character"),
    (
        "nokind.yaml",
        GOOD.format(name="x").encode() + b"---\napiVersion: v1\nmetadata: {name: y}\n",
        r'": error validating data: kind not set \(in document 2, at line 8\)',
    ),
    (
        "noapi.yaml",
        b"kind: ConfigMap\nmetadata: {name: y}\n",
        r'": .*apiVersion not set \(in document 1, at line 1\)',
    ),
    (
        "recursive.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a, x: [*m]}\n",
        r":1:1: .*alias inside itself",
    ),
    (
        "bomb.yaml",
        b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
        r":1:1: .*too many",
    ),
    ("deep.json", b"[" * 5000 + b"]" * 5000, r":1:1: nested too deeply"),
    ("deep.yaml", b"a: " + b"[" * 300 + b"]" * 300 + b"\n", r":1:1: nested deeper"),
]


def one_error_line(err: str, path: Path, pattern: str) -> None:
    assert "Traceback" not in err and 'File "' not in err, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert str(path) in err, err
    assert re.search(re.escape(str(path)) + pattern, err), err


@pytest.mark.parametrize(("name", "content", "pattern"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_apply_names_file_and_position(
    controlplane: ControlPlane, client: Client, tmp_path: Path, name: str, content: bytes, pattern: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    r = await pea(controlplane, "apply", "-f", str(bad))
    print(r.err, end="")
    assert r.code == 1
    one_error_line(r.err, bad, pattern)
    # Nothing of a broken file is applied, not even its good first document.
    assert await absent(client, ConfigMap, "x")


async def test_empty_files_hold_no_objects(controlplane: ControlPlane, tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing here\n---\n")
    (tmp_path / "good.yaml").write_text(GOOD.format(name="beside-empty"))
    r = await pea(controlplane, "apply", "-f", str(tmp_path))
    assert (r.code, r.out, r.err) == (0, "configmap/beside-empty created\n", "")


async def test_followed_directory_survives_every_malformed_file(client: Client, tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    root.mkdir()
    for name, content, _ in MALFORMED:
        (root / name).write_bytes(content)
    for n in range(3):
        (root / f"good-{n}.yaml").write_text(GOOD.format(name=f"good-{n}"))
    out, err = io.StringIO(), io.StringIO()
    sync = DirectorySync(client, root, out=out, err=err, format_error=error_line, manifest_id="malformed")

    result = await sync.sync()
    lines = err.getvalue().splitlines()
    print(out.getvalue(), *lines, sep="\n")
    assert (result.applied, result.failed) == (3, len(MALFORMED))
    for n in range(3):
        assert (await client.get(ConfigMap, f"good-{n}", "default")).data == {"a": "b"}
    assert await absent(client, ConfigMap, "x")  # the good first document of nokind.yaml
    assert len(lines) == len(MALFORMED)  # one line per bad file
    for (name, _, pattern), line in zip(sorted(MALFORMED), sorted(lines, key=_file_of), strict=True):
        one_error_line(line + "\n", root / name, pattern)

    # Nothing changed: nothing reported again (not in a loop at every sync).
    result = await sync.sync()
    assert result.failed == len(MALFORMED)
    assert len(err.getvalue().splitlines()) == len(MALFORMED)

    # A bad file edited (still bad) is reported once more; one fixed is applied.
    (root / "tabs.yaml").write_bytes(b"apiVersion: v1\n\tkind: Pod\n")
    (root / "indent.yaml").write_text(GOOD.format(name="fixed"))
    result = await sync.sync()
    new = err.getvalue().splitlines()[len(MALFORMED) :]
    assert len(new) == 1 and "tabs.yaml:2:1: " in new[0], new
    assert (await client.get(ConfigMap, "fixed", "default")).data == {"a": "b"}
    assert result.failed == len(MALFORMED) - 1


def _file_of(line: str) -> str:
    match = re.search(r"manifests/([^:\"]+)", line)
    return match.group(1) if match else line


async def test_apply_watch_keeps_going_past_broken_files(
    controlplane: ControlPlane, client: Client, tmp_path: Path, isolated_config: None
) -> None:
    """``pea apply -f DIR --watch``: a broken file is reported once per change, in the watch loop too,
    and neither stops the watcher nor keeps the other files (or later edits) from being applied."""
    root = tmp_path / "watched"
    root.mkdir()
    (root / "bad.yaml").write_bytes(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n")
    (root / "good.yaml").write_text(GOOD.format(name="watched-1"))
    out, err = io.StringIO(), io.StringIO()
    args = ["apply", "-f", str(root), "--watch", "--manifest-id", "malformed", "--server", controlplane.url]
    if controlplane.admin_token:
        args += ["--token", controlplane.admin_token]
    task = asyncio.create_task(run(args, out, err))
    try:
        await eventually(lambda: cm_or_none(client, "watched-1"), "the good file applied")
        (root / "good.yaml").write_text(GOOD.format(name="watched-2"))
        await eventually(lambda: cm_or_none(client, "watched-2"), "an edit applied past the broken file")
        (root / "bad.yaml").write_bytes(b"apiVersion: v1\n\tkind: ConfigMap\n")  # still broken, differently
        await eventually(lambda: _async(err.getvalue().count("bad.yaml") >= 2), "the new error reported")
        (root / "bad.yaml").write_text(GOOD.format(name="watched-fixed"))
        await eventually(lambda: cm_or_none(client, "watched-fixed"), "the fixed file applied")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [line for line in err.getvalue().splitlines() if "bad.yaml" in line]
    print(*lines, sep="\n")
    assert len(lines) == 2, err.getvalue()  # once per change of the file, not at every sync
    assert f"{root / 'bad.yaml'}:4:1: " in lines[0] and f"{root / 'bad.yaml'}:2:1: " in lines[1]
    assert "Traceback" not in err.getvalue()


async def cm_or_none(client: Client, name: str) -> ConfigMap | None:
    try:
        return await client.get(ConfigMap, name, "default")
    except NotFound:
        return None


async def _async(value: bool) -> bool:
    return value
