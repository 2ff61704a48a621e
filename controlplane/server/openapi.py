"""A minimal OpenAPI v3 description, generated from the registry.

Stock kubectl reads ``/openapi/v3`` to learn whether a kind's PATCH accepts ``fieldValidation``; if it
does, kubectl leaves unknown-field checks to the server (our Strict/Warn/Ignore) instead of validating
against a downloaded schema. So each group/version document lists, per resource, the operations with
their ``x-kubernetes-group-version-kind`` and query parameters. Schemas are not published yet.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from controlplane.api.registry import ResourceInfo, group_versions

_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _gv_path(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _operations(info: ResourceInfo) -> dict[str, dict[str, Any]]:
    gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    base = f"/{_gv_path(info.group_version)}"
    collection = (
        f"{base}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{base}/{info.plural}"
    )
    item = f"{collection}/{{name}}"

    def op(action: str, params: tuple[str, ...] = ()) -> dict[str, Any]:
        return {
            "operationId": f"{action}{info.kind}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [_param(p) for p in params],
            "responses": {"200": {"description": "OK"}},
        }

    return {
        collection: {"get": op("list"), "post": op("post", _WRITE_PARAMS), "delete": op("deletecollection")},
        item: {
            "get": op("get"),
            "put": op("put", _WRITE_PARAMS),
            "patch": op("patch", (*_WRITE_PARAMS, "force")),
            "delete": op("delete", ("dryRun", "gracePeriodSeconds", "propagationPolicy")),
        },
    }


def group_version_document(group_version: str) -> bytes | None:
    resources = group_versions().get(group_version)
    if resources is None:
        return None
    paths: dict[str, Any] = {}
    for info in resources:
        paths.update(_operations(info))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "peapod", "version": group_version},
        "paths": paths,
        "components": {"schemas": {}},
    }
    return msgspec.json.encode(doc)


def root_document() -> bytes:
    paths = {}
    for gv in group_versions():
        body = group_version_document(gv) or b""
        digest = hashlib.sha256(body).hexdigest()[:32].upper()
        paths[_gv_path(gv)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(gv)}?hash={digest}"}
    return msgspec.json.encode({"paths": paths})
