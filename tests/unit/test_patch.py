"""Tests for controlplane.patch: RFC 7386, RFC 6902, strategic merge patch and kubectl's three-way patch.

The three-way tests check outcomes (what the live object looks like after the patch), not the exact
patch text, except where kubectl's wire format matters ({} for no change, the directive names).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    merge_key,
    supports_strategic_merge,
    three_way_patch,
)

# --- RFC 7386 --------------------------------------------------------------------------------

RFC7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC7386_EXAMPLES)
def test_merge_patch_rfc7386_appendix(doc: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == before


def test_merge_patch_rfc7386_section3_example() -> None:
    doc = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert apply_merge_patch(doc, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_merge_patch_result_shares_nothing_with_inputs() -> None:
    doc = {"keep": {"x": [1]}}
    patch = {"new": {"y": [2]}}
    result = apply_merge_patch(doc, patch)
    result["keep"]["x"].append(9)
    result["new"]["y"].append(9)
    assert doc == {"keep": {"x": [1]}}
    assert patch == {"new": {"y": [2]}}


# --- RFC 6902 --------------------------------------------------------------------------------

RFC6902_EXAMPLES: list[tuple[str, Any, list[Any], Any]] = [
    ("A.1", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        "A.2",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ("A.3", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        "A.5",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    ("A.14", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    (
        "A.16",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ("copy", {"a": {"b": [1]}}, [{"op": "copy", "from": "/a/b", "path": "/c"}], {"a": {"b": [1]}, "c": [1]}),
    ("root replace", {"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
    ("slash key", {"a/b": 1}, [{"op": "replace", "path": "/a~1b", "value": 2}], {"a/b": 2}),
    ("add replaces member", {"a": 1}, [{"op": "add", "path": "/a", "value": 2}], {"a": 2}),
    ("add at end index", {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    ("move to same place", {"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
    ("test numbers", {"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}], {"a": 1}),
]


@pytest.mark.parametrize(
    ("doc", "ops", "expected"), [pytest.param(d, o, e, id=n) for n, d, o, e in RFC6902_EXAMPLES]
)
def test_json_patch_rfc6902_examples(doc: Any, ops: list[Any], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert apply_json_patch(doc, ops) == expected
    assert doc == before


RFC6902_ERRORS: list[tuple[str, Any, Any, str]] = [
    ("A.9 test fails", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "test failed"),
    ("A.12 missing parent", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "/baz/bat"),
    ("A.15 string vs number", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "test"),
    ("bool is not 1", {"a": 1}, [{"op": "test", "path": "/a", "value": True}], "test failed"),
    ("missing value", {}, [{"op": "add", "path": "/a"}], "missing 'value'"),
    ("missing from", {}, [{"op": "move", "path": "/a"}], "missing 'from'"),
    ("unknown op", {}, [{"op": "frobnicate", "path": "/a"}], "unknown"),
    ("op not an object", {}, ["add"], "must be an object"),
    ("not a list", {}, {"op": "add", "path": "/a", "value": 1}, "array"),
    ("remove missing", {"a": 1}, [{"op": "remove", "path": "/b"}], "'/b' does not exist"),
    ("replace missing", {"a": 1}, [{"op": "replace", "path": "/b", "value": 1}], "does not exist"),
    ("index out of range", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 1}], "out of range"),
    ("leading zero index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], "not an array index"),
    ("dash on remove", {"a": [1]}, [{"op": "remove", "path": "/a/-"}], "not an array index"),
    ("no leading slash", {"a": 1}, [{"op": "remove", "path": "a"}], "must start with '/'"),
    ("bad escape", {"a": 1}, [{"op": "remove", "path": "/a~2"}], "escape"),
    ("move into child", {"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "own child"),
    ("into a scalar", {"a": 1}, [{"op": "add", "path": "/a/b", "value": 1}], "not an object or array"),
    ("remove root", {"a": 1}, [{"op": "remove", "path": ""}], "whole document"),
]


@pytest.mark.parametrize(
    ("doc", "ops", "message"), [pytest.param(d, o, m, id=n) for n, d, o, m in RFC6902_ERRORS]
)
def test_json_patch_errors(doc: Any, ops: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message.replace("[", r"\[")):
        apply_json_patch(doc, ops)


def test_json_patch_is_atomic() -> None:
    doc = {"a": {"b": 1}, "list": [1, 2]}
    before = copy.deepcopy(doc)
    ops = [
        {"op": "add", "path": "/a/c", "value": 2},
        {"op": "remove", "path": "/list/0"},
        {"op": "replace", "path": "/a/b", "value": 5},
        {"op": "remove", "path": "/nope"},
    ]
    with pytest.raises(PatchError, match="operation 3"):
        apply_json_patch(doc, ops)
    assert doc == before


def test_json_patch_does_not_alias_values() -> None:
    value = {"x": [1]}
    result = apply_json_patch({}, [{"op": "add", "path": "/v", "value": value}])
    result["v"]["x"].append(2)
    assert value == {"x": [1]}


# --- merge keys ------------------------------------------------------------------------------


def test_merge_keys_by_kind_and_path() -> None:
    assert merge_key("Pod", ("spec", "containers")) == "name"
    assert merge_key("Pod", ("spec", "initContainers", "ports")) == "containerPort"
    assert merge_key("ReplicationController", ("spec", "template", "spec", "containers", "ports")) == (
        "containerPort"
    )
    assert merge_key("ReplicationController", ("spec", "template", "spec", "containers", "env")) == "name"
    assert merge_key("Pod", ("spec", "containers", "volumeMounts")) == "mountPath"
    assert merge_key("Pod", ("spec", "volumes")) == "name"
    assert merge_key("Pod", ("spec", "hostAliases")) == "ip"
    assert merge_key("Pod", ("status", "conditions")) == "type"
    assert merge_key("Service", ("spec", "ports")) == "port"
    assert merge_key("Node", ("status", "addresses")) == "type"
    assert merge_key("Node", ("spec", "taints")) == "key"
    assert merge_key("ConfigMap", ("metadata", "ownerReferences")) == "uid"
    # Atomic lists, set-like primitive lists and paths that do not apply to the kind have no key.
    assert merge_key("Pod", ("spec", "tolerations")) is None
    assert merge_key("Pod", ("status", "containerStatuses")) is None
    assert merge_key("Pod", ("metadata", "finalizers")) is None
    assert merge_key("Pod", ("spec", "template", "spec", "containers")) is None
    assert merge_key("ReplicationController", ("spec", "containers")) is None
    assert merge_key("Widget", ("spec", "containers")) is None
    assert supports_strategic_merge("Pod")
    assert not supports_strategic_merge("Widget")


# --- strategic merge patch -------------------------------------------------------------------


def pod(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": list(containers)},
    }
    obj.update(extra)
    return obj


def rc(*containers: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": "web"},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": list(containers)}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"}, "spec": spec}


def test_strategic_changes_one_container_and_keeps_the_other() -> None:
    doc = pod(
        {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}, {"name": "side", "image": "x"}
    )
    before = copy.deepcopy(doc)
    result = apply_strategic_merge_patch(
        doc, {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}, "Pod"
    )
    assert result["spec"]["containers"] == [
        {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "x"},
    ]
    assert doc == before
    # The same patch as a plain merge patch replaces the whole list.
    merged = apply_merge_patch(doc, {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}})
    assert merged["spec"]["containers"] == [{"name": "web", "image": "nginx:2"}]


def test_strategic_env_by_name_and_new_elements_append() -> None:
    doc = rc({"name": "web", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(doc, patch, "ReplicationController")
    assert result["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]


def test_strategic_patch_delete_of_a_container_and_of_a_map() -> None:
    doc = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"}, status={"phase": "Running"})
    doc["spec"]["securityContext"] = {"runAsUser": 1000}
    patch = {
        "spec": {"containers": [{"name": "a", "$patch": "delete"}], "securityContext": {"$patch": "delete"}}
    }
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert result["spec"] == {"containers": [{"name": "b", "image": "y"}]}
    assert result["status"] == {"phase": "Running"}


def test_strategic_patch_replace_on_list_and_map() -> None:
    doc = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    doc["metadata"]["labels"] = {"x": "1", "y": "2"}
    patch = {
        "metadata": {"labels": {"$patch": "replace", "z": "3"}},
        "spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "z"}]},
    }
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert result["metadata"]["labels"] == {"z": "3"}
    assert result["spec"]["containers"] == [{"name": "c", "image": "z"}]


def test_strategic_service_ports_by_port() -> None:
    svc = {
        "kind": "Service",
        "spec": {
            "clusterIP": "10.0.0.7",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}],
        },
    }
    result = apply_strategic_merge_patch(
        svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "Service"
    )
    assert result["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 443, "protocol": "TCP"},
    ]
    assert result["spec"]["clusterIP"] == "10.0.0.7"


def test_strategic_finalizers_are_a_set() -> None:
    doc = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    result = apply_strategic_merge_patch(
        doc,
        {"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}},
        "ConfigMap",
    )
    assert result["metadata"]["finalizers"] == ["b", "c"]
    only_delete = apply_strategic_merge_patch(
        doc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}, "ConfigMap"
    )
    assert only_delete["metadata"]["finalizers"] == ["a"]


def test_strategic_atomic_lists_are_replaced() -> None:
    doc = pod({"name": "a", "image": "x", "command": ["sh", "-c"]})
    doc["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    patch = {
        "spec": {
            "tolerations": [{"key": "other", "operator": "Exists"}],
            "containers": [{"name": "a", "command": ["true"]}],
        }
    }
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert result["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]
    assert result["spec"]["containers"][0]["command"] == ["true"]


def test_strategic_retain_keys() -> None:
    doc = pod({"name": "a", "image": "x"})
    doc["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]
    patch = {
        "spec": {
            "volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}}]
        }
    }
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert result["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/srv"}},
        {"name": "other", "emptyDir": {}},
    ]
    with pytest.raises(PatchError, match="retainKeys"):
        apply_strategic_merge_patch(
            doc, {"spec": {"$retainKeys": ["containers"], "hostNetwork": True}}, "Pod"
        )


def test_strategic_set_element_order() -> None:
    doc = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["c", "a", "b"]


def test_strategic_null_deletes_and_status_conditions_merge_by_type() -> None:
    doc = pod(
        {"name": "a", "image": "x"},
        status={
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": False}],
        },
    )
    doc["metadata"]["labels"] = {"app": "web", "tier": "fe"}
    patch = {
        "metadata": {"labels": {"tier": None}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": True, "restartCount": 0}],
        },
    }
    result = apply_strategic_merge_patch(doc, patch, "Pod")
    assert result["metadata"]["labels"] == {"app": "web"}
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]
    assert result["status"]["containerStatuses"] == [{"name": "a", "ready": True, "restartCount": 0}]


def test_strategic_unknown_kind_replaces_lists() -> None:
    doc = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    result = apply_strategic_merge_patch(
        doc, {"spec": {"containers": [{"name": "a", "image": "x"}]}}, "Widget"
    )
    assert result == {"spec": {"containers": [{"name": "a", "image": "x"}]}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"containers": [{"image": "x"}]}}, "/spec/containers/0: missing merge key 'name'"),
        ({"spec": {"containers": ["web"]}}, "must be objects"),
        ({"spec": {"$patch": "explode"}}, "unknown \\$patch"),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "must be a list"),
        ({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}, "merge key 'name'"),
        ([{"op": "add"}], "JSON object"),
    ],
)
def test_strategic_errors(patch: Any, message: str) -> None:
    doc = pod({"name": "a", "image": "x"})
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError, match=message):
        apply_strategic_merge_patch(doc, patch, "Pod")
    assert doc == before


# --- three-way patch (kubectl apply) ---------------------------------------------------------


def kubectl_apply(original: Any, modified: Any, current: Any, kind: str | None) -> Any:
    """What the live object becomes after ``kubectl apply``: the three-way patch, applied to current."""
    patch = three_way_patch(original, modified, current, kind)
    # Whatever kubectl sends must survive the trip through JSON.
    patch = json.loads(json.dumps(patch))
    if kind is None:
        return apply_merge_patch(current, patch)
    return apply_strategic_merge_patch(current, patch, kind)


def live_rc(manifest: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    """``manifest`` as the server would store it: defaults, uid, status."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update({"uid": "u-1", "resourceVersion": "5", "namespace": "default"})
    obj["spec"].setdefault("replicas", replicas)
    for c in obj["spec"]["template"]["spec"]["containers"]:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
    obj["spec"]["template"]["spec"].setdefault("restartPolicy", "Always")
    obj["status"] = {"replicas": obj["spec"]["replicas"], "readyReplicas": 1}
    return obj


