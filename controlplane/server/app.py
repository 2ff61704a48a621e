"""The HTTP face of the API server: a Starlette app over :class:`~controlplane.server.handlers.API`.

Routing is Kubernetes': ``/api/v1/...`` and ``/apis/{group}/{version}/...`` are resolved to a
:class:`RequestInfo` and dispatched by HTTP method. Every error leaves as a ``Status``; bodies over
3 MiB are refused before they are read whole; watches are streamed. ``pods/log`` and ``pods/exec`` (a
websocket) have routes of their own and are proxied to the pod's node agent (``podproxy.py``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from controlplane.api.meta import DeleteOptions, ListMeta, TopLevel
from controlplane.api.policy import PROTOBUF, ProtobufError, decode_protobuf
from controlplane.api.registry import ResourceInfo
from controlplane.tables import build_table

from . import discovery, errors, openapi
from .auth import NODE_USER_PREFIX, NODES_GROUP, Authenticator, User
from .authz import Authorizer, verb_of
from .handlers import API, WriteOptions, parse_list_query
from .podproxy import PodProxy
from .ratelimit import RateLimiter
from .request import MAX_BODY, RequestInfo, decode_body, parse_path, wants_table
from .watch import WatchParams, watch_stream
from .watchcache import WatchCache

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
JSON = "application/json"


def json_response(obj: Any, code: int = 200, warnings: list[str] | None = None) -> Response:
    response = Response(_encoder.encode(obj), status_code=code, media_type=JSON)
    for warning in warnings or ():
        # One header per warning, as kube-apiserver sends them.
        response.headers.append("Warning", '299 - "' + _header_text(warning) + '"')
    return response


def _header_text(text: str) -> str:
    """A warning as a quoted-string of printable ASCII: warnings can quote what a client sent (an
    unknown field's name), and a header value may not carry control or non-Latin-1 characters."""
    text = text.replace('"', '\\"')
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def list_body(info: ResourceInfo, revision: int, token: str | None, items: list[bytes]) -> bytes:
    """A ``{Kind}List`` whose items are already JSON: the envelope is encoded with no items and the
    items are joined into its empty array, so a large LIST is one join rather than a re-encode."""
    meta = ListMeta(resource_version=str(revision) if revision else None, continue_=token)
    head = _encoder.encode(info.list_type(metadata=meta))
    if not head.endswith(b"[]}"):  # the list kinds end with their items; anything else the slow way
        envelope = msgspec.json.decode(head)
        envelope["items"] = [msgspec.Raw(item) for item in items]
        return _encoder.encode(envelope)
    return head[:-2] + b",".join(items) + b"]}"


def status_response(exc: errors.APIError) -> Response:
    headers = {}
    details = exc.status.details
    if details is not None and details.retry_after_seconds:
        headers["Retry-After"] = str(details.retry_after_seconds)
    return Response(_encoder.encode(exc.status), status_code=exc.code, media_type=JSON, headers=headers)


async def read_body(request: Request) -> bytes:
    """The request body, refusing anything over the limit without buffering it all."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise errors.too_large(MAX_BODY)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        chunks.append(chunk)
    return b"".join(chunks)


def _delete_body(body: bytes, content_type: str, what: str) -> Any:
    """An Eviction or DeleteOptions as JSON/YAML, or as protobuf: client-go's typed clients (``kubectl
    drain``, with or without evictions) send those."""
    if content_type.split(";", 1)[0].strip().lower() == PROTOBUF:
        try:
            return decode_protobuf(body)
        except ProtobufError as exc:
            raise errors.bad_request(f"invalid protobuf {what}: {exc}") from None
    return decode_body(body, content_type, what)


class APIServer:
    """Builds the ASGI app for one API and watch cache."""

    def __init__(
        self,
        api: API,
        cache: WatchCache,
        authenticator: Authenticator,
        *,
        server_address: str = "",
        bookmark_interval: float = 60.0,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.api = api
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter(0, 0)
        self.cache = cache
        self.authenticator = authenticator
        self.server_address = server_address
        self.bookmark_interval = bookmark_interval
        self.ready = False
        self.proxy = PodProxy(api, node_token=self._node_token)
        self.authorizer = Authorizer(api.storage)
        pod = "/api/v1/namespaces/{namespace}/pods/{name}"
        self.app = Starlette(
            routes=[
                Route(pod + "/log", self._pod_log),
                Route("/api/v1/nodes/{name}/proxy/images/load", self._node_image_load, methods=["POST"]),
                Route(pod + "/exec", self._pod_exec, methods=["GET", "POST"]),
                WebSocketRoute(pod + "/exec", self._pod_exec_websocket),
                Route("/version", self._version),
                Route("/healthz", self._health),
                Route("/livez", self._health),
                Route("/readyz", self._ready),
                Route("/api", self._api_versions),
                Route("/api/v1", self._core_resources),
                Route("/apis", self._groups),
                Route("/apis/{group}/{version}", self._group_resources),
                Route("/openapi/v3", self._openapi_root),
                Route("/openapi/v3/{path:path}", self._openapi_group_version),
                Route("/api/v1/{path:path}", self._core, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route(
                    "/apis/{group}/{version}/{path:path}",
                    self._grouped,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )
        self.app.add_exception_handler(errors.APIError, self._api_error)  # type: ignore[arg-type]
        self.app.add_exception_handler(Exception, self._unexpected)
        self.app.add_exception_handler(404, self._not_found)
        self.app.add_exception_handler(405, self._not_allowed)

    # --- plumbing -------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> User:
        client = request.client.host if request.client else None
        user = self.authenticator.authenticate(request.url.path, request.headers.get("authorization"), client)
        self.rate_limiter.admit(user, request.url.path)  # 429 before any work; a watch counts once
        return user

    async def _api_error(self, request: Request, exc: errors.APIError) -> Response:
        return status_response(exc)

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return status_response(errors.internal(type(exc).__name__))

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        err = errors.not_found("", "")
        err.status.message = "the server could not find the requested resource"
        err.status.details = None
        return status_response(err)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return status_response(errors.method_not_allowed(request.method, request.url.path))

    def _node_token(self, node: str) -> str | None:
        """Node ``node``'s own token from the token file: what the API server shows that node's agent."""
        return self.authenticator.token_for(f"{NODE_USER_PREFIX}{node}", NODES_GROUP)

    # --- fixed endpoints ------------------------------------------------------------------------

    async def _version(self, request: Request) -> Response:
        self._authenticate(request)
        return json_response(discovery.version_info())

    async def _health(self, request: Request) -> Response:
        self._authenticate(request)
        return Response("ok", media_type="text/plain")

    async def _ready(self, request: Request) -> Response:
        self._authenticate(request)
        if not self.ready:
            return Response("not ready: starting", status_code=503, media_type="text/plain")
        return Response("ok", media_type="text/plain")

    async def _api_versions(self, request: Request) -> Response:
        self._authenticate(request)
        return json_response(discovery.api_versions(self.server_address or request.url.netloc))

    async def _core_resources(self, request: Request) -> Response:
        self._authenticate(request)
        return json_response(discovery.resource_list("v1"))

    async def _groups(self, request: Request) -> Response:
        self._authenticate(request)
        return json_response(discovery.api_groups())

    async def _group_resources(self, request: Request) -> Response:
        self._authenticate(request)
        gv = f"{request.path_params['group']}/{request.path_params['version']}"
        resources = discovery.resource_list(gv)
        if resources is None:
            return await self._not_found(request, Exception())
        return json_response(resources)

    async def _openapi_root(self, request: Request) -> Response:
        self._authenticate(request)
        return Response(openapi.root_document(), media_type=JSON)

    async def _openapi_group_version(self, request: Request) -> Response:
        self._authenticate(request)
        path = request.path_params["path"]
        gv = path.removeprefix("apis/").removeprefix("api/")
        body = openapi.group_version_document(gv) if path.startswith(("api/", "apis/")) else None
        if body is None:
            return await self._not_found(request, Exception())
        return Response(body, media_type=JSON)

    # --- logs and exec, through the node agent ----------------------------------------------------

    def _authorize_stream(self, user: User, namespace: str, name: str, sub: str, verb: str) -> None:
        ri = parse_path("", "v1", ["namespaces", namespace, "pods", name, sub])
        self.authorizer.authorize_stream(user, ri, verb)

    async def _pod_log(self, request: Request) -> Response:
        user = self._authenticate(request)
        p = request.path_params
        self._authorize_stream(user, p["namespace"], p["name"], "log", "get")
        return await self.proxy.logs(request, p["namespace"], p["name"])

    async def _node_image_load(self, request: Request) -> Response:
        """Images for a node's agent (``pea image load``), through the API server: the agent serves no one
        else, and here the user is authorized (nodes may not use ``nodes/proxy``)."""
        user = self._authenticate(request)
        name = request.path_params["name"]
        ri = parse_path("", "v1", ["nodes", name])
        self.authorizer.authorize_node_proxy(user, RequestInfo(ri.info, None, name, "proxy", False))
        return await self.proxy.load_image(request, name)

    async def _pod_exec(self, request: Request) -> Response:
        user = self._authenticate(request)
        p = request.path_params
        self._authorize_stream(user, p["namespace"], p["name"], "exec", "create")
        return await self.proxy.exec_without_upgrade(request, p["namespace"], p["name"])

    async def _pod_exec_websocket(self, websocket: WebSocket) -> None:
        """Refusals before the upgrade are HTTP answers with a Status body (a denial response)."""
        p = websocket.path_params
        try:
            client = websocket.client.host if websocket.client else None
            user = self.authenticator.authenticate(
                websocket.url.path, websocket.headers.get("authorization"), client
            )
            self.rate_limiter.admit(user, websocket.url.path)
            self._authorize_stream(user, p["namespace"], p["name"], "exec", "create")
            await self.proxy.exec(websocket, p["namespace"], p["name"])
        except errors.APIError as exc:
            await websocket.send_denial_response(status_response(exc))
        except Exception as exc:
            log.exception("unexpected error serving exec for %s/%s", p["namespace"], p["name"])
            with contextlib.suppress(Exception):
                await websocket.send_denial_response(status_response(errors.internal(type(exc).__name__)))

    # --- resources ------------------------------------------------------------------------------

    async def _core(self, request: Request) -> Response:
        return await self._dispatch(request, "", "v1", request.path_params["path"])

    async def _grouped(self, request: Request) -> Response:
        p = request.path_params
        return await self._dispatch(request, p["group"], p["version"], p["path"])

    async def _dispatch(self, request: Request, group: str, version: str, path: str) -> Response:
        user = self._authenticate(request)
        ri = parse_path(group, version, path.strip("/").split("/"))
        query = dict(request.query_params)
        method = request.method
        sub = ri.subresource
        verb = verb_of(method, ri, query.get("watch") in ("true", "1"))
        decision = await self.authorizer.authorize(user, verb, ri)
        if sub == "eviction" and method != "POST":
            raise errors.method_not_allowed(method.lower(), f"{ri.info.plural}/eviction")
        if method == "GET":
            if ri.name is None:
                return await self._list_or_watch(request, ri, query)
            if sub == "scale":
                return json_response(await self.api.get_scale(ri))
            if sub in ("log", "exec", "attach"):
                raise errors.bad_request(
                    f"pods/{sub} is not served here: use /api/v1/namespaces/NAMESPACE/pods/NAME/log or /exec"
                )
            if sub is None and not wants_table(request.headers.get("accept", "")):
                return Response(await self.api.get_encoded(ri), media_type=JSON)
            return self._object_response(request, ri, await self.api.get(ri))
        opts = WriteOptions.from_query(query)
        opts.guard, opts.guard_update = decision.guard, decision.guard_update
        if method == "DELETE":
            options = await self._delete_options(request, query)
            if ri.name is None:
                q = parse_list_query(ri.info, query)
                items = await self.api.delete_collection(ri, q, options, opts)
                return self._list_response(request, ri, 0, items, None)
            return self._object_response(request, ri, await self.api.delete(ri, options, opts))
        body = await read_body(request)
        content_type = request.headers.get("content-type", JSON)
        if method == "POST" and sub == "eviction":
            evicted = await self.api.evict(ri, _delete_body(body, content_type, "Eviction"), opts)
            return json_response(evicted, 201, opts.warnings)
        if method == "PATCH":
            if ri.name is None:
                raise errors.method_not_allowed("patch", ri.info.plural)
            obj = await self.api.patch(ri, body, content_type, opts)
            return self._object_response(request, ri, obj, warnings=opts.warnings)
        raw = decode_body(body, content_type)
        if method == "POST":
            if sub == "binding":
                return json_response(await self.api.bind(ri, raw, opts), 201, opts.warnings)
            if ri.name is not None:
                raise errors.method_not_allowed("create", f"{ri.info.plural}/{ri.name}")
            obj = await self.api.create(ri, raw, opts)
            return self._object_response(request, ri, obj, 201, opts.warnings)
        if ri.name is None:
            raise errors.method_not_allowed("update", ri.info.plural)
        obj = await self.api.replace(ri, raw, opts)
        return self._object_response(request, ri, obj, warnings=opts.warnings)

    async def _delete_options(self, request: Request, query: dict[str, str]) -> DeleteOptions:
        body = await read_body(request)
        options = DeleteOptions()
        if body.strip():
            raw = _delete_body(body, request.headers.get("content-type", JSON), "delete options")
            try:
                options = msgspec.convert(raw, DeleteOptions)
            except msgspec.ValidationError as exc:
                raise errors.bad_request(f"invalid DeleteOptions: {exc}") from None
        if "gracePeriodSeconds" in query:
            try:
                options.grace_period_seconds = int(query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in query:
            options.propagation_policy = query["propagationPolicy"]
        if "orphanDependents" in query:
            value = query["orphanDependents"].lower()  # Go's strconv.ParseBool
            if value not in ("true", "t", "1", "false", "f", "0"):
                raise errors.bad_request(f'orphanDependents "{query["orphanDependents"]}" is not a boolean')
            options.orphan_dependents = value in ("true", "t", "1")
        return options

    async def _list_or_watch(self, request: Request, ri: RequestInfo, query: dict[str, str]) -> Response:
        q = parse_list_query(ri.info, query)
        as_table = wants_table(request.headers.get("accept", ""))
        if query.get("watch") in ("true", "1"):
            params = WatchParams.from_query(query, as_table, self.bookmark_interval)
            stream = watch_stream(self.api, self.cache, ri, q, params)
            return StreamingResponse(stream, media_type=JSON)
        if as_table:
            revision, items, token = await self.api.list(ri, q)
            return self._list_response(request, ri, revision, items, token)
        revision, encoded, token = await self.api.list_encoded(ri, q)
        return Response(list_body(ri.info, revision, token, encoded), media_type=JSON)

    def _list_response(
        self, request: Request, ri: RequestInfo, revision: int, items: list[TopLevel], token: str | None
    ) -> Response:
        rv = str(revision) if revision else None
        if wants_table(request.headers.get("accept", "")):
            table = build_table(
                ri.info,
                items,
                include_object=request.query_params.get("includeObject", "Metadata"),  # type: ignore[arg-type]
                resource_version=rv,
                continue_=token,
            )
            return json_response(table)
        result = ri.info.list_type(metadata=ListMeta(resource_version=rv, continue_=token), items=items)
        return json_response(result)

    def _object_response(
        self,
        request: Request,
        ri: RequestInfo,
        obj: TopLevel,
        code: int = 200,
        warnings: list[str] | None = None,
    ) -> Response:
        if wants_table(request.headers.get("accept", "")) and ri.subresource is None:
            include = request.query_params.get("includeObject", "Metadata")
            return json_response(build_table(ri.info, [obj], include_object=include), code, warnings)  # type: ignore[arg-type]
        return json_response(obj, code, warnings)
