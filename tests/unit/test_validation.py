"""Object validation: Kubernetes' rules, limits, field paths and exact message wording."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from controlplane.api.coordination import Lease
from controlplane.api.core import (
    ConfigMap,
    Endpoints,
    Event,
    Namespace,
    Node,
    Pod,
    ReplicationController,
    Secret,
    Service,
)
from controlplane.api.meta import ObjectMeta, OwnerReference, TopLevel
from controlplane.api.registry import ResourceInfo, by_kind
from controlplane.validation import (
    FieldError,
    duplicate,
    find_unknown_fields,
    forbidden,
    invalid,
    invalid_message,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_label_value,
    is_valid_port_name,
    not_found,
    not_supported,
    required,
    too_long,
    validate,
    validate_name,
    validate_object_meta,
    validate_update,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def info(kind: str) -> ResourceInfo:
    found = by_kind(kind)
    assert found is not None
    return found


def build(kind: str, body: dict[str, Any]) -> TopLevel:
    """Decode a manifest-shaped dict the way the API server would."""
    return msgspec.convert(body, info(kind).type)


def messages(obj: TopLevel) -> list[str]:
    return [e.message() for e in validate(obj, info(obj.kind))]  # type: ignore[attr-defined]


def update_messages(new: TopLevel, old: TopLevel) -> list[str]:
    return [e.message() for e in validate_update(new, old, info(new.kind))]  # type: ignore[attr-defined]


def pod(spec: dict[str, Any] | None = None, **meta: Any) -> Pod:
    metadata = {"name": "web", "namespace": "default", **meta}
    body = spec if spec is not None else {"containers": [{"name": "app", "image": "nginx"}]}
    obj = build("Pod", {"metadata": metadata, "spec": body})
    assert isinstance(obj, Pod)
    return obj


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "nginx", **extra}


def service(spec: dict[str, Any], name: str = "web") -> Service:
    obj = build("Service", {"metadata": {"name": name, "namespace": "default"}, "spec": spec})
    assert isinstance(obj, Service)
    return obj


def rc(spec: dict[str, Any]) -> ReplicationController:
    obj = build("ReplicationController", {"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    assert isinstance(obj, ReplicationController)
    return obj


TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container()]}}

# --- field errors --------------------------------------------------------------------------------


def test_field_error_wording_per_type() -> None:
    assert invalid("spec.replicas", -1, "must be greater than or equal to 0").message() == (
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    )
    assert required("spec.containers[0].image").message() == "spec.containers[0].image: Required value"
    assert required("metadata.name", "name or generateName is required").message() == (
        "metadata.name: Required value: name or generateName is required"
    )
    assert not_supported("spec.restartPolicy", "Sometimes", ["Always", "Never", "OnFailure"]).message() == (
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"'
    )
    assert (
        duplicate("spec.containers[1].name", "app").message()
        == 'spec.containers[1].name: Duplicate value: "app"'
    )
    assert forbidden("spec", "nope").message() == "spec: Forbidden: nope"
    assert too_long("metadata.annotations", "", 262144).message() == (
        "metadata.annotations: Too long: must have at most 262144 bytes"
    )
    assert not_found("spec.volumes", "data").message() == 'spec.volumes: Not found: "data"'


def test_field_error_value_rendering() -> None:
    assert invalid("f", True, "d").message() == "f: Invalid value: true: d"
    assert invalid("f", None, "d").message() == "f: Invalid value: null: d"
    assert invalid("f", 'say "hi"\n', "d").message() == 'f: Invalid value: "say \\"hi\\"\\n": d'
    assert (
        invalid("f", {"b": "2", "a": "1"}, "d").message()
        == 'f: Invalid value: map[string]string{"a":"1", "b":"2"}: d'
    )
    assert invalid("f", ["x", "y"], "d").message() == 'f: Invalid value: []string{"x", "y"}: d'
    err = invalid("f", "v", "d")
    assert err.type == "FieldValueInvalid"
    assert err.body() == 'Invalid value: "v": d'
    assert str(err) == err.message()


def test_invalid_message_aggregates_like_kubernetes() -> None:
    one = [required("spec.containers")]
    assert invalid_message("Pod", "web", one) == 'Pod "web" is invalid: spec.containers: Required value'
    two = [required("a"), required("b"), required("a")]
    assert (
        invalid_message("Pod", "web", two) == 'Pod "web" is invalid: [a: Required value, b: Required value]'
    )


# --- name rules ----------------------------------------------------------------------------------


def test_dns1123_label_boundaries() -> None:
    assert is_dns1123_label("a" * 63) == []
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("-a") == [LABEL_MSG]
    assert is_dns1123_label("0abc") == []


def test_dns1123_subdomain_boundaries() -> None:
    name253 = ".".join(["a" * 63] * 3 + ["a" * 61])
    assert len(name253) == 253
    assert is_dns1123_subdomain(name253) == []
    assert is_dns1123_subdomain(name253 + "a") == ["must be no more than 253 characters"]
    assert is_dns1123_subdomain("Web") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a..b") == [SUBDOMAIN_MSG]


def test_dns1035_label_boundaries() -> None:
    assert is_dns1035_label("a" * 63) == []
    assert is_dns1035_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1035_label("1abc") == [DNS1035_MSG]


def test_qualified_name_rules() -> None:
    assert is_qualified_name("app") == []
    assert is_qualified_name("app.kubernetes.io/name") == []
    assert is_qualified_name("a" * 63) == []
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]
    assert is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert is_qualified_name("a/") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ]
    assert is_qualified_name("Bad_/a")[0].startswith("prefix part a lowercase RFC 1123 subdomain")
    assert is_qualified_name("a/b/c")[0].startswith("a qualified name must consist of")
    assert is_qualified_name("a/b/c")[0].endswith(
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    )


def test_label_value_rules() -> None:
    assert is_valid_label_value("") == []
    assert is_valid_label_value("v" * 63) == []
    assert is_valid_label_value("v" * 64) == ["must be no more than 63 characters"]
    assert is_valid_label_value("-v")[0].startswith("a valid label must be an empty string or consist of")


def test_port_name_env_and_config_key_rules() -> None:
    assert is_valid_port_name("http") == []
    assert is_valid_port_name("a" * 16) == ["must be no more than 15 characters"]
    assert is_valid_port_name("80") == ["must contain at least one letter (a-z)"]
    assert is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert is_valid_port_name("-ab") == ["must not begin or end with a hyphen"]
    assert is_valid_port_name("HTTP") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)",
    ]
    assert is_env_var_name("MY_VAR.name-1") == []
    assert is_env_var_name("1VAR")[0].startswith("a valid environment variable name must consist of")
    assert is_env_var_name("..x") == ["must not start with '..'"]
    assert is_config_map_key("key.name") == []
    assert is_config_map_key(".") == ["must not be '.'"]
    assert is_config_map_key("a/b")[0].startswith(
        "a valid config key must consist of alphanumeric characters"
    )


def test_validate_name_by_rule_and_generate_name_prefix() -> None:
    assert validate_name("dns1035-label", "php-nodePort-service") == [DNS1035_MSG]
    assert validate_name("dns1123-subdomain", "php-nodePort-service") == [SUBDOMAIN_MSG]
    assert validate_name("dns1123-label", "a.b") == ["must not contain dots"]
    # A generateName prefix may end in '-' (random characters follow), a name may not.
    assert validate_name("dns1123-subdomain", "web-", prefix=True) == []
    assert validate_name("dns1123-subdomain", "web-") == [SUBDOMAIN_MSG]
    assert validate_name("dns1035-label", "1web-", prefix=True) == [DNS1035_MSG]


# --- metadata ------------------------------------------------------------------------------------


def test_service_name_php_node_port_service_uses_dns1035_wording() -> None:
    svc = service({"ports": [{"port": 80}]}, name="php-nodePort-service")
    assert messages(svc) == [f'metadata.name: Invalid value: "php-nodePort-service": {DNS1035_MSG}']


def test_pod_name_php_node_port_service_uses_subdomain_wording() -> None:
    assert messages(pod(name="php-nodePort-service")) == [
        'metadata.name: Invalid value: "php-nodePort-service": ' + SUBDOMAIN_MSG
    ]
    assert messages(pod(name="php-nodePort-service"))[0] == (
        'metadata.name: Invalid value: "php-nodePort-service": a lowercase RFC 1123 subdomain '
        "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )


def test_name_or_generate_name_required() -> None:
    meta = ObjectMeta(namespace="default")
    assert [e.message() for e in validate_object_meta(meta, info("Pod"))] == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert validate_object_meta(ObjectMeta(namespace="default", generate_name="web-"), info("Pod")) == []
    errs = validate_object_meta(ObjectMeta(namespace="default", generate_name="Web-"), info("Pod"))
    assert [e.field for e in errs] == ["metadata.generateName"]


def test_namespace_scope_rules() -> None:
    assert [e.message() for e in validate_object_meta(ObjectMeta(name="web"), info("Pod"))] == [
        "metadata.namespace: Required value"
    ]
    errs = validate_object_meta(ObjectMeta(name="web", namespace="Bad.NS"), info("Pod"))
    assert [e.field for e in errs] == ["metadata.namespace"]
    assert [
        e.message() for e in validate_object_meta(ObjectMeta(name="n1", namespace="default"), info("Node"))
    ] == ["metadata.namespace: Forbidden: not allowed on this type"]
    ns_errs = validate_object_meta(ObjectMeta(name="my.ns"), info("Namespace"))
    assert [e.message() for e in ns_errs] == ['metadata.name: Invalid value: "my.ns": must not contain dots']


def test_labels_and_annotations() -> None:
    meta = ObjectMeta(
        name="web",
        namespace="default",
        labels={"good": "v", "bad key": "v", "ok": "-bad-value"},
        annotations={"Example.com/Mixed-Case": "fine", "no good": "x"},
    )
    errs = validate_object_meta(meta, info("Pod"))
    assert [(e.field, e.value) for e in errs] == [
        ("metadata.labels", "bad key"),
        ("metadata.labels", "-bad-value"),
        ("metadata.annotations", "no good"),
    ]


def test_annotation_total_size_limit() -> None:
    at_limit = ObjectMeta(name="web", namespace="default", annotations={"k": "v" * (262144 - 1)})
    assert validate_object_meta(at_limit, info("ConfigMap")) == []
    over = ObjectMeta(name="web", namespace="default", annotations={"k": "v" * 262144})
    assert [e.message() for e in validate_object_meta(over, info("ConfigMap"))] == [
        "metadata.annotations: Too long: must have at most 262144 bytes"
    ]


def test_owner_references() -> None:
    meta = ObjectMeta(
        name="web",
        namespace="default",
        owner_references=[
            OwnerReference(api_version="", kind="", name="", uid=""),
            OwnerReference(
                api_version="v1", kind="ReplicationController", name="a", uid="1", controller=True
            ),
            OwnerReference(
                api_version="v1", kind="ReplicationController", name="b", uid="2", controller=True
            ),
        ],
    )
    msgs = [e.message() for e in validate_object_meta(meta, info("Pod"))]
    assert msgs[:4] == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
    ]
    assert len(msgs) == 5
    assert msgs[4].endswith(
        'Only one reference can have Controller set to true. Found "true" in references for '
        "ReplicationController/a and ReplicationController/b"
    )


def test_finalizers_must_be_qualified_names() -> None:
    meta = ObjectMeta(name="web", namespace="default", finalizers=["example.com/cleanup", "not valid"])
    errs = validate_object_meta(meta, info("Pod"))
    assert [(e.field, e.value) for e in errs] == [("metadata.finalizers", "not valid")]


# --- pods ----------------------------------------------------------------------------------------


def test_valid_pod_has_no_errors() -> None:
    spec = {
        "containers": [
            container(
                ports=[{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                env=[{"name": "MODE", "value": "prod"}],
                volumeMounts=[{"name": "data", "mountPath": "/data"}],
                resources={
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": 1, "memory": "128Mi"},
                },
                livenessProbe={"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 10},
            )
        ],
        "initContainers": [{"name": "init", "image": "busybox"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "terminationGracePeriodSeconds": 30,
    }
    assert messages(pod(spec)) == []


def test_pod_requires_containers() -> None:
    assert messages(pod({"containers": []})) == ["spec.containers: Required value"]


def test_container_names_and_image() -> None:
    spec = {
        "containers": [{"name": "app"}, container(), container(name="Bad_Name")],
        "initContainers": [container(name="app")],
    }
    assert messages(pod(spec)) == [
        "spec.containers[0].image: Required value",
        'spec.containers[1].name: Duplicate value: "app"',
        f'spec.containers[2].name: Invalid value: "Bad_Name": {LABEL_MSG}',
        'spec.initContainers[0].name: Duplicate value: "app"',
    ]


def test_container_ports() -> None:
    ports = [
        {"containerPort": 0},
        {"containerPort": 70000, "name": "HTTP"},
        {"containerPort": 80, "hostPort": 65536, "protocol": "ICMP"},
        {"containerPort": 81, "name": "web"},
        {"containerPort": 82, "name": "web"},
    ]
    assert messages(pod({"containers": [container(ports=ports)]})) == [
        "spec.containers[0].ports[0].containerPort: Required value",
        'spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain only alpha-numeric characters '
        "(a-z, 0-9), and hyphens (-)",
        'spec.containers[0].ports[1].name: Invalid value: "HTTP": must contain at least one letter (a-z)',
        "spec.containers[0].ports[1].containerPort: Invalid value: 70000: "
        "must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[2].hostPort: Invalid value: 65536: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[2].protocol: Unsupported value: "ICMP": '
        'supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].ports[4].name: Duplicate value: "web"',
    ]


def test_host_port_conflicts_across_containers() -> None:
    spec = {
        "containers": [
            container(name="a", ports=[{"containerPort": 80, "hostPort": 8080}]),
            container(name="b", ports=[{"containerPort": 81, "hostPort": 8080}]),
        ]
    }
    assert messages(pod(spec)) == ['spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080"']


def test_host_network_requires_matching_host_port() -> None:
    spec = {"hostNetwork": True, "containers": [container(ports=[{"containerPort": 80, "hostPort": 8080}])]}
    assert messages(pod(spec)) == [
        "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when "
        "`hostNetwork` is true"
    ]
    ok = {"hostNetwork": True, "containers": [container(ports=[{"containerPort": 80}])]}
    assert messages(pod(ok)) == []


def test_env_var_names_and_sources() -> None:
    env = [
        {"name": "GOOD_1", "value": "x"},
        {"name": "1BAD"},
        {"name": "A", "value": "x", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        {"name": "B", "valueFrom": {}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}},
        {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]
    msgs = messages(pod({"containers": [container(env=env)]}))
    assert msgs[0].startswith(
        'spec.containers[0].env[1].name: Invalid value: "1BAD": a valid environment variable'
    )
    assert msgs[1:3] == [
        'spec.containers[0].env[2].valueFrom: Invalid value: "": '
        "may not be specified when `value` is not empty",
        'spec.containers[0].env[3].valueFrom: Invalid value: "": must specify one of: `fieldRef`, '
        "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
    ]
    assert msgs[3].startswith(
        'spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.bogus"'
    )
    assert len(msgs) == 4


def test_volumes_and_mounts() -> None:
    spec = {
        "containers": [
            container(
                volumeMounts=[
                    {"name": "data", "mountPath": "/data"},
                    {"name": "missing", "mountPath": "/data"},
                ]
            )
        ],
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "data", "emptyDir": {}},
            {"name": "Bad", "emptyDir": {}, "hostPath": {"path": "/tmp"}},
        ],
    }
    assert messages(pod(spec)) == [
        'spec.volumes[1].name: Duplicate value: "data"',
        "spec.volumes[2].emptyDir: Forbidden: may not specify more than 1 volume type",
        f'spec.volumes[2].name: Invalid value: "Bad": {LABEL_MSG}',
        'spec.containers[0].volumeMounts[1].name: Not found: "missing"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique',
    ]


def test_restart_and_dns_policy() -> None:
    spec = {"containers": [container()], "restartPolicy": "Sometimes", "dnsPolicy": "Maybe"}
    assert messages(pod(spec)) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "Never", "OnFailure"',
        'spec.dnsPolicy: Unsupported value: "Maybe": supported values: "ClusterFirst", '
        '"ClusterFirstWithHostNet", "Default", "None"',
    ]
    for policy in ("Always", "OnFailure", "Never"):
        assert messages(pod({"containers": [container()], "restartPolicy": policy})) == []


def test_resource_quantities() -> None:
    resources = {
        "requests": {"cpu": "2", "memory": "lots"},
        "limits": {"cpu": "1", "memory": "-1Gi"},
    }
    assert messages(pod({"containers": [container(resources=resources)]})) == [
        'spec.containers[0].resources.limits[memory]: Invalid value: "-1Gi": '
        "must be greater than or equal to 0",
        'spec.containers[0].resources.requests[memory]: Invalid value: "lots": '
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.requests: Invalid value: "2": '
        "must be less than or equal to cpu limit of 1",
    ]


def test_requests_equal_to_limits_are_fine() -> None:
    resources = {"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1024Mi"}}
    assert messages(pod({"containers": [container(resources=resources)]})) == []


def test_grace_period_and_probes() -> None:
    spec = {
        "terminationGracePeriodSeconds": -1,
        "containers": [
            container(
                livenessProbe={"exec": {"command": ["true"]}, "periodSeconds": -5, "successThreshold": 2},
                readinessProbe={"tcpSocket": {"port": 0}, "httpGet": {"port": 80}},
                startupProbe={"initialDelaySeconds": 1},
            )
        ],
    }
    assert messages(pod(spec)) == [
        "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -5: "
        "must be greater than or equal to 0",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        # httpGet comes first in Kubernetes' order, so the tcpSocket is the extra handler.
        "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        "spec.containers[0].startupProbe: Required value: must specify a handler type",
        "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
    ]


def test_regular_containers_may_not_set_restart_policy() -> None:
    spec = {
        "containers": [container(restartPolicy="Always")],
        "initContainers": [container(name="side", restartPolicy="Never")],
    }
    assert messages(pod(spec)) == [
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
        'spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"',
    ]


def test_tolerations() -> None:
    spec = {
        "containers": [container()],
        "tolerations": [
            {"key": "k", "operator": "Exists", "effect": "NoSchedule"},
            {"operator": "Equal", "value": "v"},
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "effect": "Sometimes"},
            {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"},
        ],
    }
    msgs = messages(pod(spec))
    assert msgs[0] == (
        'spec.tolerations[1].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, '
        'which means "match all values and all keys"'
    )
    assert msgs[1].startswith("spec.tolerations[2].operator: Invalid value: ")
    assert msgs[1].endswith("value must be empty when `operator` is 'Exists'")
    assert msgs[2] == (
        'spec.tolerations[3].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"'
    )
    assert msgs[3] == (
        "spec.tolerations[4].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
        "`tolerationSeconds` is set"
    )
    assert len(msgs) == 4


# --- replication controllers -----------------------------------------------------------------------


def test_valid_rc() -> None:
    assert messages(rc({"replicas": 2, "selector": {"app": "web"}, "template": TEMPLATE})) == []


def test_rc_selector_must_match_template_labels() -> None:
    template = {**TEMPLATE, "metadata": {"labels": {"app": "api"}}}
    assert messages(rc({"selector": {"app": "web"}, "template": template})) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: '
        "`selector` does not match template `labels`"
    ]


def test_rc_selector_and_template_required() -> None:
    assert messages(rc({"template": TEMPLATE})) == ["spec.selector: Required value"]
    assert messages(rc({"selector": {}, "template": TEMPLATE})) == ["spec.selector: Required value"]
    assert messages(rc({"selector": {"app": "web"}})) == ["spec.template: Required value"]


def test_rc_replicas_and_template_spec_paths() -> None:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "app"}]},
    }
    assert messages(rc({"replicas": -1, "selector": {"app": "web"}, "template": template})) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.template.spec.containers[0].image: Required value",
        'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"',
    ]


# --- services ------------------------------------------------------------------------------------


def test_valid_services() -> None:
    assert messages(service({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]})) == []
    node_port = {
        "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
    }
    assert messages(service(node_port)) == []
    assert messages(service({"type": "ExternalName", "externalName": "example.com."})) == []
    assert messages(service({"clusterIP": "None", "selector": {"app": "web"}})) == []


def test_node_port_forbidden_on_cluster_ip() -> None:
    assert messages(service({"ports": [{"port": 80, "nodePort": 30080}]})) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    ]


def test_service_ports() -> None:
    spec = {
        "type": "NodePort",
        "ports": [
            {"port": 0, "protocol": "ICMP", "name": "a"},
            {"port": 80, "name": "a", "targetPort": 70000},
            {"port": 81, "targetPort": "--bad"},
        ],
    }
    assert messages(service(spec)) == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'spec.ports[1].name: Duplicate value: "a"',
        "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.ports[2].name: Required value",
        'spec.ports[2].targetPort: Invalid value: "--bad": must not contain consecutive hyphens',
        'spec.ports[2].targetPort: Invalid value: "--bad": must not begin or end with a hyphen',
    ]


def test_service_ports_required_and_type() -> None:
    assert messages(service({})) == ["spec.ports: Required value"]
    assert messages(service({"type": "Magic", "ports": [{"port": 80}]})) == [
        'spec.type: Unsupported value: "Magic": '
        'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'
    ]


def test_service_cluster_ip_external_name_and_affinity() -> None:
    assert messages(service({"clusterIP": "10.254.0.300", "ports": [{"port": 80}]})) == [
        'spec.clusterIP: Invalid value: "10.254.0.300": must be a valid IPv4 address'
    ]
    assert messages(service({"type": "ExternalName"})) == ["spec.externalName: Required value"]
    assert messages(service({"type": "ExternalName", "externalName": "Bad_Host"})) == [
        f'spec.externalName: Invalid value: "Bad_Host": {SUBDOMAIN_MSG}'
    ]
    assert messages(service({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})) == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'
    ]
    assert messages(service({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]})) == [
        "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"
    ]


def test_service_selector_labels_are_validated() -> None:
    msgs = messages(service({"selector": {"bad key": "x"}, "ports": [{"port": 80}]}))
    assert len(msgs) == 1
    assert msgs[0].startswith('spec.selector: Invalid value: "bad key": name part must consist of')


# --- other kinds ---------------------------------------------------------------------------------


def test_endpoints() -> None:
    ep = build(
        "Endpoints",
        {
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.0.1"}, {"ip": "not-an-ip"}],
                    "ports": [{"port": 0, "protocol": "ICMP"}],
                },
                {"ports": [{"port": 80}]},
            ],
        },
    )
    assert isinstance(ep, Endpoints)
    assert messages(ep) == [
        'subsets[0].addresses[1].ip: Invalid value: "not-an-ip": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'subsets[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
    ]


def test_node_taints() -> None:
    node = build(
        "Node",
        {
            "metadata": {"name": "n1"},
            "spec": {
                "taints": [{"key": "dedicated", "effect": "NoSchedule"}, {"key": "x", "effect": "Never"}]
            },
        },
    )
    assert isinstance(node, Node)
    assert messages(node) == [
        'spec.taints[1].effect: Unsupported value: "Never": '
        'supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"'
    ]


def test_namespace_is_meta_only() -> None:
    ns = build("Namespace", {"metadata": {"name": "team-a"}})
    assert isinstance(ns, Namespace)
    assert messages(ns) == []


def test_config_map_keys_and_size() -> None:
    cm = build(
        "ConfigMap",
        {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"ok.key": "v", "a/b": "v", "..": "v"}},
    )
    assert isinstance(cm, ConfigMap)
    msgs = messages(cm)
    assert msgs[0].startswith(
        'data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric'
    )
    assert msgs[1:] == ["data[..]: Invalid value: \"..\": must not be '..'"]
    big = build(
        "ConfigMap",
        {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "x" * (1024 * 1024 + 1)}},
    )
    assert messages(big) == ["[]: Too long: must have at most 1048576 bytes"]


def test_secret_base64_and_size() -> None:
    good = base64.b64encode(b"hunter2").decode()
    secret = build(
        "Secret",
        {
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"password": good, "broken": "not base64!"},
        },
    )
    assert isinstance(secret, Secret)
    assert messages(secret) == [
        'data[broken]: Invalid value: "not base64!": illegal base64 data at input byte 3'
    ]
    huge = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    big = build("Secret", {"metadata": {"name": "s", "namespace": "default"}, "data": {"blob": huge}})
    assert messages(big) == ["data: Too long: must have at most 1048576 bytes"]
    tls = build(
        "Secret", {"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {}}
    )
    assert messages(tls) == ["data[tls.crt]: Required value", "data[tls.key]: Required value"]


def test_event_needs_involved_object() -> None:
    event = build("Event", {"metadata": {"name": "e1", "namespace": "default"}, "involvedObject": {}})
    assert isinstance(event, Event)
    assert messages(event) == ["involvedObject.name: Required value", "involvedObject.kind: Required value"]
    ok = build(
        "Event",
        {
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"},
        },
    )
    assert messages(ok) == []
    elsewhere = build(
        "Event",
        {
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"},
        },
    )
    assert messages(elsewhere) == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace'
    ]


def test_lease_duration_positive() -> None:
    lease = build(
        "Lease",
        {"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0}},
    )
    assert isinstance(lease, Lease)
    assert messages(lease) == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    ok = build(
        "Lease",
        {"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 40}},
    )
    assert messages(ok) == []


# --- updates -------------------------------------------------------------------------------------


def stored_pod(**spec_extra: Any) -> Pod:
    return pod(
        {"containers": [container()], **spec_extra}, uid="u1", creationTimestamp="2024-01-01T00:00:00Z"
    )


def test_metadata_immutable_fields() -> None:
    old = stored_pod()
    renamed = msgspec.structs.replace(old, metadata=msgspec.structs.replace(old.metadata, name="other"))
    assert update_messages(renamed, old) == ['metadata.name: Invalid value: "other": field is immutable']
    new_uid = msgspec.structs.replace(old, metadata=msgspec.structs.replace(old.metadata, uid="u2"))
    assert update_messages(new_uid, old) == ['metadata.uid: Invalid value: "u2": field is immutable']
    moved = msgspec.structs.replace(old, metadata=msgspec.structs.replace(old.metadata, namespace="prod"))
    assert update_messages(moved, old) == ['metadata.namespace: Invalid value: "prod": field is immutable']
    # Leaving uid/creationTimestamp out is not a change: the server keeps the stored ones.
    bare = msgspec.structs.replace(old, metadata=ObjectMeta(name="web", namespace="default"))
    assert update_messages(bare, old) == []


def test_pod_image_update_allowed() -> None:
    old = stored_pod()
    new = msgspec.structs.replace(
        old,
        spec=msgspec.structs.replace(
            old.spec, containers=[msgspec.convert(container(image="nginx:2"), type(old.spec.containers[0]))]
        ),
    )
    assert update_messages(new, old) == []


def test_pod_spec_other_changes_forbidden() -> None:
    old = stored_pod()
    new = msgspec.structs.replace(old, spec=msgspec.structs.replace(old.spec, restart_policy="Never"))
    msgs = update_messages(new, old)
    assert len(msgs) == 1
    assert msgs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds`"
    )
    assert "spec.restartPolicy" in msgs[0]


def test_pod_update_mutable_fields() -> None:
    old = stored_pod(activeDeadlineSeconds=100, tolerations=[{"key": "a", "operator": "Exists"}])
    new = msgspec.convert(
        {
            **msgspec.to_builtins(old),
            "spec": {
                **msgspec.to_builtins(old.spec),
                "activeDeadlineSeconds": 50,
                "terminationGracePeriodSeconds": 5,
                "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
            },
        },
        Pod,
    )
    assert update_messages(new, old) == []


def test_pod_update_cannot_drop_tolerations_or_raise_deadline() -> None:
    old = stored_pod(activeDeadlineSeconds=100, tolerations=[{"key": "a", "operator": "Exists"}])
    raised = msgspec.structs.replace(old, spec=msgspec.structs.replace(old.spec, active_deadline_seconds=200))
    assert update_messages(raised, old) == [
        "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
    ]
    dropped = msgspec.structs.replace(old, spec=msgspec.structs.replace(old.spec, tolerations=None))
    assert update_messages(dropped, old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    ]


def test_pod_update_cannot_add_containers() -> None:
    old = stored_pod()
    two = msgspec.structs.replace(
        old, spec=msgspec.structs.replace(old.spec, containers=[*old.spec.containers, *old.spec.containers])
    )
    msgs = update_messages(two, old)
    assert "spec.containers: Forbidden: pod updates may not add or remove containers" in msgs


def test_service_cluster_ip_is_immutable() -> None:
    old = service({"clusterIP": "10.254.0.5", "ports": [{"port": 80}]})
    new = service({"clusterIP": "10.254.0.6", "ports": [{"port": 80}]})
    assert update_messages(new, old) == ['spec.clusterIP: Invalid value: "10.254.0.6": field is immutable']
    assert update_messages(old, old) == []
    unset = service({"ports": [{"port": 80}]})
    assert update_messages(new, unset) == []
    external = service({"type": "ExternalName", "externalName": "example.com"})
    assert update_messages(external, old) == []


def test_immutable_config_map_and_secret() -> None:
    meta = {"name": "cfg", "namespace": "default"}
    old = build("ConfigMap", {"metadata": meta, "data": {"a": "1"}, "immutable": True})
    changed = build("ConfigMap", {"metadata": meta, "data": {"a": "2"}, "immutable": True})
    assert update_messages(changed, old) == ["data: Forbidden: field is immutable when `immutable` is set"]
    unlocked = build("ConfigMap", {"metadata": meta, "data": {"a": "1"}, "immutable": False})
    assert update_messages(unlocked, old) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"
    ]
    mutable = build("ConfigMap", {"metadata": meta, "data": {"a": "1"}})
    assert update_messages(changed, mutable) == []

    value = base64.b64encode(b"x").decode()
    s_old = build("Secret", {"metadata": meta, "data": {"a": value}, "immutable": True})
    s_new = build(
        "Secret", {"metadata": meta, "data": {"a": base64.b64encode(b"y").decode()}, "immutable": True}
    )
    assert update_messages(s_new, s_old) == ["data: Forbidden: field is immutable when `immutable` is set"]
    typed_old = build("Secret", {"metadata": meta, "type": "Opaque"})
    typed_new = build("Secret", {"metadata": meta, "type": "example.com/other"})
    assert update_messages(typed_new, typed_old) == [
        'type: Invalid value: "example.com/other": field is immutable'
    ]


# --- unknown fields ------------------------------------------------------------------------------


def test_unknown_field_in_service_seed_typo() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "frontend"},
        "spec": {"clusterIp": "10.254.0.5", "ports": [{"port": 80, "targetPort": 8080}]},
    }
    assert find_unknown_fields(raw, Service) == ["spec.clusterIp"]


def test_unknown_fields_nested_lists() -> None:
    raw = {
        "metadata": {"name": "web", "labelz": {}},
        "spec": {
            "containers": [
                {"name": "a", "image": "nginx"},
                {"name": "b", "imagee": "nginx", "ports": [{"containerPort": 80, "hostport": 80}]},
            ],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimt": "1Gi"}}],
        },
    }
    assert find_unknown_fields(raw, Pod) == [
        "metadata.labelz",
        "spec.containers[1].imagee",
        "spec.containers[1].ports[0].hostport",
        "spec.volumes[0].emptyDir.sizeLimt",
    ]


def test_clean_manifests_have_no_unknown_fields() -> None:
    rc_raw = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web", "labels": {"any-key": "v"}, "annotations": {"x/y": "z"}},
        "spec": {
            "replicas": 2,
            "selector": {"app": "web"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                            "ports": [{"containerPort": 80, "hostIP": "0.0.0.0"}],
                            "livenessProbe": {"httpGet": {"port": 80, "path": "/"}},
                        }
                    ],
                    "nodeSelector": {"disk": "ssd"},
                    "affinity": {"nodeAffinity": {"anything": ["goes"]}},
                },
            },
        },
        "status": {"replicas": 0},
    }
    assert find_unknown_fields(rc_raw, ReplicationController) == []
    svc_raw = {
        "spec": {
            "clusterIP": "10.0.0.1",
            "ports": [{"port": 80}],
            "sessionAffinityConfig": {"clientIP": {"x": 1}},
        }
    }
    assert find_unknown_fields(svc_raw, Service) == []
    cm_raw = {"metadata": {"name": "c"}, "data": {"k": "v"}, "immutable": True}
    assert find_unknown_fields(cm_raw, ConfigMap) == []
    assert (
        find_unknown_fields(
            {"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}, Node
        )
        == []
    )


def test_unknown_fields_through_unset_unions_and_renamed_fields() -> None:
    # Event.source is ``EventSource | UnsetType``; DaemonEndpoint.port is spelled "Port" on the wire.
    assert find_unknown_fields({"source": {"component": "x", "hots": "y"}}, Event) == ["source.hots"]
    node_raw = {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 10250, "port": 1}}}}
    assert find_unknown_fields(node_raw, Node) == ["status.daemonEndpoints.kubeletEndpoint.port"]
    # Python attribute names are not wire names.
    assert find_unknown_fields({"spec": {"node_name": "n1"}}, Pod) == ["spec.node_name"]


def test_unknown_fields_is_repeatable() -> None:
    raw = {"spec": {"clusterIp": "x"}}
    assert find_unknown_fields(raw, Service) == find_unknown_fields(raw, Service) == ["spec.clusterIp"]


def test_field_error_is_a_frozen_value() -> None:
    err = FieldError("FieldValueRequired", "spec.ports")
    assert err == required("spec.ports")
    with pytest.raises(AttributeError):
        err.field = "x"  # type: ignore[misc]