WEB = {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
SIDE = {"name": "side", "image": "busybox", "args": ["sleep", "1d"]}


def test_three_way_first_apply_sets_manifest_fields_only() -> None:
    manifest = rc(WEB, SIDE)
    current = live_rc(manifest)
    current["metadata"]["labels"] = {"added-by": "someone"}
    patch = three_way_patch(None, manifest, current, "ReplicationController")
    assert patch == {}
    changed = copy.deepcopy(manifest)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    result = kubectl_apply(None, changed, current, "ReplicationController")
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert result["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert result["metadata"]["labels"] == {"added-by": "someone"}
    assert result["status"] == current["status"]


def test_three_way_creating_from_nothing() -> None:
    manifest = rc(WEB, SIDE, replicas=2)
    assert kubectl_apply(None, manifest, {}, "ReplicationController") == manifest


def test_three_way_reapply_without_change_is_empty() -> None:
    manifest = rc(WEB, SIDE)
    current = live_rc(manifest, replicas=5)
    assert three_way_patch(manifest, manifest, current, "ReplicationController") == {}
    # As a merge patch (a kind without merge keys) lists are atomic, so this counts only when the lists
    # match exactly; fields added beside them still do not matter.
    assert three_way_patch(manifest, manifest, {**manifest, "status": {"replicas": 1}}, None) == {}


def test_three_way_field_removed_from_manifest_is_removed() -> None:
    original = rc(WEB, SIDE)
    original["spec"]["minReadySeconds"] = 10
    original["metadata"]["annotations"] = {"team": "a", "note": "x"}
    current = live_rc(original)
    modified = rc(WEB, SIDE)
    modified["metadata"]["annotations"] = {"team": "a"}
    patch = three_way_patch(original, modified, current, "ReplicationController")
    assert patch == {"metadata": {"annotations": {"note": None}}, "spec": {"minReadySeconds": None}}
    result = kubectl_apply(original, modified, current, "ReplicationController")
    assert "minReadySeconds" not in result["spec"]
    assert result["metadata"]["annotations"] == {"team": "a"}


def test_three_way_keeps_what_others_set() -> None:
    original = rc(WEB)
    current = live_rc(original)
    current["spec"]["replicas"] = 7  # kubectl scale
    current["metadata"]["annotations"] = {"other-tool/stamp": "x"}  # kubectl annotate
    modified = rc({**WEB, "image": "nginx:2"})
    result = kubectl_apply(original, modified, current, "ReplicationController")
    assert result["spec"]["replicas"] == 7
    assert result["metadata"]["annotations"] == {"other-tool/stamp": "x"}
    assert result["metadata"]["uid"] == "u-1"
    container = result["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:2"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert result["status"] == current["status"]


def test_three_way_replicas_in_manifest_win_over_scale() -> None:
    original = rc(WEB, replicas=2)
    current = live_rc(original)
    current["spec"]["replicas"] = 7
    result = kubectl_apply(original, original, current, "ReplicationController")
    assert result["spec"]["replicas"] == 2


def test_three_way_service_keeps_allocated_cluster_ip() -> None:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    current = copy.deepcopy(manifest)
    current["spec"].update({"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "type": "ClusterIP"})
    current["spec"]["ports"][0]["protocol"] = "TCP"
    modified = copy.deepcopy(manifest)
    modified["spec"]["ports"].append({"port": 443, "targetPort": 8443})
    patch = three_way_patch(manifest, modified, current, "Service")
    assert patch == {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}
    result = apply_strategic_merge_patch(current, patch, "Service")
    assert result["spec"]["clusterIP"] == "10.96.0.12"
    assert result["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"port": 443, "targetPort": 8443},
    ]


def test_three_way_env_var_removed_from_one_container() -> None:
    original = rc(WEB, {**SIDE, "env": [{"name": "A", "value": "s"}]})
    current = live_rc(original)
    modified = rc(
        {**WEB, "env": [{"name": "A", "value": "1"}]}, {**SIDE, "env": [{"name": "A", "value": "s"}]}
    )
    patch = three_way_patch(original, modified, current, "ReplicationController")
    assert patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "web", "env": [{"name": "B", "$patch": "delete"}]}]}
            }
        }
    }
    result = kubectl_apply(original, modified, current, "ReplicationController")
    web, side = result["spec"]["template"]["spec"]["containers"]
    assert web["env"] == [{"name": "A", "value": "1"}]
    assert side["env"] == [{"name": "A", "value": "s"}]
    assert web["imagePullPolicy"] == "IfNotPresent"


