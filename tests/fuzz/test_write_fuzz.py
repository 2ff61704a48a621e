"""Property-based fuzzing of every write endpoint the API server serves, over HTTP on loopback.

For every resource in the registry and every write verb (create, update, patch with each patch type,
delete, delete collection, and the status/scale/finalize/binding/eviction subresources) hypothesis
generates bad requests: bodies that are not JSON, wrong types at every field of a valid object,
huge numbers, deep nesting, invalid names/labels/annotations, unknown fields, kind and name
mismatches, bad quantities and selectors, broken patches, and odd query parameters. Every answer
must be under 500, a Kubernetes ``Status`` (or an object, when the request happened to be valid),
free of traceback text, and a rejected request must leave the store's revision unchanged.

About 10,000 requests in all (``REQUESTS``), split evenly over the endpoints; derandomized and
without an example database, so CI sees the same requests on every run.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api.registry import RESOURCES, ResourceInfo

from .conftest import ThreadedControlPlane

REQUESTS = int(os.environ.get("PEA_FUZZ_REQUESTS", "10000"))  # more for a longer local run
NAMESPACE = "default"
SEED = "fuzz"

# --- valid objects, the starting point of most bad bodies --------------------------------------

_CONTAINER = {
    "name": "c",
    "image": "busybox",
    "command": ["sleep", "3600"],
    "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
    "env": [{"name": "A", "value": "b"}],
    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}, "requests": {"cpu": "50m"}},
}
_POD_SPEC = {
    "containers": [_CONTAINER],
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    "terminationGracePeriodSeconds": 30,
    "volumes": [{"name": "v", "emptyDir": {}}],
}
TEMPLATES: dict[str, dict[str, Any]] = {
    "Namespace": {"spec": {"finalizers": ["kubernetes"]}},
    "Node": {
        "spec": {"podCIDR": "10.244.9.0/24", "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"}},
    },
    "Pod": {"spec": _POD_SPEC},
    "ReplicationController": {
        "spec": {
            "replicas": 1,
            "selector": {"app": "a"},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": _POD_SPEC},
        }
    },
    "Service": {
        "spec": {
            "selector": {"app": "a"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "type": "ClusterIP",
        }
    },
    "Endpoints": {
        "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"name": "http", "port": 8080}]}]
    },
    "Event": {
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": NAMESPACE},
        "reason": "Started",
        "message": "m",
        "type": "Normal",
        "count": 1,
    },
    "ConfigMap": {"data": {"key": "value"}, "binaryData": {"bin": "aGVsbG8="}},
    "Secret": {"type": "Opaque", "data": {"key": "aGVsbG8="}, "stringData": {"s": "t"}},
    "Lease": {"spec": {"holderIdentity": "h", "leaseDurationSeconds": 40}},
}


def template(info: ResourceInfo, name: str = SEED) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": "a"}, "annotations": {"note": "n"}}
    if info.namespaced:
        meta["namespace"] = NAMESPACE
    return {"apiVersion": info.api_version, "kind": info.kind, "metadata": meta, **TEMPLATES[info.kind]}


def seed_name(info: ResourceInfo) -> str:
    return "fuzz-ns" if info.kind == "Namespace" else SEED


# --- strategies -----------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
INTERESTING: list[Any] = [
    -1, 0, -(2**31), 2**31, 2**63, -(2**63) - 1, 10**40, 1.5, -0.5, 1e308,
    "", " ", "-1", "1e999", "12Gi", "-5Gi", "1.2.3", "0x10", "1m1", "a" * 300, "Foo_Bar", "a/b/c",
    "UPPER", "ünïcode", "\x00", None, True, False, [], {}, [None], {"": ""}, {"a": {"b": 1}},
]  # fmt: skip
BAD_NAMES = ["", "UPPER", "a_b", "-a", "a-", "a" * 254, "a..b", "..", ".", "a b", "ä", "a:b", "0" * 64]
BAD_LABELS: list[Any] = [
    {"": "x"}, {"a/b/c": "x"}, {"x" * 64: "v"}, {"k": "v" * 64}, {"k": "-bad"}, {"UPPER.com/x": "y"},
    {"k": 1}, {"k": None}, ["k"], "k=v", {"kubernetes.io/": "v"},
]  # fmt: skip
BAD_QUANTITIES = [
    "",
    "-1",
    "1.2.3",
    "Gi",
    "1Gii",
    "1e999",
    "9" * 400,
    "0x10",
    "1 Gi",
    "+-1",
    "1E",
    ".",
    "1.5m",
]
BAD_SELECTORS = [
    "a in (", "!!", "a=b,", "=", "a==b==c", "x notin ()", "a=" + "b" * 100, "a,,b", "(", "a in (b,,c)",
    "a!=", "a=b=c", "!", "a >", "a < b", "\x00", "metadata.name", "metadata.name=x,=", "spec.nodeName!=",
]  # fmt: skip
JSON_PATCH_PATHS = [
    "", "/", "/metadata/name", "/metadata/labels/a~1b", "/metadata/labels/~2", "/spec/containers/0/image",
    "/spec/containers/-", "/spec/containers/99", "/spec/containers/-1", "/spec/containers/01",
    "/spec/replicas", "/x/y/z", "~", "no-slash", "/data/key", "/metadata", "/kind", "/apiVersion",
    "/metadata/resourceVersion", "/status", "/spec/template/spec/containers/0/ports/0/containerPort",
]  # fmt: skip


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A valid object with one to three fields changed into something wrong (or an unknown field added)."""
    doc: Any = base
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["value", "interesting", "unknown", "name", "labels", "quantity"]))
        if not isinstance(doc, dict):
            break
        if kind == "unknown":
            parent = path if isinstance(_get(doc, path), dict) else ()
            path = (*parent, draw(st.sampled_from(["bogus", "spec", "$patch", "", "metadata"])))
            doc = _set(doc, path, draw(json_values))
        elif kind == "name":
            doc = _set(doc, ("metadata",), {"name": draw(st.sampled_from(BAD_NAMES))})
        elif kind == "labels":
            field = draw(st.sampled_from(["labels", "annotations"]))
            value = draw(st.sampled_from([*BAD_LABELS, {"a": "x" * 300_000}]))
            doc = _set(doc, ("metadata",), {"name": SEED, field: value})
        elif kind == "quantity" and isinstance(_get(doc, path), str):
            doc = _set(doc, path, draw(st.sampled_from(BAD_QUANTITIES)))
        elif kind == "interesting":
            doc = _set(doc, path, draw(st.sampled_from(INTERESTING)))
        else:
            doc = _set(doc, path, draw(json_values))
    return doc


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def raw_bodies(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies that are not a JSON object at all, or JSON with something structurally wrong."""
    valid = _dump(base)
    return st.one_of(
        st.binary(max_size=64),
        _text.map(lambda s: s.encode("utf-8", "surrogatepass")),
        json_values.map(_dump),  # wrong top-level types
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),  # truncated
        st.integers(100, 5000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(100, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(20, 2000).map(
            lambda n: b'{"metadata": {"name": "x"}, "spec": {"replicas": 1' + b"0" * n + b"}}"
        ),
        st.just(valid[:-1] + b",}"),  # trailing comma
        st.just(b'{"kind": 1e999, "apiVersion": -0.0}'),
        st.just(b'{"a": "\\ud800"}'),  # a lone surrogate escape
        st.just(b"\xef\xbb\xbf" + valid),  # a byte-order mark
        st.just(b'{"metadata": {"name": "a", "name": "b"}}'),  # duplicate keys
    )


YAML_BODIES = [
    b"a: b: c",
    b"\t- a",
    b"{unclosed",
    b'"unclosed',
    b"- a\n- b",
    b"kind: Pod\nmetadata: {name: &a [*a]}",  # a recursive alias
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n",  # alias bomb
    b"!!python/object/apply:os.system ['true']",
    b"kind: !!binary aGVsbG8=",
    b"metadata: {name: 2001-01-01}",
    b"metadata: {name: .nan}",
    b"--- a\n--- b",
    b"? [a, b]\n: c",
]


def object_bodies(info: ResourceInfo, name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """(content type, body) for create/update of ``info`` (and of its status subresource)."""
    base = template(info, name)
    mismatched = st.sampled_from(
        [
            {**base, "kind": "Pod" if info.kind != "Pod" else "Service"},
            {**base, "apiVersion": "v2"},
            {**base, "apiVersion": "apps/v1"},
            {k: v for k, v in base.items() if k != "kind"},
            {k: v for k, v in base.items() if k != "metadata"},
            {**base, "metadata": {**base["metadata"], "name": "other"}},
            {**base, "metadata": {**base["metadata"], "namespace": "other"}},
            {**base, "metadata": {**base["metadata"], "resourceVersion": "abc"}},
            {**base, "metadata": {**base["metadata"], "resourceVersion": "99999999999999999999"}},
            {**base, "metadata": {**base["metadata"], "generateName": "UPPER-"}},
            {**base, "metadata": {**base["metadata"], "ownerReferences": [{"kind": "X"}]}},
            {**base, "metadata": {**base["metadata"], "finalizers": ["a/b/c", ""]}},
            {**base, "metadata": {**base["metadata"], "deletionTimestamp": "yesterday"}},
            {**base, "metadata": {**base["metadata"], "creationTimestamp": 5}},
        ]
    )
    json_ct = st.sampled_from(["application/json", "application/json; charset=utf-8", ""])
    return st.one_of(
        st.tuples(json_ct, mutated(base).map(_dump)),
        st.tuples(json_ct, mismatched.map(_dump)),
        st.tuples(json_ct, raw_bodies(base)),
        st.tuples(st.just("application/yaml"), st.sampled_from(YAML_BODIES)),
        st.tuples(
            st.sampled_from(["text/html", "application/xml", "application/vnd.kubernetes.protobuf", "x"]),
            st.just(_dump(base)),
        ),
    )


def json_patches(info: ResourceInfo) -> st.SearchStrategy[Any]:
    op = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus", None, 1])},
        optional={
            "path": st.sampled_from(JSON_PATCH_PATHS) | _text | st.integers(),
            "value": json_values | st.sampled_from(INTERESTING),
            "from": st.sampled_from(JSON_PATCH_PATHS) | st.integers(),
        },
    )
    return st.lists(op, max_size=4) | json_values


DIRECTIVES: list[Any] = [
    {"$patch": "delete"}, {"$patch": "replace"}, {"$patch": "bogus"}, {"$patch": 1},
    {"spec": {"containers": [{"name": "c", "$patch": "delete"}]}},
    {"spec": {"containers": [{"$patch": "delete"}]}},
    {"spec": {"containers": [{"name": "c", "$patch": "replace"}, 1]}},
    {"spec": {"$setElementOrder/containers": [{"name": "zz"}, 1, None]}},
    {"spec": {"$setElementOrder/containers": "x"}},
    {"spec": {"$retainKeys": ["x"], "template": {"$retainKeys": 1}}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": 1}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": "x"}},
    {"spec": {"ports": [{"port": "x"}], "$setElementOrder/ports": [{"port": 1}]}},
    {"spec": {"ports": [{"$patch": "delete", "port": 80}, {"name": None}]}},
    {"spec": {"containers": {"name": "c"}}},
    {"spec": {"containers": [None, [], "x"]}},
    {"metadata": {"labels": None, "name": None}},
    {"metadata": {"resourceVersion": "abc"}},
    {"metadata": {"resourceVersion": 5}},
    {"status": {"conditions": [{"type": None}], "$setElementOrder/conditions": [{}]}},
    {"subsets": [{"addresses": [{"ip": "nope"}], "$patch": "merge"}]},
]  # fmt: skip


def patch_bodies(info: ResourceInfo, name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    base = template(info, name)
    merge = st.one_of(mutated(base), st.sampled_from(DIRECTIVES), json_values)
    types = ["application/merge-patch+json", "application/strategic-merge-patch+json"]
    return st.one_of(
        st.tuples(st.sampled_from(types), merge.map(_dump)),
        st.tuples(st.just("application/json-patch+json"), json_patches(info).map(_dump)),
        st.tuples(st.sampled_from([*types, "application/json-patch+json"]), raw_bodies(base)),
        st.tuples(
            st.sampled_from(["application/apply-patch+yaml", "application/json", "text/plain", "", "a/b;c"]),
            st.just(_dump(base)),
        ),
    )


def delete_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    options = st.fixed_dictionaries(
        {},
        optional={
            "kind": st.sampled_from(["DeleteOptions", "Pod", 1]),
            "apiVersion": st.sampled_from(["v1", "meta.k8s.io/v1", "x"]),
            "gracePeriodSeconds": st.sampled_from(INTERESTING),
            "propagationPolicy": st.sampled_from(["Orphan", "Background", "Foreground", "Bogus", 5, None]),
            "orphanDependents": st.sampled_from([True, "yes", 1]),
            "preconditions": st.fixed_dictionaries(
                {}, optional={"uid": json_values, "resourceVersion": json_values}
            ),
            "dryRun": st.sampled_from([["All"], ["x"], "All", [1]]),
        },
    )
    return st.one_of(
        st.tuples(st.just("application/json"), options.map(_dump)),
        st.tuples(st.just("application/json"), raw_bodies({"kind": "DeleteOptions"})),
        st.tuples(st.just("application/vnd.kubernetes.protobuf"), st.binary(max_size=32)),
        st.just(("", b"")),
    )


def eviction_bodies(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    base = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NAMESPACE}}
    return st.one_of(
        st.tuples(st.just("application/json"), mutated(base).map(_dump)),
        st.tuples(st.just("application/json"), raw_bodies(base)),
        st.tuples(st.just("application/vnd.kubernetes.protobuf"), st.binary(max_size=64)),
    )


def binding_bodies(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    base = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "no-such-node"},
    }
    return st.one_of(
        st.tuples(st.just("application/json"), mutated(base).map(_dump)),
        st.tuples(st.just(""), raw_bodies(base)),
    )


def scale_bodies(name: str) -> st.SearchStrategy[tuple[str, bytes]]:
    base = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 1},
    }
    return st.one_of(
        st.tuples(st.just("application/json"), mutated(base).map(_dump)),
        st.tuples(st.just("application/json"), raw_bodies(base)),
    )


_param_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
write_query = st.fixed_dictionaries(
    {},
    optional={
        "fieldManager": st.sampled_from(["", "x" * 200, "pea", "\u00e9"]) | _param_text,
        "dryRun": st.sampled_from(["All", "", "None", "all", "x"]),
        "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore", "", "strict", "x"]),
        "resourceVersion": st.sampled_from(["", "0", "-1", "abc", "99999999999999999999999", "1e3"]),
        "pretty": st.sampled_from(["true", "x"]),
        "force": st.sampled_from(["true", "x"]),
    },
)
delete_query = st.fixed_dictionaries(
    {},
    optional={
        "gracePeriodSeconds": st.sampled_from(["0", "-1", "30", "abc", "1e3", "99999999999999999999", ""]),
        "propagationPolicy": st.sampled_from(["Orphan", "Background", "Foreground", "", "x"]),
        "orphanDependents": st.sampled_from(["true", "false", "maybe", ""]),
        "dryRun": st.sampled_from(["All", "", "x"]),
        "labelSelector": st.sampled_from(BAD_SELECTORS) | _param_text,
        "fieldSelector": st.sampled_from(BAD_SELECTORS) | _param_text,
        "limit": st.sampled_from(["-1", "abc", "1", "99999999999999999999999"]),
        "continue": st.sampled_from(["", "abc", "eyJ4IjoxfQ==", "!!!", "e30"]) | _param_text,
        "resourceVersion": st.sampled_from(["abc", "-5", "1"]),
        "resourceVersionMatch": st.sampled_from(["Exact", "NotOlderThan", "x"]),
        "timeoutSeconds": st.sampled_from(["x", "-1"]),
    },
)


# --- endpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One write endpoint: a method on a collection, an object or one of its subresources."""

    info: ResourceInfo
    method: str
    named: bool
    subresource: str | None = None
    label: str = ""

    @property
    def id(self) -> str:
        return self.label or f"{self.method} {self.info.plural}{'/{name}' if self.named else ''}" + (
            f"/{self.subresource}" if self.subresource else ""
        )

    def bodies(self, name: str) -> st.SearchStrategy[tuple[str, bytes]]:
        if self.method == "DELETE":
            return delete_bodies()
        if self.subresource == "eviction":
            return eviction_bodies(name)
        if self.subresource == "binding":
            return binding_bodies(name)
        if self.subresource == "scale":
            return patch_bodies(self.info, name) if self.method == "PATCH" else scale_bodies(name)
        if self.method == "PATCH":
            return patch_bodies(self.info, name)
        return object_bodies(self.info, name)


def endpoints() -> list[Endpoint]:
    out = []
    for info in RESOURCES:
        out += [
            Endpoint(info, "POST", False),
            Endpoint(info, "PUT", True),
            Endpoint(info, "PATCH", True),
            Endpoint(info, "DELETE", True),
            Endpoint(info, "DELETE", False, label=f"DELETE {info.plural} (collection)"),
        ]
        for sub in sorted(info.subresources):
            if sub in ("status", "scale", "finalize"):
                out += [Endpoint(info, "PUT", True, sub), Endpoint(info, "PATCH", True, sub)]
            elif sub in ("binding", "eviction"):
                out.append(Endpoint(info, "POST", True, sub))
    return out


ENDPOINTS = endpoints()
PER_ENDPOINT = math.ceil(REQUESTS / len(ENDPOINTS))

tried: Counter[str] = Counter()
codes: Counter[int] = Counter()
server_errors: list[str] = []


def url(info: ResourceInfo, name: str | None, sub: str | None) -> str:
    base = f"/api/{info.version}" if not info.group else f"/apis/{info.group}/{info.version}"
    if info.namespaced:
        base += f"/namespaces/{NAMESPACE}"
    base += f"/{info.plural}"
    if name is not None:
        # Dot segments escaped, or the client itself would resolve ``pods/..`` to the namespace.
        base += "/" + (quote(name, safe="") if name not in (".", "..") else name.replace(".", "%2E"))
    if sub:
        base += f"/{sub}"
    return base


def ensure_seed(server: ThreadedControlPlane, http: httpx.Client, info: ResourceInfo) -> None:
    """Put back the object the named endpoints aim at, should a (valid) request have removed it."""
    name = seed_name(info)
    got = http.get(url(info, name, None))
    if got.status_code == 200:
        if not got.json()["metadata"].get("deletionTimestamp"):
            return
        # Being deleted (a finalizer, or a pod bound by the fuzzer): finish it.
        body = {"metadata": {"finalizers": None}}
        http.patch(
            url(info, name, None),
            content=_dump(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if info.kind == "Namespace":  # no namespace controller here: empty the spec's finalizers by hand
            ns = {**http.get(url(info, name, None)).json(), "spec": {"finalizers": []}}
            finalized = http.put(url(info, name, "finalize"), content=_dump(ns))
            assert finalized.status_code == 200, finalized.text
        http.delete(url(info, name, None), params={"gracePeriodSeconds": "0"})
        assert http.get(url(info, name, None)).status_code == 404, f"cannot remove the {info.kind} seed"
    created = http.post(url(info, None, None), content=_dump(template(info, name)))
    assert created.status_code in (201, 409), created.text


def check(server: ThreadedControlPlane, ep: Endpoint, response: httpx.Response, before: int) -> int:
    """Check one answer; return the store's revision after it."""
    code = response.status_code
    codes[code] += 1
    text = response.text
    where = f"{ep.id} -> {code}: {text[:300]}"
    if code >= 500:
        server_errors.append(where)
    assert code < 500, where
    assert "Traceback" not in text and 'File "' not in text, where
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("kind"), str), where
    after = server.revision()
    if code >= 400:
        assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == code, where
        assert after == before, f"a rejected request changed the store: {where}"
    else:  # the request happened to be valid: the object (list, scale...) it acted on, or a Status
        kinds = {ep.info.kind, f"{ep.info.kind}List", "Status", "Scale"}
        assert body["kind"] in kinds and body.get("apiVersion"), where
    return after


@pytest.fixture(scope="module")
def http(quiet_controlplane: ThreadedControlPlane) -> Any:
    with httpx.Client(base_url=quiet_controlplane.url, headers=quiet_controlplane.headers, timeout=60) as c:
        for info in RESOURCES:
            ensure_seed(quiet_controlplane, c, info)
        yield c


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda ep: ep.id)
def test_write_endpoint_refuses_bad_input(
    quiet_controlplane: ThreadedControlPlane, http: httpx.Client, ep: Endpoint
) -> None:
    server = quiet_controlplane
    revision: list[int] = []  # the store's revision after the previous request, when known

    @settings(
        max_examples=PER_ENDPOINT,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        name=st.sampled_from(BAD_NAMES[1:]) | _param_text.filter(bool) if ep.named else st.none(),
        bad_name=st.integers(0, 9).map(lambda n: n == 0),
        request=ep.bodies(seed_name(ep.info)),
        query=delete_query if ep.method == "DELETE" else write_query,
    )
    def fuzz(name: str | None, bad_name: bool, request: tuple[str, bytes], query: dict[str, str]) -> None:
        if not bad_name:
            name = seed_name(ep.info)
        content_type, body = request
        headers = {"Content-Type": content_type} if content_type else {}
        before = revision[0] if revision else server.revision()
        response = http.request(
            ep.method,
            url(ep.info, name if ep.named else None, ep.subresource),
            content=body,
            params=query,
            headers=headers,
        )
        tried[ep.id] += 1
        revision[:] = [check(server, ep, response, before)]
        if ep.method == "DELETE" and response.status_code < 300 and query.get("dryRun") != "All":
            ensure_seed(server, http, ep.info)
            revision.clear()

    fuzz()


def test_server_healthy_after_fuzzing(quiet_controlplane: ThreadedControlPlane, http: httpx.Client) -> None:
    total = sum(tried.values())
    for ep_id, n in sorted(tried.items()):
        print(f"{n:6d}  {ep_id}")
    print(f"requests: {total} over {len(tried)} endpoints; status codes: {dict(sorted(codes.items()))}")
    print(f"5xx seen: {len(server_errors)}")
    assert not server_errors
    if tried:  # when run alone (-k), nothing was tried
        assert total >= REQUESTS * 0.9
    assert http.get("/readyz").text == "ok"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-fuzz"}, "data": {"a": "b"}}
    created = http.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", content=msgspec.json.encode(cm))
    assert created.status_code == 201, created.text
    assert http.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/after-fuzz").json()["data"] == {"a": "b"}
