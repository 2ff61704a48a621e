"""Regression tests, one per problem the write fuzzer (``test_write_fuzz.py``) found: each was a 500
(or a rejected request that still wrote to the store), now a clear 4xx ``Status``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controlplane.server.controlplane import ControlPlane, Settings

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = settings.controllers = False
    return settings


@pytest.fixture
async def http(controlplane: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {controlplane.admin_token}"} if controlplane.admin_token else {}
    async with httpx.AsyncClient(base_url=controlplane.url, headers=headers, timeout=60) as c:
        yield c


def status(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["kind"] == "Status" and body["code"] == code
    assert "Traceback" not in response.text
    return body


def cm(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


async def test_deeply_nested_json_is_a_bad_request(http: httpx.AsyncClient) -> None:
    body = status(await http.post(CMS, content=b"[" * 5000 + b"]" * 5000), 400)
    assert "nested deeper than 1000 levels" in body["message"]


@pytest.mark.parametrize(
    "yaml_body",
    [
        b"kind: ConfigMap\nmetadata: &m {name: a, x: [*m]}\n",  # an alias inside itself
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        b"metadata: {name: a}\ndata: {when: 2001-13-45}\n",  # a timestamp that is no date
    ],
    ids=["recursive-alias", "alias-bomb", "bad-timestamp"],
)
async def test_hostile_yaml_is_a_bad_request(http: httpx.AsyncClient, yaml_body: bytes) -> None:
    body = status(await http.post(CMS, content=yaml_body, headers={"Content-Type": "application/yaml"}), 400)
    assert body["message"].startswith("error decoding YAML: ")


async def test_merge_patch_with_metadata_not_an_object(http: httpx.AsyncClient) -> None:
    assert (await http.post(CMS, json=cm("patched"))).status_code == 201
    for patch in (b'{"metadata": 5}', b'{"metadata": {"resourceVersion": [1]}}'):
        response = await http.patch(
            f"{CMS}/patched", content=patch, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["kind"] == "Status"


async def test_body_with_metadata_not_an_object(http: httpx.AsyncClient) -> None:
    body = status(await http.post(CMS, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": True}), 400)
    assert "metadata" in body["message"]


async def test_warning_quoting_what_the_client_sent_is_a_valid_header(http: httpx.AsyncClient) -> None:
    response = await http.post(CMS, json=cm("warned", **{"bogus\n\u00e9\U0001f600": 1}))
    assert response.status_code == 201, response.text
    (warning,) = response.headers.get_list("warning")
    assert warning == '299 - "unknown field \\"bogus\\n\\xe9\\U0001f600\\""'


async def test_namespaces_cannot_be_deleted_as_a_collection(
    http: httpx.AsyncClient, controlplane: ControlPlane
) -> None:
    assert (await http.post("/api/v1/namespaces", json={"metadata": {"name": "stays"}})).status_code == 201
    before = await controlplane.backend.current_revision()
    status(await http.delete("/api/v1/namespaces"), 405)
    assert await controlplane.backend.current_revision() == before
    ns = (await http.get("/api/v1/namespaces/stays")).json()
    assert ns["metadata"].get("deletionTimestamp") is None  # nothing half done


async def test_duplicate_create_allocates_nothing(
    http: httpx.AsyncClient, controlplane: ControlPlane
) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "twice"}}
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "twice"},
        "spec": {"ports": [{"port": 80}]},
    }
    for path, obj in (("/api/v1/nodes", node), ("/api/v1/namespaces/default/services", svc)):
        assert (await http.post(path, json=obj)).status_code == 201
        before = await controlplane.backend.current_revision()
        status(await http.post(path, json=obj), 409)
        assert await controlplane.backend.current_revision() == before  # no allocate-then-release


@pytest.mark.parametrize("replicas", [2**31, 2**40, -(2**40)])
async def test_int32_fields_are_bounded(http: httpx.AsyncClient, replicas: int) -> None:
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "huge"},
        "spec": {
            "replicas": replicas,
            "selector": {"app": "a"},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    body = status(await http.post("/api/v1/namespaces/default/replicationcontrollers", json=rc), 422)
    assert body["details"]["causes"][0]["field"] == "spec.replicas"