def test_three_way_container_removed_from_manifest() -> None:
    original = rc(WEB, SIDE)
    current = live_rc(original)
    current["spec"]["template"]["spec"]["containers"].append({"name": "injected", "image": "proxy"})
    result = kubectl_apply(original, rc(WEB), current, "ReplicationController")
    names = [c["name"] for c in result["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "injected"]


def test_three_way_label_changed_and_finalizer_dropped() -> None:
    original = rc(WEB)
    original["metadata"]["labels"] = {"app": "web", "tier": "fe"}
    original["metadata"]["finalizers"] = ["example.com/a"]
    current = live_rc(original)
    current["metadata"]["finalizers"] = ["example.com/a", "server/b"]
    modified = rc(WEB)
    modified["metadata"]["labels"] = {"app": "web", "tier": "be"}
    patch = three_way_patch(original, modified, current, "ReplicationController")
    assert patch == {
        "metadata": {
            "labels": {"tier": "be"},
            "finalizers": None,
        }
    }
    result = kubectl_apply(original, modified, current, "ReplicationController")
    assert result["metadata"]["labels"] == {"app": "web", "tier": "be"}
    assert "finalizers" not in result["metadata"]
    # Dropping one finalizer from a list still in the manifest removes only that one.
    modified["metadata"]["finalizers"] = ["example.com/c"]
    patch = three_way_patch(original, modified, current, "ReplicationController")
    assert patch["metadata"]["$deleteFromPrimitiveList/finalizers"] == ["example.com/a"]
    result = kubectl_apply(original, modified, current, "ReplicationController")
    assert result["metadata"]["finalizers"] == ["server/b", "example.com/c"]


def test_three_way_reorders_containers_when_needed() -> None:
    original = rc(WEB, SIDE)
    current = live_rc(original)
    modified = rc(SIDE, WEB)
    patch = three_way_patch(original, modified, current, "ReplicationController")
    template_patch = patch["spec"]["template"]["spec"]
    assert template_patch == {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}]}
    result = kubectl_apply(original, modified, current, "ReplicationController")
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["side", "web"]


