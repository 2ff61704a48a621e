"""Manifests: the objects read from files, directories or stdin by ``pea apply/create/delete -f``, the
manifest-directory follower and the agent's static pods.

A path is a file (any extension), a directory (its ``*.yaml``, ``*.yml`` and ``*.json`` files in name
order, subdirectories too with ``-R``; hidden files and editor leftovers are skipped) or ``-`` for stdin.
A file holds YAML documents separated by ``---`` or a stream of JSON objects; ``kind: List`` (and any
``*List`` with ``items``) is flattened. Problems are :class:`ManifestError` with one line naming the
file and, for syntax errors, the line and column the way compilers do (``x.yaml:12:5: mapping values
are not allowed here``, which editors jump to), so the CLI never shows a traceback. Besides what the
parsers refuse, a mapping with the same key twice is an error (as in kubectl, where the second would
silently win otherwise), and so is a YAML document that aliases expand to far more than its text
(a "billion laughs") or that nests deeper than any manifest does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from controlplane.api.registry import ResourceInfo, by_kind
from controlplane.yamlshape import shape_problem

__all__ = [
    "Manifest",
    "ManifestError",
    "ignored",
    "load",
    "parse",
    "read_text",
    "resolve_namespace",
    "resource_info",
    "sort_for_apply",
    "walk",
]

EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "STDIN"
#: Deeper than any real manifest, shallow enough for the recursive code that walks documents.
MAX_DEPTH = 100


class ManifestError(Exception):
    """A manifest that cannot be used; the message is one line, ready to print after ``error: ``."""


@dataclass(frozen=True)
class Manifest:
    """One object from a manifest file, with where it came from for error messages."""

    source: str
    line: int
    object: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.object.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.object.get("apiVersion", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.object.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return str(ns) if ns else None


# --- reading paths -----------------------------------------------------------------------------


def load(
    paths: Sequence[str],
    *,
    recursive: bool = False,
    stdin: TextIO | None = None,
    allow_generate_name: bool = False,
) -> list[Manifest]:
    """Every object named by ``paths``, in order; ``ManifestError`` for the first bad one."""
    out: list[Manifest] = []
    for path in paths:
        for source, text in _read(path, recursive, stdin):
            out.extend(parse(text, source, allow_generate_name=allow_generate_name))
    return out


def _read(path: str, recursive: bool, stdin: TextIO | None) -> Iterator[tuple[str, str]]:
    if path == "-":
        if stdin is None:
            raise ManifestError("reading from stdin is not available here")
        yield STDIN, stdin.read()
        return
    p = Path(path)
    if not p.exists():
        raise ManifestError(f'the path "{path}" does not exist')
    if p.is_dir():
        files = list(walk(p, recursive))
        if not files:
            raise ManifestError(f'no manifests (*.yaml, *.yml, *.json) found in "{path}"')
        for f in files:
            yield str(f), read_text(f)
    else:
        yield path, read_text(p)


def walk(directory: Path, recursive: bool) -> Iterator[Path]:
    """A directory's manifest files in name order; hidden entries and editor temp files skipped."""
    try:
        entries = sorted(directory.iterdir(), key=lambda e: e.name)
    except OSError as exc:
        raise ManifestError(f'cannot read "{directory}": {exc.strerror or exc}') from None
    for entry in entries:
        if ignored(entry.name):
            continue
        if entry.is_dir():
            if recursive:
                yield from walk(entry, recursive)
        elif entry.suffix.lower() in EXTENSIONS:
            yield entry


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(("~", ".swp", ".swo")) or name.startswith("#")


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f'error reading "{path}": {exc.strerror or exc}') from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        raise ManifestError(f"{path}:{line}:{col}: the file is not UTF-8 text (binary data?)") from None


def _position(data: bytes | str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of ``offset`` in ``data``."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    line = data.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - (data.rfind(newline, 0, offset) + 1) + 1  # type: ignore[arg-type]


# --- parsing -------------------------------------------------------------------------------------


def parse(text: str, source: str, *, allow_generate_name: bool = False) -> list[Manifest]:
    """The objects in one file's text: YAML documents, or JSON values when it looks like JSON."""
    stripped = text.lstrip()
    is_json = source.lower().endswith(".json") or stripped.startswith(("{", "["))
    documents = _json_documents(text, source) if is_json else _yaml_documents(text, source)
    out: list[Manifest] = []
    for index, (line, doc) in enumerate(documents, 1):
        for obj in _flatten(doc, source, line):
            _check(obj, source, line, allow_generate_name, index)
            out.append(Manifest(source, line, obj))
    return out


class _Loader(yaml.SafeLoader):
    """Safe YAML, but timestamps stay strings (a manifest's values go to the server as JSON), and a
    key given twice in one mapping is an error rather than the last one silently winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'mapping key "{key_node.value}" already defined', key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def _jsonable(value: Any) -> Any:
    """YAML allows keys JSON does not (``80: x``, ``true: y``); like kubectl, make them strings."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _scalar_text(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _scalar_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _yaml_documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """(first line, value) for each non-empty YAML document."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        line, col = _position(text, exc.position)
        raise ManifestError(f"{source}:{line}:{col}: unacceptable character #x{exc.character:04x}") from None
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            start = node.start_mark
            value = loader.construct_document(node)
            problem = shape_problem(value, len(text), MAX_DEPTH)
            if problem:
                raise ManifestError(f"{source}:{start.line + 1}:{start.column + 1}: {problem}")
            value = _jsonable(value)
            if value is not None:
                yield start.line + 1, value
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(_yaml_problem(exc, source)) from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.context}: {exc.problem}"
    if mark is None:
        return f"{source}: {problem}"
    return f"{source}:{mark.line + 1}:{mark.column + 1}: {problem}"


