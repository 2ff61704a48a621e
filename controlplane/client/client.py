"""The one async client everything uses: the scheduler, controllers, the node agent, ``pea`` and the
dashboard all reach the API server only through this.

Typed verbs take and return the API Structs. Watches are async iterators of :class:`WatchEvent`;
``watch`` raises :class:`~controlplane.client.errors.Gone` when the resourceVersion is too old (whether
the server says so with HTTP 410 or with an ERROR event), so callers re-list — the informer does.
A pod's logs are an async iterator of byte chunks as the server streams them (``logs``); exec is a
websocket session (``exec``, see ``remotecommand.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from controlplane import collector
from controlplane.api.core import Pod
from controlplane.api.meta import DeleteOptions, Preconditions, Status, Table, TopLevel
from controlplane.api.registry import ResourceInfo, for_type

from .errors import ApiError, Gone, TransportError, from_status
from .remotecommand import ExecOutput, ExecSession, open_exec, run_command
from .streams import ExecOptions, LogOptions

T = TypeVar("T", bound=TopLevel)

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: T
    resource_version: str


@dataclass(frozen=True, slots=True)
class ObjectList(Generic[T]):
    items: list[T]
    resource_version: str
    continue_: str | None = None


class _Frame(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _ListEnvelope(msgspec.Struct, rename="camel"):
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    items: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"[]"))


_encoder = msgspec.json.Encoder()


_list_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def _decode_items(raw: msgspec.Raw, cls: type[T]) -> list[T]:
    """A list's items, decoded with the cyclic collector paused (:mod:`controlplane.collector`)."""
    decoder = _list_decoders.get(cls)
    if decoder is None:
        decoder = _list_decoders[cls] = msgspec.json.Decoder(list[cls])  # type: ignore[valid-type]
    with collector.paused():
        return decoder.decode(raw)


