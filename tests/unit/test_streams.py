"""The pure parts of logs and exec: query parameters, the channel protocol, exit statuses, Podman's
multiplexed frames, and how the agent picks the container."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import msgspec
import pytest

from agent.runtime.base import ContainerInfo, SandboxInfo
from agent.runtime.podman_streams import FrameDemuxer, utc_timestamp_prefix
from agent.streams import StreamError, find_container, limit_bytes
from controlplane.client.streams import (
    CLOSE,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    V4,
    V5,
    ExecFailure,
    ExecOptions,
    LogOptions,
    QueryError,
    choose_protocol,
    close_frame,
    exit_code_of,
    exit_status,
    failure_status,
    format_rfc3339,
    frame,
    parse_duration,
    parse_frame,
    parse_resize,
    resize_frame,
    secret_token,
    since_seconds_for,
)

# --- log options -------------------------------------------------------------------------------------


def test_log_options_parse_like_kubernetes_query_values() -> None:
    opts = LogOptions.from_query(
        {
            "container": "c",
            "follow": "",
            "previous": "0",
            "timestamps": "True",
            "tailLines": "10",
            "limitBytes": "5",
        }
    )
    assert opts == LogOptions(
        container="c", follow=True, previous=False, timestamps=True, tail_lines=10, limit_bytes=5
    )
    assert LogOptions.from_query({}) == LogOptions()
    assert LogOptions.from_query({"follow": "false"}).follow is False


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"tailLines": "ten"}, 'invalid value "ten" for tailLines: must be an integer'),
        ({"limitBytes": "1.5"}, 'invalid value "1.5" for limitBytes: must be an integer'),
        ({"sinceTime": "yesterday"}, 'invalid value "yesterday" for sinceTime: must be an RFC 3339 time'),
        ({"sinceTime": "2024-05-01"}, 'invalid value "2024-05-01" for sinceTime: must be an RFC 3339 time'),
    ],
)
def test_log_options_refuse_values_of_the_wrong_type(query: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError) as caught:
        LogOptions.from_query(query)
    assert str(caught.value) == message


def test_log_options_validate_with_kubernetes_messages() -> None:
    assert LogOptions(tail_lines=0, limit_bytes=1, since_seconds=1).validate() == []
    messages = [e.message() for e in LogOptions(tail_lines=-1, limit_bytes=0, since_seconds=0).validate()]
    assert messages == [
        "tailLines: Invalid value: -1: must be greater than or equal to 0",
        "limitBytes: Invalid value: 0: must be greater than 0",
        "sinceSeconds: Invalid value: 0: must be greater than 0",
    ]
    both = LogOptions(since_seconds=5, since_time="2024-05-01T10:00:00Z").validate()
    assert [e.message() for e in both] == [
        ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
    ]


def test_log_options_round_trip_and_since() -> None:
    opts = LogOptions(
        container="c", follow=True, timestamps=True, tail_lines=0, since_time="2024-05-01T10:00:00+02:00"
    )
    assert opts.to_query() == {
        "container": "c",
        "follow": "true",
        "timestamps": "true",
        "tailLines": "0",
        "sinceTime": "2024-05-01T10:00:00+02:00",
    }
    assert LogOptions.from_query(opts.to_query()) == opts
    assert opts.since() == dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert LogOptions(since_seconds=90).since(now) == dt.datetime(2024, 5, 1, 11, 58, 30, tzinfo=dt.UTC)
    assert LogOptions().since(now) is None


def test_times_are_written_in_utc_with_trimmed_fractions() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert format_rfc3339(dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=plus_two)) == "2024-05-01T08:00:00Z"
    assert (
        format_rfc3339(dt.datetime(2024, 5, 1, 8, 0, 0, 120000, tzinfo=dt.UTC)) == "2024-05-01T08:00:00.12Z"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("10ms", 0.01), ("2h0m3s", 7203), ("0", 0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "m", "1h-3m", "."])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_since_seconds_round_up() -> None:
    assert since_seconds_for("1500ms") == 2
    assert since_seconds_for("5m") == 300
    with pytest.raises(ValueError, match="greater than 0"):
        since_seconds_for("0s")


# --- exec options ------------------------------------------------------------------------------------


def test_exec_options_from_a_query_with_repeated_commands() -> None:
    pairs = [
        ("command", "sh"),
        ("command", "-c"),
        ("command", "echo hi"),
        ("stdin", "true"),
        ("stdout", "true"),
    ]
    opts = ExecOptions.from_query([*pairs, ("stderr", "true"), ("container", "app")])
    assert opts == ExecOptions(
        ["sh", "-c", "echo hi"], "app", stdin=True, stdout=True, stderr=True, tty=False
    )
    assert ExecOptions.from_query(opts.to_query()) == opts
    # A terminal has one output stream: stderr is dropped, as the kubelet does.
    tty = ExecOptions.from_query([("command", "sh"), ("stdin", "1"), ("stderr", "1"), ("tty", "1")])
    assert (tty.stdin, tty.stdout, tty.stderr, tty.tty) == (True, False, False, True)


def test_exec_options_refuse_requests_that_cannot_run() -> None:
    with pytest.raises(QueryError, match="at least one command"):
        ExecOptions.from_query([("stdout", "true")])
    with pytest.raises(QueryError, match="at least 1 of stdin, stdout, stderr"):
        ExecOptions.from_query([("command", "true")])


# --- the channel protocol ----------------------------------------------------------------------------


def test_channel_frames() -> None:
    assert (STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE) == (0, 1, 2, 3, 4, 255)
    assert frame(STDOUT, b"hi") == b"\x01hi" and frame(ERROR) == b"\x03"
    assert parse_frame(b"\x02oops") == (STDERR, b"oops")
    assert parse_frame(bytearray(b"\x00")) == (STDIN, b"")
    with pytest.raises(ValueError):
        parse_frame(b"")
    assert close_frame(STDIN) == b"\xff\x00"
    message = resize_frame(120, 40)
    assert message[0] == RESIZE and msgspec.json.decode(message[1:]) == {"Width": 120, "Height": 40}
    assert parse_resize(message[1:]) == (120, 40)
    for bad in (b"not json", b'{"Width": -1, "Height": 3}', b'{"Width": "wide"}'):
        with pytest.raises(ValueError):
            parse_resize(bad)


def test_the_server_prefers_v5() -> None:
    assert choose_protocol(["v4.channel.k8s.io", "v5.channel.k8s.io", "channel.k8s.io"]) == V5
    assert choose_protocol([" v4.channel.k8s.io"]) == V4
    assert choose_protocol(["channel.k8s.io", "base64.channel.k8s.io"]) is None


def test_exit_statuses_as_the_error_channel_carries_them() -> None:
    ok = msgspec.json.decode(msgspec.json.encode(exit_status(0)))
    assert ok["status"] == "Success"
    failed = msgspec.json.decode(msgspec.json.encode(exit_status(3, ["sh", "-c", "exit 3"])))
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert failed["message"].endswith("error executing command [sh -c 'exit 3'], exit code 3")
    assert exit_code_of(msgspec.json.encode(exit_status(0))) == 0
    assert exit_code_of(msgspec.json.encode(exit_status(137))) == 137
    # What the kubelet sends, byte for byte.
    kubelet = (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: ...",'
    )
    kubelet += b'"reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}'
    assert exit_code_of(kubelet) == 42
    assert exit_code_of(b'{"metadata":{},"status":"Success"}') == 0
    with pytest.raises(ExecFailure, match="container stopped"):
        exit_code_of(msgspec.json.encode(failure_status("container stopped")))
    with pytest.raises(ExecFailure, match="protocol error"):
        exit_code_of(b"not a status")


def test_the_token_in_the_credential_secret() -> None:
    assert secret_token({"token": base64.b64encode(b"s3cret").decode()}) == "s3cret"
    assert secret_token({"token": "%%% not base64"}) is None
    assert secret_token({"other": "eA=="}) is None
    assert secret_token(None) is None


# --- Podman's multiplexed stream ---------------------------------------------------------------------


def _mux(kind: int, payload: bytes) -> bytes:
    return bytes((kind, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def test_frames_survive_any_cut() -> None:
    stream = _mux(1, b"out1\n") + _mux(2, b"err1\n") + _mux(1, b"x" * 70000) + _mux(1, b"last\n")
    for size in (1, 3, 7, 8, 9, 4096, len(stream)):
        demux = FrameDemuxer()
        got = []
        for i in range(0, len(stream), size):
            got += demux.feed(stream[i : i + size])
        got += demux.flush()
        assert got == [(STDOUT, b"out1\n"), (STDERR, b"err1\n"), (STDOUT, b"x" * 70000), (STDOUT, b"last\n")]


def test_a_stream_without_headers_passes_through() -> None:
    demux = FrameDemuxer()
    assert demux.feed(_mux(1, b"framed\n")) == [(STDOUT, b"framed\n")]
    assert demux.feed(b"plain text!") == [(STDOUT, b"plain text!")]
    assert demux.feed(b"\x01\x00\x00\x00more") == [(STDOUT, b"\x01\x00\x00\x00more")]
    truncated = FrameDemuxer()
    assert truncated.feed(_mux(1, b"cut")[:-1]) == []
    assert truncated.flush() == [(STDOUT, _mux(1, b"cut")[:-1])]


def test_log_timestamps_become_utc() -> None:
    assert utc_timestamp_prefix(b"2024-05-01T10:00:00+02:00 hello\n") == b"2024-05-01T08:00:00Z hello\n"
    assert utc_timestamp_prefix(b"2024-05-01T08:00:00Z a b\n") == b"2024-05-01T08:00:00Z a b\n"
    assert utc_timestamp_prefix(b"no timestamp here\n") == b"no timestamp here\n"
    assert utc_timestamp_prefix(b"nospace") == b"nospace"


# --- the agent's choice of container -----------------------------------------------------------------


def _ctr(attempt: int, state: str, name: str = "app") -> ContainerInfo:
    return ContainerInfo(name=name, id=f"{name}-{attempt}", attempt=attempt, image="i", state=state)  # type: ignore[arg-type]


def _box(*containers: ContainerInfo, uid: str = "u1") -> SandboxInfo:
    return SandboxInfo(
        uid=uid, namespace="ns", name="p", id="sb", infra_running=True, containers=list(containers)
    )


def _find(boxes: list[SandboxInfo], **kw: object) -> str:
    args: dict[str, object] = {"namespace": "ns", "pod": "p", "uid": "u1", "container": "app"} | kw
    return find_container(boxes, **args).id  # type: ignore[arg-type]


def test_the_agent_finds_the_attempt_asked_for() -> None:
    boxes = [_box(_ctr(0, "exited"), _ctr(1, "exited"), _ctr(2, "running"), _ctr(0, "running", "side"))]
    assert _find(boxes) == "app-2"
    assert _find(boxes, previous=True) == "app-1"
    assert _find(boxes, container_id="podman://app-0") == "app-0"
    assert _find(boxes, container="side", running=True) == "side-0"
    assert _find(boxes, uid=None) == "app-2"


@pytest.mark.parametrize(
    ("boxes", "kw", "message"),
    [
        (
            [_box(_ctr(0, "running"))],
            {"previous": True},
            'previous terminated container "app" in pod "p" not found',
        ),
        ([_box(_ctr(0, "created"))], {}, 'container "app" in pod "p" is waiting to start: ContainerCreating'),
        ([], {}, 'container "app" in pod "p" is waiting to start: ContainerCreating'),
        (
            [_box(_ctr(0, "running"), uid="other")],
            {},
            'container "app" in pod "p" is waiting to start: ContainerCreating',
        ),
        (
            [_box(_ctr(0, "running"))],
            {"container_id": "app-9"},
            'container "app" in pod "p" is not available',
        ),
        (
            [_box(_ctr(0, "running"))],
            {"container_id": "app-0", "container": "side"},
            'container "side" in pod "p" is not available',
        ),
        ([_box(_ctr(0, "exited"))], {"running": True}, 'container "app" in pod "p" is not running'),
    ],
)
def test_the_agent_refuses_with_kubernetes_wording(
    boxes: list[SandboxInfo], kw: dict[str, object], message: str
) -> None:
    with pytest.raises(StreamError) as caught:
        _find(boxes, **kw)
    assert (caught.value.code, caught.value.message) == (400, message)


async def test_limit_bytes_cuts_and_closes_the_source() -> None:
    closed = []

    async def source() -> AsyncIterator[bytes]:
        try:
            for chunk in (b"abc", b"defgh", b"ijk"):
                yield chunk
        finally:
            closed.append(True)

    assert [c async for c in limit_bytes(source(), 5)] == [b"abc", b"de"]
    assert closed == [True]
    assert [c async for c in limit_bytes(source(), None)] == [b"abc", b"defgh", b"ijk"]
    assert [c async for c in limit_bytes(source(), 3)] == [b"abc"]