def _json_documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """A stream of JSON values (``{...}{...}`` or one per line), as kubectl accepts."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        line, col = _position(text, pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
        except _DuplicateKey as exc:
            raise ManifestError(
                f'{source}:{line}:{col}: mapping key "{exc.args[0]}" already defined in this document'
            ) from None
        except RecursionError:
            raise ManifestError(f"{source}:{line}:{col}: nested too deeply") from None
        pos = end
        yield line, value


class _DuplicateKey(Exception):
    """A JSON object with the same key twice (the argument)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _flatten(doc: Any, source: str, line: int) -> Iterable[dict[str, Any]]:
    if not isinstance(doc, dict):
        what = type(doc).__name__ if not isinstance(doc, str) else "a string"
        raise ManifestError(
            f'error validating "{source}": the document at line {line} is {_article(what)}, not an object'
            " (is the indentation right, with a space after each ':'?)"
        )
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        for item in items:
            yield from _flatten(item, source, line)
        return
    yield doc


def _article(what: str) -> str:
    if what.startswith("a "):
        return what
    names = {"list": "a list", "int": "a number", "float": "a number", "bool": "a boolean"}
    return names.get(what, f"a {what}")


def _check(obj: dict[str, Any], source: str, line: int, allow_generate_name: bool, index: int = 1) -> None:
    """kubectl's client-side checks: every object says what it is and what it is called."""
    problems = []
    if not isinstance(obj.get("apiVersion"), str) or not obj.get("apiVersion"):
        problems.append("apiVersion not set")
    if not isinstance(obj.get("kind"), str) or not obj.get("kind"):
        problems.append("kind not set")
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        problems.append("metadata must be an object")
    else:
        meta = meta or {}
        name, generate = meta.get("name"), meta.get("generateName")
        if name is not None and not isinstance(name, str):
            problems.append("metadata.name must be a string")
        elif not name and not (allow_generate_name and generate):
            if generate:
                problems.append("metadata.name not set (generateName cannot be used with apply)")
            else:
                problems.append("metadata.name not set")
        namespace = meta.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            problems.append("metadata.namespace must be a string")
    if problems:
        joined = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise ManifestError(
            f'error validating "{source}": error validating data: {joined}'
            f" (in document {index}, at line {line})"
        )


# --- ordering and namespaces ---------------------------------------------------------------------

_APPLY_RANK = {"Namespace": 0, "ConfigMap": 1, "Secret": 1, "Service": 2}


def sort_for_apply(objs: Iterable[Manifest]) -> list[Manifest]:
    """Namespaces, then configuration, then services, then workloads, so each finds what it needs;
    objects of the same rank keep their order in the files."""
    return sorted(objs, key=lambda m: _APPLY_RANK.get(m.kind, 3))


def resolve_namespace(manifest: Manifest, default: str, enforce: bool) -> str:
    """The namespace an object goes to: the manifest's own, else ``default``. With an explicit
    ``-n`` (``enforce``), a manifest naming another namespace is refused, as kubectl does."""
    own = manifest.namespace
    if own and enforce and own != default:
        raise ManifestError(
            f'the namespace from the provided object "{own}" does not match the namespace "{default}". '
            f"You must pass '--namespace={own}' to perform this operation."
        )
    return own or default


def resource_info(manifest: Manifest) -> ResourceInfo:
    """The served resource a manifest's ``apiVersion`` and ``kind`` name (kubectl's REST mapping)."""
    info = by_kind(manifest.kind)
    if info is None or info.api_version != manifest.api_version:
        ns = manifest.namespace or ""
        raise ManifestError(
            f'resource mapping not found for name: "{manifest.name}" namespace: "{ns}" from '
            f'"{manifest.source}": no matches for kind "{manifest.kind}" in version "{manifest.api_version}"'
        )
    return info
