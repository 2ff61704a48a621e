"""Label and field selectors: grammar, matching, canonical strings and Kubernetes' error messages."""

from __future__ import annotations

import pytest

from controlplane.api.core import (
    ContainerStatus,
    Event,
    EventSource,
    Namespace,
    NamespaceStatus,
    Node,
    NodeSpec,
    ObjectReference,
    Pod,
    PodSpec,
    PodStatus,
    ReplicationController,
    ReplicationControllerStatus,
    Secret,
)
from controlplane.api.meta import LabelSelector, LabelSelectorRequirement, ObjectMeta
from controlplane.selectors import (
    FieldSelector,
    Requirement,
    Selector,
    SelectorError,
    check_field_selector,
    from_label_selector,
    from_set,
    new_requirement,
    object_fields,
    parse_field_selector,
    parse_label_selector,
    supported_fields,
)

LABELS = {"app": "web", "tier": "frontend", "replicas": "3"}

# --- parsing and matching every operator ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", LABELS, True),
        ("app=db", LABELS, False),
        ("app==web", LABELS, True),
        ("app!=db", LABELS, True),
        ("app!=web", LABELS, False),
        ("missing!=x", LABELS, True),
        ("app in (db,web)", LABELS, True),
        ("app in (db)", LABELS, False),
        ("missing in (x)", LABELS, False),
        ("app notin (db)", LABELS, True),
        ("app notin (web,db)", LABELS, False),
        ("missing notin (x)", LABELS, True),
        ("app", LABELS, True),
        ("missing", LABELS, False),
        ("!missing", LABELS, True),
        ("!app", LABELS, False),
        ("replicas>2", LABELS, True),
        ("replicas>3", LABELS, False),
        ("replicas<4", LABELS, True),
        ("app>1", LABELS, False),
        ("app=web,tier=frontend", LABELS, True),
        ("app=web,tier=backend", LABELS, False),
        ("app=", {"app": ""}, True),
        ("app=", LABELS, False),
        ("", LABELS, True),
        ("", None, True),
        ("app", None, False),
        ("!app", None, True),
    ],
)
def test_label_selector_matching(text: str, labels: dict[str, str] | None, expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_whitespace_is_tolerated_everywhere() -> None:
    spaced = parse_label_selector("  app =  web ,  tier in ( frontend , backend ) ,  ! canary ")
    tight = parse_label_selector("app=web,tier in (frontend,backend),!canary")
    assert spaced == tight
    assert hash(spaced) == hash(tight)
    assert str(spaced) == "app=web,!canary,tier in (backend,frontend)"


def test_canonical_string_sorts_by_key_and_values() -> None:
    sel = parse_label_selector("z notin (b,a),a,!m,b!=c,c==d,x>1,y<2")
    assert str(sel) == "a,b!=c,c==d,!m,x>1,y<2,z notin (a,b)"
    # The canonical form parses back to the same selector.
    assert parse_label_selector(str(sel)) == sel


def test_requirements_are_exposed_in_key_order() -> None:
    sel = parse_label_selector("b=1,a in (x)")
    assert sel.requirements == (Requirement("a", "in", ("x",)), Requirement("b", "=", ("1",)))


def test_keywords_are_identifiers_in_value_position() -> None:
    sel = parse_label_selector("in in (notin,in)")
    assert sel.matches({"in": "notin"})
    assert not sel.matches({"in": "x"})


def test_empty_set_values_mean_the_empty_string() -> None:
    assert parse_label_selector("a in (,b)").matches({"a": ""})
    assert parse_label_selector("a in ()").matches({"a": ""})
    assert not parse_label_selector("a in ()").matches({"a": "b"})


def test_prefixed_keys() -> None:
    sel = parse_label_selector("app.kubernetes.io/name=web")
    assert sel.matches({"app.kubernetes.io/name": "web"})


def test_empty_selector_is_empty() -> None:
    assert parse_label_selector("").empty
    assert parse_label_selector("   ").empty
    assert not parse_label_selector("a").empty
    assert str(parse_label_selector("")) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        (",", "found ',', expected: !, identifier, or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("! =a", "unable to parse requirement: found '=', expected: identifier"),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a>x", "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_label_selector_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector(text)
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_invalid_label_key_message() -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector("component+kube-apiserver")
    assert str(err.value) == (
        'unable to parse requirement: invalid label key "component+kube-apiserver": '
        "name part must consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character "
        "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_invalid_label_value_message() -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector("app=-web")
    assert str(err.value).startswith(
        'unable to parse requirement: invalid label value: "-web": at key: "app": '
    )
    assert "a valid label must be an empty string" in str(err.value)


@pytest.mark.parametrize(
    "text", ["a/b/c=x", "/a=x", "a/=x", "Bad_Prefix/a=x", "x" * 64 + "=y", "a=" + "v" * 64]
)
def test_label_rules_apply_to_keys_and_values(text: str) -> None:
    with pytest.raises(SelectorError, match=r"^unable to parse requirement: invalid label"):
        parse_label_selector(text)


def test_label_key_at_length_limit_is_accepted() -> None:
    assert parse_label_selector("k" * 63 + "=" + "v" * 63).matches({"k" * 63: "v" * 63})


# --- building selectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "op", "values", "message"),
    [
        ("a", "in", [], "for 'in', 'notin' operators, values set can't be empty"),
        ("a", "notin", [], "for 'in', 'notin' operators, values set can't be empty"),
        ("a", "=", ["x", "y"], "exact-match compatibility requires one single value"),
        ("a", "exists", ["x"], "values set must be empty for exists and does not exist"),
        ("a", "!", ["x"], "values set must be empty for exists and does not exist"),
        ("a", "gt", ["1", "2"], "for 'Gt', 'Lt' operators, exactly one value is required"),
        ("a", "~", ["x"], "operator '~' is not recognized"),
    ],
)
def test_new_requirement_errors(key: str, op: str, values: list[str], message: str) -> None:
    with pytest.raises(SelectorError) as err:
        new_requirement(key, op, values)
    assert str(err.value) == message


def test_new_requirement_dedupes_and_sorts_values() -> None:
    assert new_requirement("a", "in", ["c", "a", "c"]).values == ("a", "c")


def test_from_set_matches_all_pairs() -> None:
    sel = from_set({"app": "web", "tier": "frontend"})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    assert str(sel) == "app=web,tier=frontend"
    assert sel.requires_exact_match("app") == "web"
    assert sel.requires_exact_match("other") is None


@pytest.mark.parametrize("labels", [None, {}])
def test_from_set_of_nothing_matches_everything(labels: dict[str, str] | None) -> None:
    sel = from_set(labels)
    assert sel.empty
    assert sel.matches({"any": "thing"})
    assert sel.matches(None)


def test_from_label_selector_all_operators() -> None:
    sel = from_label_selector(
        LabelSelector(
            match_labels={"app": "web"},
            match_expressions=[
                LabelSelectorRequirement(key="tier", operator="In", values=["frontend", "edge"]),
                LabelSelectorRequirement(key="env", operator="NotIn", values=["prod"]),
                LabelSelectorRequirement(key="replicas", operator="Exists"),
                LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
            ],
        )
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "yes"})
    assert not sel.matches({**LABELS, "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "frontend"})
    assert str(sel) == "app=web,!canary,env notin (prod),replicas,tier in (edge,frontend)"


def test_from_label_selector_none_matches_nothing_and_empty_matches_everything() -> None:
    nothing = from_label_selector(None)
    assert not nothing.matches(LABELS)
    assert not nothing.matches({})
    assert not nothing.empty
    everything = from_label_selector(LabelSelector())
    assert everything.empty
    assert everything.matches(LABELS)
    assert nothing != everything


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            LabelSelectorRequirement(key="a", operator="In"),
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            LabelSelectorRequirement(key="a", operator="NotIn", values=[]),
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            LabelSelectorRequirement(key="a", operator="Exists", values=["x"]),
            "values set must be empty for exists and does not exist",
        ),
        (
            LabelSelectorRequirement(key="a", operator="DoesNotExist", values=["x"]),
            "values set must be empty for exists and does not exist",
        ),
        (
            LabelSelectorRequirement(key="a", operator="Gt", values=["1"]),
            '"Gt" is not a valid label selector operator',
        ),
    ],
)
def test_from_label_selector_errors(expr: LabelSelectorRequirement, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        from_label_selector(LabelSelector(match_expressions=[expr]))
    assert str(err.value) == message


def test_from_label_selector_validates_match_labels() -> None:
    with pytest.raises(SelectorError, match=r'^invalid label key "bad key"'):
        from_label_selector(LabelSelector(match_labels={"bad key": "x"}))


def test_to_label_selector_round_trip() -> None:
    sel = parse_label_selector("app=web,tier in (a,b),env!=prod,x,!y")
    ls = sel.to_label_selector()
    assert ls.match_labels == {"app": "web"}
    assert ls.match_expressions == [
        LabelSelectorRequirement(key="env", operator="NotIn", values=["prod"]),
        LabelSelectorRequirement(key="tier", operator="In", values=["a", "b"]),
        LabelSelectorRequirement(key="x", operator="Exists"),
        LabelSelectorRequirement(key="y", operator="DoesNotExist"),
    ]
    back = from_label_selector(ls)
    for labels in (
        LABELS,
        {"app": "web", "tier": "a", "x": "1"},
        {"app": "web", "tier": "a", "x": "1", "y": ""},
    ):
        assert back.matches(labels) == sel.matches(labels)
    assert Selector().to_label_selector() == LabelSelector()


def test_to_label_selector_rejects_what_it_cannot_express() -> None:
    with pytest.raises(SelectorError, match="isn't supported in label selectors"):
        parse_label_selector("a>1").to_label_selector()
    with pytest.raises(SelectorError):
        Selector.nothing().to_label_selector()


def test_selector_is_immutable_and_add_returns_new() -> None:
    base = parse_label_selector("a=1")
    more = base.add(new_requirement("b", "exists"))
    assert str(base) == "a=1"
    assert str(more) == "a=1,b"
    with pytest.raises(AttributeError):
        base.requirements = ()  # type: ignore[misc]


# --- field selectors -----------------------------------------------------------------------------


def test_field_selector_operators() -> None:
    fields = {"metadata.name": "web", "status.phase": "Running"}
    assert parse_field_selector("metadata.name=web").matches(fields)
    assert parse_field_selector("metadata.name==web").matches(fields)
    assert not parse_field_selector("metadata.name!=web").matches(fields)
    assert parse_field_selector("status.phase!=Pending,metadata.name=web").matches(fields)
    assert not parse_field_selector("status.phase!=Running,metadata.name=web").matches(fields)
    assert parse_field_selector("").matches(fields)
    assert parse_field_selector("").empty


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.matches({"metadata.name": "a,b=c\\d"})
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    assert parse_field_selector(str(sel)) == sel


def test_field_selector_fields_and_canonical_string() -> None:
    sel = parse_field_selector("status.phase!=Failed,spec.nodeName==n1")
    assert sel.fields == frozenset({"status.phase", "spec.nodeName"})
    assert str(sel) == "spec.nodeName=n1,status.phase!=Failed"
    assert sel.requires_exact_match("spec.nodeName") == "n1"
    assert sel.requires_exact_match("status.phase") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=\q", r"invalid field selector: invalid escape sequence: \q"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_field_selector(text)
    assert str(err.value) == message


def test_unscheduled_pod_matches_empty_node_name() -> None:
    unscheduled = Pod(metadata=ObjectMeta(name="a", namespace="default"))
    scheduled = Pod(metadata=ObjectMeta(name="b", namespace="default"), spec=PodSpec(node_name="n1"))
    sel = parse_field_selector("spec.nodeName=")
    assert sel.matches(object_fields(unscheduled))
    assert not sel.matches(object_fields(scheduled))
    assert parse_field_selector("spec.nodeName=n1").matches(object_fields(scheduled))
    assert parse_field_selector("spec.nodeName!=").matches(object_fields(scheduled))


def test_pod_fields() -> None:
    pod = Pod(
        metadata=ObjectMeta(name="web", namespace="prod"),
        spec=PodSpec(
            node_name="n1",
            restart_policy="Always",
            scheduler_name="default-scheduler",
            service_account_name="sa",
            host_network=True,
        ),
        status=PodStatus(
            phase="Running",
            pod_ip="10.0.0.5",
            nominated_node_name="n2",
            container_statuses=[ContainerStatus(name="c")],
        ),
    )
    assert object_fields(pod) == {
        "metadata.name": "web",
        "metadata.namespace": "prod",
        "spec.nodeName": "n1",
        "spec.restartPolicy": "Always",
        "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "sa",
        "spec.hostNetwork": "true",
        "status.phase": "Running",
        "status.podIP": "10.0.0.5",
        "status.nominatedNodeName": "n2",
    }
    assert object_fields(Pod())["spec.hostNetwork"] == "false"
    assert set(object_fields(pod)) == supported_fields("Pod")


def test_event_fields() -> None:
    event = Event(
        metadata=ObjectMeta(name="e", namespace="default"),
        involved_object=ObjectReference(
            kind="Pod",
            namespace="default",
            name="web",
            uid="u1",
            api_version="v1",
            resource_version="7",
            field_path="spec.containers{c}",
        ),
        reason="Started",
        source=EventSource(component="kubelet"),
        type="Normal",
        reporting_component="kubelet",
    )
    fields = object_fields(event)
    assert fields["involvedObject.kind"] == "Pod"
    assert fields["involvedObject.uid"] == "u1"
    assert fields["involvedObject.fieldPath"] == "spec.containers{c}"
    assert fields["reason"] == "Started"
    assert fields["source"] == "kubelet"
    assert fields["type"] == "Normal"
    assert set(fields) == supported_fields("Event")
    # Without a source the reporting component stands in; unset strings read as "".
    bare = object_fields(Event(reporting_component="peapod-scheduler"))
    assert bare["source"] == "peapod-scheduler"
    assert bare["reason"] == ""
    assert bare["metadata.namespace"] == ""


def test_other_kind_fields() -> None:
    assert object_fields(Node(metadata=ObjectMeta(name="n1"), spec=NodeSpec(unschedulable=True))) == {
        "metadata.name": "n1",
        "metadata.namespace": "",
        "spec.unschedulable": "true",
    }
    assert object_fields(Node())["spec.unschedulable"] == "false"
    assert object_fields(Namespace(status=NamespaceStatus(phase="Active")))["status.phase"] == "Active"
    rc = ReplicationController(status=ReplicationControllerStatus(replicas=3))
    assert object_fields(rc)["status.replicas"] == "3"
    assert object_fields(Secret(type="Opaque"))["type"] == "Opaque"
    assert object_fields(Secret())["type"] == ""


def test_supported_fields_and_check() -> None:
    assert supported_fields("ConfigMap") == frozenset({"metadata.name", "metadata.namespace"})
    assert "spec.nodeName" in supported_fields("Pod")
    check_field_selector("Pod", parse_field_selector("spec.nodeName=n1,status.phase!=Failed"))
    check_field_selector("ConfigMap", FieldSelector())
    with pytest.raises(SelectorError) as err:
        check_field_selector("Pod", parse_field_selector("spec.nodeName=n1,spec.foo=bar"))
    assert str(err.value) == "field label not supported: spec.foo"
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.nodeName$"):
        check_field_selector("Service", parse_field_selector("spec.nodeName=n1"))
