"""What the API server checks before it proxies logs and exec: the container, the pod's state as its
status tells it (the kubelet's validateContainerLogStatus), and where the node's agent listens."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.node import AGENT_ADDRESS as AGENT_SIDE_ANNOTATION
from controlplane.api.core import Node, Pod
from controlplane.server.errors import APIError
from controlplane.server.podproxy import (
    AGENT_ADDRESS,
    agent_endpoint,
    exec_container_id,
    log_container_id,
    pick_container,
)


def pod(*names: str, init: tuple[str, ...] = (), statuses: list[dict[str, Any]] | None = None) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": n, "image": "i"} for n in names],
                "initContainers": [{"name": n, "image": "i"} for n in init] or None,
            },
            "status": {"containerStatuses": statuses},
        },
        Pod,
    )


def status(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "i", **fields}


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(APIError) as caught:
        call(*args)
    assert caught.value.code == 400 and caught.value.status.reason == "BadRequest"
    return caught.value.status.message


def test_the_container_is_named_or_the_only_one() -> None:
    assert pick_container(pod("app"), None) == "app"
    assert pick_container(pod("a", "b"), "b") == "b"
    assert pick_container(pod("a", init=("setup",)), "setup") == "setup"
    assert refusal(pick_container, pod("a", "b"), None) == (
        "a container name must be specified for pod p, choose one of: [a b]"
    )
    assert refusal(pick_container, pod("a", "b", init=("i1",)), None) == (
        "a container name must be specified for pod p, choose one of: [a b] "
        "or one of the init containers: [i1]"
    )
    assert refusal(pick_container, pod("a"), "c") == "container c is not valid for pod p"


RUNNING = {"running": {"startedAt": "2024-05-01T10:00:00Z"}}
DEAD = {"terminated": {"exitCode": 1, "containerID": "podman://old"}}


def test_which_container_logs_are_read() -> None:
    live = pod("app", statuses=[status(state=RUNNING, containerID="podman://new", lastState=DEAD)])
    assert log_container_id(live, "app", False) == "podman://new"
    assert log_container_id(live, "app", True) == "podman://old"
    # Crash-looping: waiting to restart, the last attempt is what there is to read.
    looping = pod("app", statuses=[status(state={"waiting": {"reason": "CrashLoopBackOff"}}, lastState=DEAD)])
    assert log_container_id(looping, "app", False) == "podman://old"
    done = pod("app", statuses=[status(state={"terminated": {"exitCode": 0, "containerID": "podman://x"}})])
    assert log_container_id(done, "app", False) == "podman://x"


@pytest.mark.parametrize(
    ("statuses", "previous", "message"),
    [
        (None, False, 'container "app" in pod "p" is waiting to start: ContainerCreating'),
        ([status(state={"waiting": {"reason": "ContainerCreating"}})], False,
         'container "app" in pod "p" is waiting to start: ContainerCreating'),
        ([status(state={"waiting": {"reason": "ErrImagePull"}})], False,
         'container "app" in pod "p" is waiting to start: image can\'t be pulled'),
        ([status(state={"waiting": {"reason": "ImagePullBackOff"}})], False,
         'container "app" in pod "p" is waiting to start: trying and failing to pull image'),
        ([status(state=RUNNING, containerID="podman://a")], True,
         'previous terminated container "app" in pod "p" not found'),
        ([status(state={"terminated": {"exitCode": 1}})], False, 'container "app" in pod "p" is terminated'),
        ([status()], False, 'container "app" in pod "p" is waiting to start - no logs yet'),
    ],
)  # fmt: skip
def test_logs_refused_with_the_kubelets_words(
    statuses: list[dict[str, Any]] | None, previous: bool, message: str
) -> None:
    assert refusal(log_container_id, pod("app", statuses=statuses), "app", previous) == message


def test_exec_needs_a_running_container() -> None:
    live = pod("app", statuses=[status(state=RUNNING, containerID="podman://new")])
    assert exec_container_id(live, "app") == "podman://new"
    waiting = pod("app", statuses=[status(state={"waiting": {"reason": "CrashLoopBackOff"}}, lastState=DEAD)])
    assert refusal(exec_container_id, waiting, "app") == (
        'container "app" in pod "p" is waiting to start: CrashLoopBackOff'
    )
    done = pod("app", statuses=[status(state=DEAD)])
    assert refusal(exec_container_id, done, "app") == 'container "app" in pod "p" is terminated'
    assert refusal(exec_container_id, pod("app"), "app") == (
        'container "app" in pod "p" is waiting to start: ContainerCreating'
    )


def node(annotation: str | None, port: int = 0, addresses: list[tuple[str, str]] | None = None) -> Node:
    return msgspec.convert(
        {
            "metadata": {"name": "n1", "annotations": {AGENT_ADDRESS: annotation} if annotation else None},
            "status": {
                "addresses": [{"type": t, "address": a} for t, a in addresses or []],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            },
        },
        Node,
    )


def test_where_the_agent_listens() -> None:
    assert AGENT_ADDRESS == AGENT_SIDE_ANNOTATION
    internal = [("Hostname", "n1"), ("InternalIP", "192.168.77.11")]
    assert agent_endpoint(node("127.0.0.1:10250")) == "127.0.0.1:10250"
    assert agent_endpoint(node("0.0.0.0:10250", addresses=internal)) == "192.168.77.11:10250"
    assert agent_endpoint(node("[::]:10250", addresses=[("InternalIP", "fd00::5")])) == "[fd00::5]:10250"
    assert agent_endpoint(node("[::1]:10250")) == "[::1]:10250"
    assert agent_endpoint(node(None, port=10250, addresses=internal)) == "192.168.77.11:10250"
    assert agent_endpoint(node(None)) is None
    assert agent_endpoint(node("0.0.0.0:10250")) is None