def path_for(
    info: ResourceInfo, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{info.plural}"
    if name:
        base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
    return base


def _meta(obj: TopLevel) -> Any:
    return obj.metadata  # type: ignore[attr-defined]


class Client:
    """An async Kubernetes-style client over httpx. Use as ``async with Client(url) as c``.

    A request the server refuses with 429 (or a 5xx) and a ``Retry-After`` header is sent again after
    that many seconds, as client-go does: at most :attr:`max_retries` times, each wait capped at
    :attr:`max_retry_wait` and stretched by up to 20% of jitter so throttled clients do not come back
    in step. Writes too: such an answer means the server did nothing. Watches and log streams retry
    while starting; exec does not (an interactive session had better fail fast).
    """

    #: client-go's default; set on an instance to change it (0: never retry).
    max_retries: int = 10
    #: The longest one Retry-After is waited for, whatever the server asks.
    max_retry_wait: float = 10.0

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext = True,
        user_agent: str = "peapod",
        on_warning: Callable[[str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server.rstrip("/")
        self.on_warning = on_warning
        self.token = token or None
        self._headers = headers
        # verify: False, True (the system's CAs), a CA file (PEM) or a ready context (ClientConfig.verify).
        if isinstance(verify, str):  # httpx deprecates a path here: one context for httpx and exec
            verify = ssl.create_default_context(cafile=verify)
        self._verify = verify
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=verify,
            transport=transport,
            # httpcore checks every idle connection (a poll() each) on every request: keep few idle
            # (10% of the control plane's CPU went there with 50 while binding; bench/RESULTS.md).
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- raw requests ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> httpx.Response:
        """One request; a non-2xx answer raises the matching ApiError."""
        headers = {}
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else _encoder.encode(body)
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            try:
                resp = await self._http.request(method, path, params=clean, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise TransportError(f"{method} {self.server}{path}: {exc}") from exc
            delay = self._retry_delay(resp, attempt)
            if delay is None:
                break
            attempt += 1
            await asyncio.sleep(delay)
        self._warn(resp)
        if resp.status_code >= 400:
            raise from_status(_status_of(resp))
        return resp

    def _retry_delay(self, resp: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending the request again, or None to take the answer as it is:
        client-go's rule (a 429 or 5xx with an integer ``Retry-After``), capped and jittered."""
        code = resp.status_code
        if attempt >= self.max_retries or (code != 429 and not 500 <= code <= 599):
            return None
        value = resp.headers.get("retry-after", "").strip()
        if not value.isdigit():
            return None
        wait = min(float(value), self.max_retry_wait)
        return wait * (1.0 + 0.2 * random.random())

    @contextlib.asynccontextmanager
    async def _stream(
        self, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET that answered 2xx (retried while the server says to wait, like
        :meth:`request`); any other answer raises its ApiError."""
        attempt = 0
        while True:
            async with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=httpx.Timeout(None, connect=5.0)
            ) as resp:
                if resp.status_code < 400:
                    yield resp
                    return
                await resp.aread()
                delay = self._retry_delay(resp, attempt)
                if delay is None:
                    raise from_status(_status_of(resp))
            attempt += 1
            await asyncio.sleep(delay)

    def _warn(self, resp: httpx.Response) -> None:
        if self.on_warning is None:
            return
        for value in resp.headers.get_list("warning"):
            text = value.split(" - ", 1)[-1].strip()
            self.on_warning(text[1:-1].replace('\\"', '"') if text.startswith('"') else text)

    # --- typed verbs ----------------------------------------------------------------------------

    async def get(self, cls: type[T], name: str, namespace: str | None = None) -> T:
        resp = await self.request("GET", path_for(for_type(cls), namespace, name))
        return msgspec.json.decode(resp.content, type=cls)

    async def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList[T]:
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
        }
        resp = await self.request("GET", path_for(for_type(cls), namespace), params=params)
        env = msgspec.json.decode(resp.content, type=_ListEnvelope)
        items: list[T] = _decode_items(env.items, cls)
        return ObjectList(
            items, env.metadata.get("resourceVersion", ""), env.metadata.get("continue") or None
        )

    async def list_all(self, cls: type[T], namespace: str | None = None, **selectors: Any) -> ObjectList[T]:
        """Every page of a list, at one resourceVersion."""
        page = await self.list(cls, namespace, limit=500, **selectors)
        items = list(page.items)
        while page.continue_:
            page = await self.list(cls, namespace, limit=500, continue_=page.continue_, **selectors)
            items.extend(page.items)
        return ObjectList(items, page.resource_version)

    async def create(
        self,
        obj: T,
        namespace: str | None = None,
        *,
        field_validation: str | None = None,
        dry_run: bool = False,
    ) -> T:
        info = for_type(type(obj))
        ns = namespace or _meta(obj).namespace or ("default" if info.namespaced else None)
        params = {"fieldValidation": field_validation, "dryRun": "All" if dry_run else None}
        resp = await self.request("POST", path_for(info, ns), params=params, body=obj)
        return msgspec.json.decode(resp.content, type=type(obj))

    async def create_raw(
        self,
        info: ResourceInfo,
        body: dict[str, Any],
        namespace: str | None = None,
        *,
        field_validation: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Create from plain values (a manifest), so the server sees exactly what the user wrote."""
        params = {"fieldValidation": field_validation, "dryRun": "All" if dry_run else None}
        if info.namespaced and not namespace:
            namespace = (body.get("metadata") or {}).get("namespace") or "default"
        resp = await self.request("POST", path_for(info, namespace), params=params, body=body)
        return msgspec.json.decode(resp.content)

    async def replace(self, obj: T, *, subresource: str | None = None) -> T:
        info = for_type(type(obj))
        m = _meta(obj)
        resp = await self.request("PUT", path_for(info, m.namespace, m.name, subresource), body=obj)
        return msgspec.json.decode(resp.content, type=type(obj))

    async def replace_status(self, obj: T) -> T:
        return await self.replace(obj, subresource="status")

    async def patch(
        self,
        cls: type[T],
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_validation: str | None = None,
    ) -> T:
        info = for_type(cls)
        resp = await self.request(
            "PATCH",
            path_for(info, namespace, name, subresource),
            body=patch,
            content_type=PATCH_TYPES[patch_type],
            params={"fieldValidation": field_validation},
        )
        return msgspec.json.decode(resp.content, type=cls)

    async def patch_raw(
        self,
        info: ResourceInfo,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "strategic",
        field_validation: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        params = {"fieldValidation": field_validation, "dryRun": "All" if dry_run else None}
        resp = await self.request(
            "PATCH",
            path_for(info, namespace, name),
            body=patch,
            content_type=PATCH_TYPES[patch_type],
            params=params,
        )
        return msgspec.json.decode(resp.content)

    async def get_raw(self, info: ResourceInfo, name: str, namespace: str | None = None) -> dict[str, Any]:
        resp = await self.request("GET", path_for(info, namespace, name))
        return msgspec.json.decode(resp.content)

    async def delete(
        self,
        cls: type[T],
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
    ) -> T | None:
        """Delete; returns the object as the server left it (with deletionTimestamp if graceful)."""
        options = DeleteOptions(
            api_version="v1",
            kind="DeleteOptions",
            grace_period_seconds=grace_period_seconds,
            propagation_policy=propagation_policy,
            preconditions=Preconditions(uid=uid, resource_version=resource_version)
            if uid or resource_version
            else None,
        )
        resp = await self.request("DELETE", path_for(for_type(cls), namespace, name), body=options)
        data = msgspec.json.decode(resp.content)
        if isinstance(data, dict) and data.get("kind") == for_type(cls).kind:
            return msgspec.convert(data, cls)
        return None

    async def delete_collection(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> None:
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        await self.request("DELETE", path_for(for_type(cls), namespace), params=params)

    async def bind(self, pod_name: str, namespace: str, node_name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod_name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        info = for_type(Pod)
        await self.request("POST", path_for(info, namespace, pod_name, "binding"), body=body)

    async def scale(self, cls: type[T], name: str, replicas: int, namespace: str | None = None) -> None:
        await self.request(
            "PATCH",
            path_for(for_type(cls), namespace, name, "scale"),
            body={"spec": {"replicas": replicas}},
            content_type=PATCH_TYPES["merge"],
        )

    async def table(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        name: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Table:
        """Server-side printing: the rows ``pea get`` and the dashboard show."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        resp = await self.request("GET", path_for(info, namespace, name), params=params, accept=TABLE_ACCEPT)
        return msgspec.json.decode(resp.content, type=Table)

    # --- logs and exec --------------------------------------------------------------------------

    async def logs(
        self,
        name: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        follow: bool = False,
        previous: bool = False,
        timestamps: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
        since_time: str | None = None,
        limit_bytes: int | None = None,
    ) -> AsyncIterator[bytes]:
        """A container's output (``pods/{name}/log``), chunk by chunk as the server sends it; with
        ``follow`` until the container ends or the caller stops iterating."""
        options = LogOptions(
            container=container,
            follow=follow,
            previous=previous,
            timestamps=timestamps,
            tail_lines=tail_lines,
            since_seconds=since_seconds,
            since_time=since_time,
            limit_bytes=limit_bytes,
        )
        path = path_for(for_type(Pod), namespace or "default", name, "log")
        try:
            async with self._stream(path, options.to_query(), {"Accept": "text/plain, */*"}) as resp:
                self._warn(resp)
                async for chunk in resp.aiter_bytes():
                    yield chunk
        except httpx.HTTPError as exc:
            raise TransportError(f"logs of pod {name}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def exec(
        self,
        name: str,
        command: Sequence[str],
        namespace: str | None = None,
        *,
        container: str | None = None,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
    ) -> AsyncIterator[ExecSession]:
        """``async with client.exec("pod", ["sh"], stdin=True) as session:`` — a running command; see
        :class:`~controlplane.client.remotecommand.ExecSession`. With a tty there is no stderr."""
        options = ExecOptions(
            command=list(command),
            container=container,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr and not tty,
            tty=tty,
        )
        path = path_for(for_type(Pod), namespace or "default", name, "exec")
        session = await open_exec(self.server, path, options, self._headers, verify=self._verify)
        async with session:
            yield session

    async def exec_output(
        self,
        name: str,
        command: Sequence[str],
        namespace: str | None = None,
        *,
        container: str | None = None,
        stdin: bytes | None = None,
    ) -> ExecOutput:
        """Run ``command`` to completion (with ``stdin`` as its input, then EOF) and collect its output
        and exit code."""
        async with self.exec(name, command, namespace, container=container, stdin=stdin is not None) as s:
            return await run_command(s, stdin)

    # --- watch ----------------------------------------------------------------------------------

    async def watch(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[T]]:
        """Stream changes after ``resource_version``. Raises Gone when it is too old."""
        info = for_type(cls)
        async for frame in self._watch_frames(
            info,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
            bookmarks=bookmarks,
        ):
            if frame.type == "BOOKMARK":
                rv = msgspec.json.decode(frame.object).get("metadata", {}).get("resourceVersion", "")
                yield WatchEvent("BOOKMARK", cls(), rv)
                continue
            obj = msgspec.json.decode(frame.object, type=cls)
            yield WatchEvent(frame.type, obj, _meta(obj).resource_version or "")

    async def watch_table(
        self,
        info: ResourceInfo,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, Table]]:
        """A watch whose objects are one-row Tables (``pea get -w``)."""
        async for frame in self._watch_frames(
            info,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            accept=TABLE_ACCEPT,
            bookmarks=False,
        ):
            yield frame.type, msgspec.json.decode(frame.object, type=Table)

    async def _watch_frames(
        self,
        info: ResourceInfo,
        namespace: str | None,
        *,
        resource_version: str | None,
        label_selector: str | None,
        field_selector: str | None,
        timeout_seconds: int | None = None,
        bookmarks: bool = True,
        accept: str | None = None,
    ) -> AsyncIterator[_Frame]:
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true" if bookmarks else None,
        }
        clean = {k: v for k, v in params.items() if v is not None}
        headers = {"Accept": accept} if accept else {}
        decoder = msgspec.json.Decoder(_Frame)
        try:
            async with self._stream(path_for(info, namespace), clean, headers) as resp:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    frame = decoder.decode(line)
                    if frame.type == "ERROR":
                        status = msgspec.json.decode(frame.object, type=Status)
                        raise from_status(status)
                    yield frame
        except httpx.HTTPError as exc:
            raise TransportError(f"watch {info.plural}: {exc}") from exc


def _status_of(resp: httpx.Response) -> Status:
    try:
        status = msgspec.json.decode(resp.content, type=Status)
        if status.kind == "Status":
            status.code = status.code or resp.status_code
            return status
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    text = resp.text.strip()[:200]
    return Status(code=resp.status_code, reason=resp.reason_phrase, message=text or resp.reason_phrase)


__all__ = ["ApiError", "Client", "ExecOutput", "ExecSession", "Gone", "ObjectList", "WatchEvent", "path_for"]