def test_three_way_volume_source_switch_uses_retain_keys() -> None:
    original = pod({"name": "a", "image": "x"})
    current = copy.deepcopy(original)
    current["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    modified = pod({"name": "a", "image": "x"})
    modified["spec"]["volumes"] = [{"name": "data", "hostPath": {"path": "/srv"}}]
    result = kubectl_apply(None, modified, current, "Pod")
    assert result["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/srv"}}]


def test_three_way_list_without_merge_keys_falls_back_to_replace() -> None:
    current = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    modified = pod({"image": "nameless"})
    result = kubectl_apply(None, modified, current, "Pod")
    assert result["spec"]["containers"] == [{"image": "nameless"}]


def test_three_way_merge_patch_mode_replaces_lists() -> None:
    original = {"spec": {"items": [1, 2], "keep": "x"}, "gone": 1}
    current = {"spec": {"items": [1, 2], "keep": "x", "server": True}, "gone": 1, "status": {}}
    modified = {"spec": {"items": [3], "keep": "x"}}
    patch = three_way_patch(original, modified, current, None)
    assert patch == {"spec": {"items": [3]}, "gone": None}


def test_three_way_rejects_non_objects() -> None:
    with pytest.raises(PatchError, match="modified"):
        three_way_patch(None, [1], {}, None)
    with pytest.raises(PatchError, match="original"):
        three_way_patch("x", {}, {}, None)


