"""The REST verbs: list, get, create, replace, patch, delete, deletecollection, and the subresources
status, binding, scale and eviction.

Every write goes through the same steps, in the order kube-apiserver uses: decode (with the field
validation mode) → set server-owned metadata → default → validate → admission (namespace exists,
allocations) → one compare-and-swap write. A failure at any step leaves the store untouched, so nothing
is ever half-applied; an allocation made for a write that then fails is released again.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from controlplane import collector, validation
from controlplane.api.core import (
    Binding,
    Event,
    Namespace,
    Node,
    Pod,
    PodCondition,
    ReplicationController,
    Scale,
    ScaleSpec,
    ScaleStatus,
    Service,
)
from controlplane.api.meta import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    DeleteOptions,
    ObjectMeta,
    StatusCause,
    StatusDetails,
    TopLevel,
    now,
)
from controlplane.api.policy import Eviction
from controlplane.api.registry import ResourceInfo, by_kind
from controlplane.defaults import apply_defaults
from controlplane.patch import PatchError, apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from controlplane.selectors import (
    FieldSelector,
    Selector,
    SelectorError,
    check_field_selector,
    from_set,
    object_fields,
    parse_field_selector,
    parse_label_selector,
)
from controlplane.store import KeyValue

from . import errors
from .admission import DefaultTolerationSeconds, PodSecurity
from .allocators import AllocationError, RangeAllocator
from .request import RequestInfo, decode_body
from .services import ServiceRegistry
from .storage import ObjectStorage, clone, decode, decode_all, encode, parse_rv, stamp

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
PATCH_TYPES = (
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
)
NAMESPACE_FINALIZER = "kubernetes"
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


@dataclass
class WriteOptions:
    """Query parameters shared by the write verbs."""

    field_validation: str = "Warn"
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    # The authorizer's object-level check (``authz.py``): called with the submitted object of a create,
    # and with the stored object of an update, patch or delete, inside the compare-and-swap loop.
    guard: Callable[[TopLevel], None] | None = None
    # And its check of an update: called with (new, stored) once the new object is final.
    guard_update: Callable[[TopLevel, TopLevel], None] | None = None

    @classmethod
    def from_query(cls, query: dict[str, str]) -> WriteOptions:
        mode = query.get("fieldValidation", "Warn") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f'fieldValidation "{mode}" is not supported: use "Ignore", "Warn" or "Strict"'
            )
        dry = query.get("dryRun", "")
        if dry not in ("", "All"):
            raise errors.bad_request(f'dryRun "{dry}" is not supported: use "All"')
        return cls(field_validation=mode, dry_run=dry == "All")


@dataclass(frozen=True)
class ListQuery:
    labels: Selector | None
    fields: FieldSelector | None
    limit: int
    continue_rev: int
    continue_key: str
    revision: int

    def matches(self, obj: TopLevel) -> bool:
        if self.labels is not None and not self.labels.matches(obj.metadata.labels):  # type: ignore[attr-defined]
            return False
        return self.fields is None or self.fields.matches(object_fields(obj))


def parse_list_query(info: ResourceInfo, query: dict[str, str]) -> ListQuery:
    try:
        labels = parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else None
        fields = parse_field_selector(query["fieldSelector"]) if query.get("fieldSelector") else None
        if fields is not None:
            check_field_selector(info.kind, fields)
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    try:
        limit = int(query.get("limit") or 0)
    except ValueError:
        raise errors.bad_request(f'invalid limit "{query["limit"]}"') from None
    continue_rev, continue_key = decode_continue(query["continue"]) if query.get("continue") else (0, "")
    revision = 0
    if query.get("resourceVersionMatch") == "Exact" or continue_rev:
        revision = continue_rev or parse_rv(query.get("resourceVersion"))
    return ListQuery(labels, fields, max(limit, 0), continue_rev, continue_key, revision)


def encode_continue(revision: int, key: str) -> str:
    raw = msgspec.json.encode({"v": "meta.k8s.io/v1", "rv": revision, "start": key})
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, msgspec.DecodeError):
        raise errors.bad_request(
            "continue key is not valid: it must be a token from a previous list"
        ) from None


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


UpdateHook = Callable[
    [TopLevel, TopLevel],
    Awaitable[tuple[Callable[[], Awaitable[None]] | None, Callable[[], Awaitable[None]] | None]],
]


def meta(obj: TopLevel) -> ObjectMeta:
    return obj.metadata  # type: ignore[attr-defined]


def _time_after(seconds: int) -> str:
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class API:
    """The verbs, over typed storage. One instance per server process."""

    def __init__(
        self,
        storage: ObjectStorage,
        pod_cidrs: RangeAllocator[str],
        admission: DefaultTolerationSeconds | None = None,
        services: ServiceRegistry | None = None,
        pod_security: PodSecurity | None = None,
    ) -> None:
        self.storage = storage
        self.pod_cidrs = pod_cidrs
        # Mutating admission of new pods (Kubernetes enables DefaultTolerationSeconds by default).
        self.admission = admission if admission is not None else DefaultTolerationSeconds()
        # Validating admission of new pods: no hostPath, privileged or host namespaces unless allowed.
        self.pod_security = pod_security if pod_security is not None else PodSecurity()
        # Hooks other parts of the control plane add (service IP allocation, ...): kind → callable.
        self.create_hooks: dict[
            str, Callable[[TopLevel], Awaitable[Callable[[], Awaitable[None]] | None]]
        ] = {
            "Node": self._allocate_pod_cidr,
        }
        self.delete_hooks: dict[str, Callable[[TopLevel], Awaitable[None]]] = {"Node": self._release_pod_cidr}
        # Called with (stored, proposed) before an update of the main resource is validated; may change
        # the proposed object (allocations) and returns (undo if the write fails, finish once it is done).
        self.update_hooks: dict[str, UpdateHook] = {}
        self.services = services
        if services is not None:
            self.create_hooks["Service"] = services.on_create
            self.update_hooks["Service"] = services.on_update
            self.delete_hooks["Service"] = services.on_delete

    # --- decoding -------------------------------------------------------------------------------

    def decode_object(self, info: ResourceInfo, raw: Any, opts: WriteOptions, name: str = "") -> TopLevel:
        """Plain values → a typed object, honouring fieldValidation for fields the type lacks."""
        return decode_as(info.type, info, raw, opts, name)

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, ri: RequestInfo) -> TopLevel:
        assert ri.name is not None
        return await self.storage.get(ri.info, ri.namespace, ri.name)

    async def get_encoded(self, ri: RequestInfo) -> bytes:
        """:meth:`get` as its JSON, straight from the stored bytes."""
        assert ri.name is not None
        return await self.storage.get_encoded(ri.info, ri.namespace, ri.name)

    async def list(self, ri: RequestInfo, q: ListQuery) -> tuple[int, list[TopLevel], str | None]:
        """Matching objects, one page; returns (revision, items, continue token or None)."""
        rev, page, token = await self._select(ri, q)
        with collector.paused():
            return rev, [obj if obj is not None else decode(ri.info, kv) for kv, obj in page], token

    async def list_encoded(
        self, ri: RequestInfo, q: ListQuery
    ) -> tuple[int, builtins.list[bytes], str | None]:
        """:meth:`list` with each item as its JSON, straight from the stored bytes: a LIST answered as
        JSON decodes nothing unless a selector has to look inside the objects."""
        rev, page, token = await self._select(ri, q)
        return rev, [stamp(ri.info, kv) for kv, _ in page], token

    async def _select(
        self, ri: RequestInfo, q: ListQuery
    ) -> tuple[int, builtins.list[tuple[KeyValue, TopLevel | None]], str | None]:
        """One page of matching key-values, each with its object when a selector had to decode it."""
        info = ri.info
        start = q.continue_key
        revision = q.revision
        out: builtins.list[tuple[KeyValue, TopLevel | None]] = []
        filtered = q.labels is not None or q.fields is not None
        # With selectors, read in larger pages than asked for: most of what is read may not match.
        batch = max(q.limit, 500) if filtered else q.limit
        while True:
            rev, kvs, next_key = await self.storage.list_values(
                info, ri.namespace, revision=revision, start_key=start, limit=batch
            )
            revision = rev
            objs = decode_all(info, kvs) if filtered else [None] * len(kvs)
            for i, (kv, obj) in enumerate(zip(kvs, objs, strict=True)):
                if obj is None or q.matches(obj):
                    out.append((kv, obj))
                    if q.limit and len(out) == q.limit:
                        more = next_key is not None or i + 1 < len(kvs)
                        return rev, out, encode_continue(rev, kv.key + "\x00") if more else None
            if next_key is None:
                return rev, out, None
            start = next_key

    # --- create ---------------------------------------------------------------------------------

    async def create(self, ri: RequestInfo, raw: Any, opts: WriteOptions) -> TopLevel:
        info = ri.info
        if ri.all_namespaces:
            raise errors.method_not_allowed("create", info.plural)
        obj = self.decode_object(info, raw, opts)
        m = meta(obj)
        if info.namespaced:
            if m.namespace and ri.namespace and m.namespace != ri.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m.namespace = ri.namespace or m.namespace or "default"
        else:
            m.namespace = None
        if opts.guard is not None:
            opts.guard(obj)
        if not m.name and not m.generate_name:
            raise errors.invalid(
                info.kind,
                "",
                [validation.required("metadata.name", "name or generateName is required")],
                info.group,
            )
        self._prepare_create(info, obj)
        if isinstance(obj, Pod):
            self.admission.admit(obj)
        await self._admit_namespace(info, m.namespace)
        for attempt in range(8):
            if m.generate_name and (attempt or not m.name):
                m.name = generate_name(m.generate_name)
            apply_defaults(obj)
            errs = validation.validate(obj, info)
            if errs:
                raise errors.invalid(info.kind, m.name or m.generate_name or "", errs, info.group)
            if isinstance(obj, Pod):  # validating admission runs after validation, as in kube-apiserver
                self.pod_security.admit(obj)
            elif attempt == 0:  # workloads get PodSecurity's warnings instead of a refusal
                opts.warnings.extend(self.pod_security.workload_warnings(obj))
            if opts.dry_run:
                return obj
            undo = None
            hook = self.create_hooks.get(info.kind)
            if hook is not None:
                # A create that is bound to fail must not allocate (and release) on the way: one read.
                if await self.storage.try_get(info, m.namespace, m.name or "") is not None:
                    if not m.generate_name:
                        raise errors.already_exists(info.plural, m.name or "", info.group)
                    continue
                undo = await hook(obj)
            try:
                return await self.storage.create(info, obj)
            except errors.APIError as exc:
                if undo is not None:
                    await undo()
                if exc.status.reason != "AlreadyExists" or not m.generate_name:
                    raise
        raise errors.already_exists(info.plural, m.name or "", info.group)

    def _prepare_create(self, info: ResourceInfo, obj: TopLevel) -> None:
        m = meta(obj)
        m.uid = str(uuid.uuid4())
        m.creation_timestamp = now()
        m.resource_version = None
        m.deletion_timestamp = None
        m.deletion_grace_period_seconds = None
        m.self_link = None
        m.managed_fields = None
        m.generation = 1 if info.tracks_generation or isinstance(obj, Pod) else None
        if isinstance(obj, Pod):
            obj.status = type(obj.status)()
        elif isinstance(obj, ReplicationController | Service):
            obj.status = type(obj.status)()
        elif isinstance(obj, Namespace):
            obj.status = type(obj.status)()
            obj.spec.finalizers = [NAMESPACE_FINALIZER]
        elif isinstance(obj, Event):
            stamp = now()
            obj.first_timestamp = obj.first_timestamp or obj.last_timestamp or stamp
            obj.last_timestamp = obj.last_timestamp or obj.first_timestamp
            if obj.count is msgspec.UNSET:
                obj.count = 1
            if obj.type is msgspec.UNSET:
                obj.type = "Normal"

    async def _admit_namespace(self, info: ResourceInfo, namespace: str | None) -> None:
        if not info.namespaced or namespace is None:
            return
        ns_info = by_kind("Namespace")
        assert ns_info is not None
        ns = await self.storage.try_get(ns_info, None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if meta(ns).deletion_timestamp is not None and info.kind != "Event":
            raise errors.forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                info.plural,
            )

    async def _allocate_pod_cidr(self, obj: TopLevel) -> Callable[[], Awaitable[None]] | None:
        assert isinstance(obj, Node)
        name = obj.metadata.name or ""
        try:
            cidr = await self.pod_cidrs.allocate(name, obj.spec.pod_cidr)
        except AllocationError as exc:
            raise errors.invalid(
                "Node", name, [validation.invalid("spec.podCIDR", obj.spec.pod_cidr, str(exc))]
            ) from None
        obj.spec.pod_cidr = cidr
        obj.spec.pod_cidrs = [cidr]

        async def undo() -> None:
            await self.pod_cidrs.release(cidr, name)

        return undo

    async def _release_pod_cidr(self, obj: TopLevel) -> None:
        assert isinstance(obj, Node)
        if obj.spec.pod_cidr:
            await self.pod_cidrs.release(obj.spec.pod_cidr, obj.metadata.name)

    # --- update ---------------------------------------------------------------------------------

    async def replace(self, ri: RequestInfo, raw: Any, opts: WriteOptions) -> TopLevel:
        assert ri.name is not None
        if ri.subresource == "scale":
            return await self.replace_scale(ri, raw, opts)
        new = self.decode_object(ri.info, raw, opts, ri.name)
        expected = parse_rv(meta(new).resource_version)

        async def compute(current: TopLevel) -> TopLevel:
            return clone(new)

        return await self._update(ri, compute, expected, opts)

    async def patch(self, ri: RequestInfo, body: bytes, content_type: str, opts: WriteOptions) -> TopLevel:
        assert ri.name is not None
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        patch = decode_body(body, "application/json", "patch")
        if media == "application/json-patch+json":
            if not isinstance(patch, list):
                raise errors.bad_request("a JSON patch must be a list of operations")
        elif not isinstance(patch, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        target_type: type[TopLevel] = Scale if ri.subresource == "scale" else ri.info.type
        expected = 0
        patch_meta = patch.get("metadata") if isinstance(patch, dict) else None
        if isinstance(patch_meta, dict) and isinstance(patch_meta.get("resourceVersion"), str):
            expected = parse_rv(patch_meta["resourceVersion"])  # any other type fails decoding below

        async def compute(current: TopLevel) -> TopLevel:
            base = self._scale_of(current) if ri.subresource == "scale" else current
            doc = msgspec.to_builtins(base)
            try:
                if media == "application/json-patch+json":
                    patched = apply_json_patch(doc, patch)
                elif media == "application/merge-patch+json":
                    patched = apply_merge_patch(doc, patch)
                else:
                    patched = apply_strategic_merge_patch(doc, patch, ri.info.kind)
            except PatchError as exc:
                raise errors.unprocessable(f"the patch could not be applied: {exc}") from None
            # A merge patch only adds keys the patch has (null deletes): only those can be unknown.
            added = _without_nulls(patch) if media == "application/merge-patch+json" else patched
            new = decode_as(target_type, ri.info, patched, opts, ri.name or "", unknown_in=added)
            if ri.subresource == "scale":
                return self._apply_scale(current, new)
            return new

        if ri.subresource == "scale":
            plain = RequestInfo(ri.info, ri.namespace, ri.name, None, False)
            return self._scale_of(await self._update(plain, compute, expected, opts))
        return await self._update(ri, compute, expected, opts)

    async def _update(
        self,
        ri: RequestInfo,
        compute: Callable[[TopLevel], Awaitable[TopLevel]],
        expected: int,
        opts: WriteOptions,
    ) -> TopLevel:
        """Compare-and-swap an update: once against ``expected`` if the client named a version,
        otherwise retried against the latest (the client did not ask for optimistic concurrency)."""
        info = ri.info
        assert ri.name is not None
        attempts = 1 if expected else 16
        for attempt in range(attempts):
            current = await self.storage.get(info, ri.namespace, ri.name)
            current_rv = int(meta(current).resource_version or 0)
            if expected and expected != current_rv:
                raise errors.conflict(info.plural, ri.name, errors.STALE, info.group)
            if opts.guard is not None:
                opts.guard(current)
            proposed = await compute(clone(current))
            undo = finish = None
            hook = self.update_hooks.get(info.kind) if ri.subresource is None else None
            if hook is not None:
                undo, finish = await hook(current, proposed)
            try:
                new = self._prepare_update(ri, proposed, current)
                if opts.guard_update is not None:
                    opts.guard_update(new, current)
                if attempt == 0:
                    opts.warnings.extend(self.pod_security.workload_warnings(new, current))
                unchanged = encode(new) == encode(current)
                if unchanged or opts.dry_run:
                    if undo is not None:
                        await undo()
                    return current if unchanged else new
                updated = await self.storage.update(info, new, current_rv)
            except errors.APIError as exc:
                if undo is not None:
                    await undo()
                if exc.status.reason == "Conflict" and not expected and attempt + 1 < attempts:
                    continue
                raise
            if finish is not None:
                await finish()
            if self._finalized(updated):
                return await self._delete_now(info, updated)
            return updated
        raise errors.conflict(info.plural, ri.name, errors.STALE, info.group)

    def _prepare_update(self, ri: RequestInfo, new: TopLevel, old: TopLevel) -> TopLevel:
        info = ri.info
        nm, om = meta(new), meta(old)
        if nm.name and nm.name != om.name:
            raise errors.bad_request(
                f"the name of the object ({nm.name}) does not match the name on the URL ({om.name})"
            )
        if info.namespaced and nm.namespace and nm.namespace != om.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if ri.subresource in ("status", "finalize"):
            result = clone(old)
            if ri.subresource == "status":
                result.status = new.status  # type: ignore[attr-defined]
            else:
                result.spec.finalizers = new.spec.finalizers  # type: ignore[attr-defined]
            new = result
        else:
            if info.has_status and ri.subresource is None:
                new.status = clone(old.status)  # type: ignore[attr-defined]
            nm.name, nm.namespace = om.name, om.namespace
            nm.uid, nm.creation_timestamp = om.uid, om.creation_timestamp
            nm.deletion_timestamp = om.deletion_timestamp
            nm.deletion_grace_period_seconds = om.deletion_grace_period_seconds
            nm.generate_name = nm.generate_name or om.generate_name
            nm.managed_fields = None
            nm.self_link = None
            nm.generation = om.generation
            if om.deletion_timestamp is not None and set(nm.finalizers or ()) - set(om.finalizers or ()):
                raise errors.forbidden(
                    "no new finalizers can be added if the object is being deleted", info.plural, om.name
                )
        nm = meta(new)
        nm.resource_version = om.resource_version
        apply_defaults(new)
        spec_new, spec_old = getattr(new, "spec", None), getattr(old, "spec", None)
        if (info.tracks_generation or isinstance(new, Pod)) and spec_new != spec_old:
            nm.generation = (om.generation or 1) + 1
        errs = validation.validate_update(new, old, info)
        if errs:
            raise errors.invalid(info.kind, om.name or "", errs, info.group)
        return new

    def _finalized(self, obj: TopLevel) -> bool:
        """A deleting object whose last finalizer just went: now it can be removed."""
        m = meta(obj)
        if m.deletion_timestamp is None or m.finalizers:
            return False
        if isinstance(obj, Namespace):
            return not obj.spec.finalizers
        if isinstance(obj, Pod):
            # A graceful pod deletion is finished by its node agent (a delete with grace 0, which
            # leaves deletionGracePeriodSeconds at 0 while finalizers are pending).
            return (
                obj.spec.node_name is None
                or obj.status.phase in ("Succeeded", "Failed")
                or m.deletion_grace_period_seconds == 0
            )
        return True

    # --- subresources ---------------------------------------------------------------------------

    def _scale_of(self, obj: TopLevel) -> Scale:
        assert isinstance(obj, ReplicationController)
        m = obj.metadata
        return Scale(
            metadata=ObjectMeta(
                name=m.name,
                namespace=m.namespace,
                uid=m.uid,
                resource_version=m.resource_version,
                creation_timestamp=m.creation_timestamp,
            ),
            spec=ScaleSpec(replicas=obj.spec.replicas),
            status=ScaleStatus(replicas=obj.status.replicas, selector=str(from_set(obj.spec.selector))),
        )

    def _apply_scale(self, current: TopLevel, scale: TopLevel) -> TopLevel:
        assert isinstance(current, ReplicationController) and isinstance(scale, Scale)
        if scale.spec.replicas is None or scale.spec.replicas < 0:
            raise errors.invalid(
                "Scale",
                current.metadata.name or "",
                [
                    validation.invalid(
                        "spec.replicas", scale.spec.replicas, "must be greater than or equal to 0"
                    )
                ],
                "autoscaling",
            )
        current.spec.replicas = scale.spec.replicas
        return current

    async def get_scale(self, ri: RequestInfo) -> Scale:
        return self._scale_of(await self.get(ri))

    async def replace_scale(self, ri: RequestInfo, raw: Any, opts: WriteOptions) -> Scale:
        scale = decode_as(Scale, ri.info, raw, opts, ri.name or "")
        expected = parse_rv(meta(scale).resource_version)

        async def compute(current: TopLevel) -> TopLevel:
            return self._apply_scale(current, scale)

        plain = RequestInfo(ri.info, ri.namespace, ri.name, None, False)
        return self._scale_of(await self._update(plain, compute, expected, opts))

    async def bind(self, ri: RequestInfo, raw: Any, opts: WriteOptions) -> TopLevel:
        """``pods/{name}/binding``: set spec.nodeName once; a second bind is a 409."""
        binding = decode_as(Binding, ri.info, raw, opts, ri.name or "")
        name = ri.name or binding.metadata.name or ""
        node = binding.target.name
        if not node:
            raise errors.invalid("Binding", name, [validation.required("target.name")])

        async def mutate(pod: TopLevel) -> TopLevel:
            assert isinstance(pod, Pod)
            if pod.metadata.deletion_timestamp is not None:
                raise errors.conflict(
                    "pods/binding", name, "pod is being deleted, cannot be assigned to a host"
                )
            if pod.spec.node_name:
                raise errors.conflict(
                    "pods/binding", name, f'pod {name} is already assigned to node "{pod.spec.node_name}"'
                )
            pod.spec.node_name = node
            conditions = [c for c in pod.status.conditions or () if c.type != "PodScheduled"]
            conditions.append(PodCondition(type="PodScheduled", status="True", last_transition_time=now()))
            pod.status.conditions = conditions
            return pod

        await self.storage.guaranteed_update(ri.info, ri.namespace, name, mutate)
        return errors.success(code=201)

    async def evict(self, ri: RequestInfo, raw: Any, opts: WriteOptions) -> TopLevel:
        """``pods/{name}/eviction`` (policy/v1 Eviction): a graceful delete of the pod with the
        Eviction's deleteOptions. Kubernetes checks PodDisruptionBudgets first and may answer 429;
        peapod has no PodDisruptionBudgets, so an eviction is always allowed."""
        eviction = decode_as(Eviction, ri.info, raw, opts, ri.name or "")
        if eviction.metadata.name and eviction.metadata.name != ri.name:
            raise errors.bad_request(
                f"name in URL does not match name in Eviction object: {ri.name} != {eviction.metadata.name}"
            )
        if eviction.metadata.namespace and eviction.metadata.namespace != ri.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        options = eviction.delete_options or DeleteOptions()
        if options.dry_run:
            opts.dry_run = options.dry_run == ["All"] or opts.dry_run
        pod = RequestInfo(ri.info, ri.namespace, ri.name, None, False)
        await self.delete(pod, options, opts)
        return errors.success(code=201)

    # --- delete ---------------------------------------------------------------------------------

    async def delete(self, ri: RequestInfo, options: DeleteOptions, opts: WriteOptions) -> TopLevel:
        assert ri.name is not None
        validate_delete_options(options)
        if ri.info.kind == "Namespace" and ri.name in PROTECTED_NAMESPACES:
            raise errors.forbidden(
                f'namespaces "{ri.name}" is forbidden: this namespace may not be deleted',
                "namespaces",
                ri.name,
            )
        for _ in range(16):
            obj = await self.storage.get(ri.info, ri.namespace, ri.name)
            if opts.guard is not None:
                opts.guard(obj)
            self._check_preconditions(ri.info, obj, options)
            try:
                return await self._delete_object(ri.info, obj, options, opts)
            except errors.APIError as exc:
                if exc.status.reason != "Conflict" or (
                    options.preconditions and options.preconditions.resource_version
                ):
                    raise
        raise errors.conflict(ri.info.plural, ri.name, errors.STALE, ri.info.group)

    def _check_preconditions(self, info: ResourceInfo, obj: TopLevel, options: DeleteOptions) -> None:
        pre = options.preconditions
        if pre is None:
            return
        m = meta(obj)
        if pre.uid and pre.uid != m.uid:
            raise errors.conflict(
                info.plural,
                m.name or "",
                f"Precondition failed: UID in precondition: {pre.uid}, UID in object meta: {m.uid}",
                info.group,
            )
        if pre.resource_version and pre.resource_version != m.resource_version:
            raise errors.conflict(
                info.plural,
                m.name or "",
                f"Precondition failed: ResourceVersion in precondition: {pre.resource_version}, "
                f"ResourceVersion in object meta: {m.resource_version}",
                info.group,
            )

    async def _delete_object(
        self, info: ResourceInfo, obj: TopLevel, options: DeleteOptions, opts: WriteOptions
    ) -> TopLevel:
        m = meta(obj)
        rv = int(m.resource_version or 0)
        grace = options.grace_period_seconds
        if grace is not None and grace < 0:
            raise errors.invalid(
                info.kind, m.name or "", [validation.invalid("gracePeriodSeconds", grace, "must be >= 0")]
            )
        graceful = (
            isinstance(obj, Pod)
            and obj.spec.node_name is not None
            and obj.status.phase not in ("Succeeded", "Failed")
        )
        if graceful:
            assert isinstance(obj, Pod)
            if grace is None:
                grace = obj.spec.termination_grace_period_seconds or 0
            if m.deletion_timestamp is not None and (m.deletion_grace_period_seconds or 0) > 0:
                # A graceful deletion is under way: it can only be shortened, and (as in Kubernetes)
                # its finalizers no longer follow the delete options.
                if grace >= (m.deletion_grace_period_seconds or 0):
                    return obj
                if grace == 0 and not m.finalizers:
                    return obj if opts.dry_run else await self._delete_now(info, obj)
                m.deletion_timestamp = now() if grace == 0 else _time_after(grace)
                m.deletion_grace_period_seconds = grace
                return obj if opts.dry_run else await self.storage.update(info, obj, rv)
            if grace > 0:
                m.finalizers = gc_finalizers(info, m.finalizers, options) or None
                m.deletion_timestamp = _time_after(grace)
                m.deletion_grace_period_seconds = grace
                return obj if opts.dry_run else await self.storage.update(info, obj, rv)
        finalizers = gc_finalizers(info, m.finalizers, options)
        changed = set(finalizers) != set(m.finalizers or ())
        pending = bool(finalizers)
        if isinstance(obj, Namespace):
            pending = pending or bool(obj.spec.finalizers)
            if pending and obj.status.phase != "Terminating":
                obj.status.phase = "Terminating"
                changed = True
        if pending:
            if m.deletion_timestamp is not None and not changed:
                return obj
            m.finalizers = finalizers or None
            m.deletion_timestamp = m.deletion_timestamp or now()
            m.deletion_grace_period_seconds = m.deletion_grace_period_seconds or 0
            return obj if opts.dry_run else await self.storage.update(info, obj, rv)
        if opts.dry_run:
            return obj
        return await self._delete_now(info, obj)

    async def _delete_now(self, info: ResourceInfo, obj: TopLevel) -> TopLevel:
        deleted = await self.storage.delete(info, obj, int(meta(obj).resource_version or 0))
        hook = self.delete_hooks.get(info.kind)
        if hook is not None:
            await hook(deleted)
        return deleted

    async def delete_collection(
        self, ri: RequestInfo, q: ListQuery, options: DeleteOptions, opts: WriteOptions
    ) -> builtins.list[TopLevel]:
        if ri.info.kind == "Namespace":  # as in kube-apiserver: a protected namespace would stop it halfway
            raise errors.method_not_allowed("deletecollection", ri.info.plural)
        validate_delete_options(options)
        _, items, _ = await self.list(ri, q)
        out = []
        for obj in items:
            one = RequestInfo(ri.info, meta(obj).namespace, meta(obj).name, None, False)
            try:
                out.append(await self.delete(one, options, opts))
            except errors.APIError as exc:
                if exc.status.reason != "NotFound":
                    raise
        return out


PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
# Kinds the garbage collector does not watch (Events are neither owners nor worth a cache): they never
# get its finalizers, which nothing would remove.
_NOT_COLLECTED = frozenset({"Event"})


def validate_delete_options(options: DeleteOptions) -> None:
    """kube-apiserver's ValidateDeleteOptions: a 422 on the DeleteOptions kind naming the field."""
    errs = []
    if options.orphan_dependents is not None and options.propagation_policy is not None:
        errs.append(
            validation.invalid(
                "propagationPolicy",
                options.propagation_policy,
                "orphanDependents and deletionPropagation cannot be both set",
            )
        )
    if options.propagation_policy is not None and options.propagation_policy not in PROPAGATION_POLICIES:
        errs.append(
            validation.not_supported(
                "propagationPolicy", options.propagation_policy, [*PROPAGATION_POLICIES, "nil"]
            )
        )
    if errs:
        raise errors.invalid("DeleteOptions", "", errs, "meta.k8s.io")


