"""From an HTTP request to what it asks: the resource, namespace, name, subresource and verb.

Mirrors kube-apiserver's RequestInfo: ``/api/v1/...`` and ``/apis/{group}/{version}/...``, namespaced
``namespaces/{ns}/{resource}[/{name}[/{subresource}]]`` and cluster-scoped ``{resource}[/{name}[/...]]``.
Also decodes request bodies (JSON or YAML) with a size cap and parse positions in errors; bodies that
nest deeper than ``MAX_DEPTH`` or (YAML) expand through aliases far beyond their text are refused
with a 400 rather than left to recurse or to loop in the code that walks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from controlplane.api.registry import ResourceInfo, by_resource
from controlplane.yamlshape import shape_problem

from . import errors

MAX_BODY = 3 * 1024 * 1024
#: How deeply a body may nest: msgspec's own limit for JSON, applied to YAML too.
MAX_DEPTH = 1000


@dataclass(frozen=True, slots=True)
class RequestInfo:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None
    all_namespaces: bool


def parse_path(group: str, version: str, parts: list[str]) -> RequestInfo:
    """Resolve the path segments after the group/version prefix; NotFound for anything unknown."""
    namespace: str | None = None
    if (
        len(parts) >= 3
        and parts[0] == "namespaces"
        and not (len(parts) == 3 and parts[2] in ("status", "finalize"))
    ):
        namespace, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3 or not all(parts):
        raise errors.not_found("", "/".join(parts))
    resource = parts[0]
    info = by_resource(group, resource)
    if info is None or info.version != version:
        raise _unknown_path(group, version, resource)
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if info.namespaced is False and namespace is not None:
        raise errors.not_found(info.plural, name or "", info.group)
    if sub is not None and sub not in info.subresources:
        raise errors.not_found(f"{info.plural}/{sub}", name or "", info.group)
    return RequestInfo(info, namespace, name, sub, info.namespaced and namespace is None)


def _unknown_path(group: str, version: str, resource: str) -> errors.APIError:
    err = errors.not_found("", "")
    err.status.message = f"the server could not find the requested resource ({resource}.{version}.{group})"
    err.status.details = None
    return err


def decode_body(body: bytes, content_type: str, what: str = "body") -> Any:
    """Decode a JSON or YAML body into plain values; 400 with the position when it does not parse."""
    if len(body) > MAX_BODY:
        raise errors.too_large(MAX_BODY)
    if not body.strip():
        raise errors.bad_request(f"the {what} of the request is empty")
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            value = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {_yaml_error(exc)}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp like 2001-13-45
            raise errors.bad_request(f"error decoding YAML: {exc}") from None
        except RecursionError:
            raise errors.bad_request(f"error decoding YAML: nested deeper than {MAX_DEPTH} levels") from None
        problem = shape_problem(value, len(body), MAX_DEPTH)
        if problem:
            raise errors.bad_request(f"error decoding YAML: {problem}")
        return value
    if media and not media.endswith("json") and media not in ("*/*", "text/plain"):
        raise errors.unsupported_media_type(content_type)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise errors.bad_request(f"error decoding JSON: {_json_error(body, exc)}") from None
    except RecursionError:  # msgspec's own limit: 1,000 levels
        raise errors.bad_request(f"error decoding JSON: nested deeper than {MAX_DEPTH} levels") from None


def _json_error(body: bytes, exc: msgspec.DecodeError) -> str:
    """msgspec reports a byte offset; people want a line and column."""
    text = str(exc)
    if "truncated" in text:
        text = f"{text} (byte {len(body)})"
    marker = "(byte "
    if marker in text:
        try:
            offset = int(text.rsplit(marker, 1)[1].rstrip(")"))
        except ValueError:
            return text
        line = body.count(b"\n", 0, offset) + 1
        col = offset - (body.rfind(b"\n", 0, offset) + 1) + 1
        return f"{text.split(marker)[0].strip()} at line {line}, column {col}"
    return text


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def wants_table(accept: str) -> bool:
    """True when the client asks for server-side printing (``as=Table;g=meta.k8s.io;v=v1``)."""
    for media_range in accept.split(","):
        params = {}
        for piece in media_range.split(";")[1:]:
            key, _, value = piece.strip().partition("=")
            params[key.strip()] = value.strip()
        if (
            params.get("as") == "Table"
            and params.get("g", "meta.k8s.io") == "meta.k8s.io"
            and params.get("v", "v1") == "v1"
        ):
            return True
    return False