# --- properties ------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS = st.booleans() | st.integers(min_value=-2, max_value=2) | st.sampled_from(["", "x", "y"])


def json_values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
        max_leaves=12,
    )


def objects(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(KEYS, json_values(leaf), max_size=4)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def expected_apply(
    original: dict[str, Any], modified: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """kubectl apply's outcome, stated directly: modified's fields win, fields only original had go,
    everything else in current stays."""
    result = dict(current)
    for key, mod in modified.items():
        cur = current.get(key)
        if isinstance(mod, dict) and isinstance(cur, dict):
            orig = original.get(key)
            result[key] = expected_apply(orig if isinstance(orig, dict) else {}, mod, cur)
        else:
            result[key] = mod
    for key in original:
        if key not in modified:
            result.pop(key, None)
    return result


@settings(max_examples=300, database=None, deadline=None)
@given(
    original=st.none() | objects(SCALARS | st.none()),
    modified=objects(SCALARS),
    current=objects(SCALARS | st.none()),
)
def test_three_way_merge_patch_property(
    original: dict[str, Any] | None, modified: dict[str, Any], current: dict[str, Any]
) -> None:
    patch = three_way_patch(original, modified, current, None)
    result = apply_merge_patch(current, patch)
    assert canonical(result) == canonical(expected_apply(original or {}, modified, current))
    # Applying the same manifest again changes nothing.
    assert three_way_patch(modified, modified, result, None) == {}


NAMES = st.sampled_from(["a", "b", "c"])
ENV = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from(["X", "Y", "Z"]), "value": st.sampled_from(["1", "2"])}),
    max_size=3,
    unique_by=lambda e: e["name"],
)
CONTAINER = st.fixed_dictionaries(
    {"name": NAMES},
    optional={"image": st.sampled_from(["i1", "i2"]), "env": ENV, "imagePullPolicy": st.just("Always")},
)
CONTAINERS = st.lists(CONTAINER, max_size=3, unique_by=lambda c: c["name"])