def propagation_policy(options: DeleteOptions) -> str | None:
    """The policy the options ask for, the deprecated ``orphanDependents`` included; None: unsaid."""
    if options.orphan_dependents is not None:
        return "Orphan" if options.orphan_dependents else "Background"
    return options.propagation_policy


def gc_finalizers(info: ResourceInfo, finalizers: list[str] | None, options: DeleteOptions) -> list[str]:
    """The finalizers a deleted object gets (kube-apiserver's deletionFinalizersForGarbageCollection):
    ``orphan`` for Orphan, ``foregroundDeletion`` for Foreground, neither for Background; with no
    policy given, whichever the object already has stays (the default policy is Background)."""
    current = list(finalizers or ())
    policy = propagation_policy(options)
    if policy is None or info.kind in _NOT_COLLECTED:
        return current
    out = [f for f in current if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if policy == "Orphan":
        out.append(ORPHAN_FINALIZER)
    elif policy == "Foreground":
        out.append(FOREGROUND_FINALIZER)
    return out


def _without_nulls(doc: Any) -> Any:
    """A merge patch without its deletions (keys set to null), recursively through objects."""
    if not isinstance(doc, dict):
        return doc
    return {k: _without_nulls(v) for k, v in doc.items() if v is not None}


_SAME: Any = object()


def decode_as(
    cls: type[Any],
    info: ResourceInfo,
    raw: Any,
    opts: WriteOptions,
    name: str = "",
    *,
    unknown_in: Any = _SAME,
) -> Any:
    """Convert plain values to ``cls`` (400 naming the field on a type error), applying the field
    validation mode to fields ``cls`` does not declare. ``unknown_in`` is where such fields can be, when
    the caller knows it is a smaller document than ``raw`` (a merge patch of an object already typed)."""
    kind = cls.__name__
    if not isinstance(raw, dict):
        raise errors.bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {kind}: '
            "the body must be a JSON or YAML object"
        )
    body_kind = raw.get("kind")
    if body_kind and body_kind != kind:
        raise errors.bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {kind}: '
            f'the object has kind "{body_kind}"'
        )
    metadata = raw.get("metadata")
    if not name and isinstance(metadata, dict):  # any other metadata fails the conversion below
        name = str(metadata.get("name") or "")
    if opts.field_validation != "Ignore":
        unknown = validation.find_unknown_fields(raw if unknown_in is _SAME else unknown_in, cls)
        if unknown and opts.field_validation == "Strict":
            raise errors.unknown_fields(kind, name, unknown, info.group if cls is info.type else "")
        opts.warnings.extend(f'unknown field "{f}"' for f in unknown)
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in text else ""
        message = text.split(" - at ", 1)[0].replace("`", "")
        status = errors.bad_request(
            f'{kind} in version "{info.version}" cannot be handled as a {kind}: '
            f"{message}" + (f" at {path}" if path else "")
        )
        if path:
            status.status.details = StatusDetails(
                kind=kind,
                name=name or None,
                causes=[StatusCause(reason="FieldValueInvalid", message=message, field=path)],
            )
        raise status from None