def expected_keyed(
    original: list[dict[str, Any]], modified: list[dict[str, Any]], current: list[dict[str, Any]]
) -> dict[str, Any]:
    """Containers (and their env) merged by name, as a name -> element map (order is checked apart)."""
    orig = {c["name"]: c for c in original}
    mod = {c["name"]: c for c in modified}
    out: dict[str, Any] = {}
    for c in current:
        if c["name"] in mod:
            o, m = orig.get(c["name"], {}), mod[c["name"]]
            merged = expected_apply(o, m, c)
            if "env" in m and "env" in c:
                merged["env"] = list(expected_keyed(o.get("env", []), m["env"], c["env"]).values())
            out[c["name"]] = merged
        elif c["name"] not in orig:
            out[c["name"]] = c
    for name, m in mod.items():
        out.setdefault(name, m)
    return out


def by_name(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "env" in item:
            item = {**item, "env": by_name(item["env"])}
        out[item["name"]] = item
    return out


@settings(max_examples=300, database=None, deadline=None)
@given(original=st.none() | CONTAINERS, modified=CONTAINERS, current=CONTAINERS)
def test_three_way_strategic_containers_property(
    original: list[dict[str, Any]] | None, modified: list[dict[str, Any]], current: list[dict[str, Any]]
) -> None:
    orig_obj = None if original is None else pod(*original)
    patch = three_way_patch(orig_obj, pod(*modified), pod(*current), "Pod")
    result = apply_strategic_merge_patch(pod(*current), json.loads(json.dumps(patch)), "Pod")
    got = result["spec"]["containers"]
    expected = expected_keyed(original or [], modified, current)
    assert canonical(by_name(got)) == canonical(by_name(list(expected.values())))
    # Manifest elements come out in the manifest's order, server-only ones are kept somewhere.
    wanted = [c["name"] for c in modified]
    assert [c["name"] for c in got if c["name"] in wanted] == wanted
    for c in got:
        if "env" in c and c["name"] in wanted:
            mod_env = [e["name"] for e in next(m for m in modified if m["name"] == c["name"]).get("env", [])]
            assert [e["name"] for e in c["env"] if e["name"] in mod_env] == mod_env
    assert three_way_patch(pod(*modified), pod(*modified), result, "Pod") == {}
