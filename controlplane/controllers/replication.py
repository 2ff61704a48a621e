"""The replication manager: keeps ``spec.replicas`` pods running for every ReplicationController, as
kube-controller-manager's replication (ReplicaSet) controller does.

Concurrency model: two informers (ReplicationControllers and Pods, all namespaces) feed one
:class:`WorkQueue` of RC keys; their handlers run inline on the informers' tasks and only enqueue keys
(and note what they observed in the expectations). ``settings.workers`` workers call :meth:`sync`, which
is level-based and idempotent: it reads the caches, claims the matching pods (adopting orphans, releasing
pods whose labels no longer match), creates or deletes the difference, and writes the status. The queue
never hands one key to two workers, so a given RC is synced by one worker at a time.

Caches lag the API server, so a sync that just created pods would count them as missing the next time
round. :class:`Expectations` (Kubernetes' UIDTrackingControllerExpectations) remembers the creations and
deletions in flight per RC; ``sync`` does not create or delete again until the informer has observed all
of them (or five minutes have passed, in case an event was lost).

A deleted RC is left alone: its pods carry an ownerReference and the garbage collector deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from controlplane.api.core import (
    Pod,
    PodSpec,
    ReplicationController,
    ReplicationControllerCondition,
    ReplicationControllerStatus,
)
from controlplane.api.meta import ObjectMeta, OwnerReference, now, parse_time
from controlplane.client import ApiError, Client, Conflict, EventRecorder, Informer, NotFound, key_of
from controlplane.client.informer import InformerUse, SharedInformerFactory
from controlplane.status import condition, pod_ready
from controlplane.tasks import cancel

from .workqueue import WorkQueue, run_workers

if TYPE_CHECKING:
    from .manager import ControllerSettings

log = logging.getLogger(__name__)

#: At most this many pods are created or deleted by one sync (Kubernetes' burstReplicas).
BURST_REPLICAS = 500
#: Expectations older than this are considered satisfied: an event may have been lost.
EXPECTATIONS_TIMEOUT = 5 * 60.0
#: Pods with a lower cost are deleted first when scaling down (Kubernetes' PodDeletionCost).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REPLICA_FAILURE = "ReplicaFailure"
COMPONENT = "replication-controller"


# --- expectations --------------------------------------------------------------------------------


@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    timestamp: float = field(default_factory=time.monotonic)


class Expectations:
    """Creations (counted) and deletions (by pod key) a controller has asked for and not yet seen.

    Kubernetes' UIDTrackingControllerExpectations: deletions are tracked by pod key so that seeing the
    same deletion twice (deletionTimestamp set, then the DELETED event) counts once.
    """

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.timeout = timeout
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        """True when nothing is in flight (or the record expired): ``sync`` may create and delete."""
        exp = self._by_key.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deletes:
            return True
        return time.monotonic() - exp.timestamp > self.timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expected(adds=count)

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._by_key[key] = _Expected(deletes=set(pod_keys))

    def creation_observed(self, key: str, count: int = 1) -> None:
        """A creation was seen by the informer, or will never be (it failed or was skipped)."""
        exp = self._by_key.get(key)
        if exp is not None:
            exp.adds -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._by_key.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected; for tests and debugging."""
        exp = self._by_key.get(key)
        return (max(exp.adds, 0), len(exp.deletes)) if exp is not None else (0, 0)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


# --- pod predicates ------------------------------------------------------------------------------


def selector_of(rc: ReplicationController) -> dict[str, str]:
    """The RC's selector; an empty one means the template's labels (the API server defaults it)."""
    if rc.spec.selector:
        return rc.spec.selector
    template = rc.spec.template
    return dict((template.metadata.labels if template and template.metadata else None) or {})


def matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    """An RC's equality-based selector; an empty one matches nothing (it would match every pod)."""
    if not selector:
        return False
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


def is_active(pod: Pod) -> bool:
    """Counts towards replicas: not terminating and not finished (a Failed pod gets replaced)."""
    return pod.metadata.deletion_timestamp is None and pod.status.phase not in ("Succeeded", "Failed")


def controller_of(obj: Pod) -> OwnerReference | None:
    return next((r for r in obj.metadata.owner_references or () if r.controller), None)


def _ready_since(pod: Pod) -> dt.datetime | None:
    """When the pod became Ready, or None if it is not Ready."""
    for cond in pod.status.conditions or ():
        if cond.type == "Ready":
            if cond.status != "True":
                return None
            if cond.last_transition_time:
                with contextlib.suppress(ValueError):
                    return parse_time(cond.last_transition_time)
            return dt.datetime.min.replace(tzinfo=dt.UTC)
    return None


def _restarts(pod: Pod) -> int:
    return max((s.restart_count for s in pod.status.container_statuses or ()), default=0)


def _deletion_cost(pod: Pod) -> int:
    value = (pod.metadata.annotations or {}).get(DELETION_COST)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}
_NEVER = float("inf")


def deletion_order(pod: Pod) -> tuple[Any, ...]:
    """Sort key putting the pods to delete first (Kubernetes' ActivePods ordering): unscheduled before
    scheduled, Pending before Unknown before Running, not ready before ready, lower deletion cost first,
    ready for less time first, more restarts first, newer before older."""
    ready = _ready_since(pod)
    created = pod.metadata.creation_timestamp
    created_at = parse_time(created).timestamp() if created else _NEVER
    return (
        1 if pod.spec.node_name else 0,
        _PHASE_ORDER.get(pod.status.phase or "Pending", 3),
        1 if ready is not None else 0,
        _deletion_cost(pod),
        -(ready.timestamp() if ready is not None else 0.0),
        -_restarts(pod),
        -created_at,
        pod.metadata.name or "",
    )


# --- the controller ------------------------------------------------------------------------------


class _NamespaceTerminating(Exception):
    """Creating in a terminating namespace: not a failure worth retrying, the RC is about to go."""


class ReplicationManager:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        factory = informers or SharedInformerFactory(client)
        self.rc_informer: Informer[ReplicationController] = factory.informer(ReplicationController)
        self.pod_informer: Informer[Pod] = factory.informer(Pod)
        self.queue = WorkQueue()
        self.expectations = Expectations()
        self.recorder = EventRecorder(client, COMPONENT)
        self.burst = BURST_REPLICAS
        # Pods by namespace, kept by the handlers, so a sync looks only at its own namespace.
        self._pods: dict[str, dict[str, Pod]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._use = InformerUse(
            self, (self.rc_informer, self.pod_informer), self._subscribe, private=informers is None
        )

    def _subscribe(self) -> None:
        self.rc_informer.on_add(self._rc_added, owner=self)
        self.rc_informer.on_update(self._rc_updated, owner=self)
        self.rc_informer.on_delete(self._rc_deleted, owner=self)
        self.pod_informer.on_add(self._pod_added, owner=self)
        self.pod_informer.on_update(self._pod_updated, owner=self)
        self.pod_informer.on_delete(self._pod_deleted, owner=self)

    async def start(self) -> None:
        self._use.start()
        try:
            # No worker before both caches are filled: an empty pod cache would look like 0 replicas.
            await asyncio.gather(self.rc_informer.wait_synced(), self.pod_informer.wait_synced())
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(
            asyncio.create_task(
                run_workers(self.queue, self.sync, max(1, self.settings.workers), "replication"),
                name="replication-workers",
            )
        )

    async def stop(self) -> None:
        """Idempotent: the workers, then the informers, then events still being recorded."""
        self.queue.shutdown()
        await cancel(self._tasks)
        self._tasks.clear()
        await self._use.stop()
        await cancel(list(self._background))
        self._background.clear()

    # --- event handlers: note observations, enqueue keys -----------------------------------------

    def _rc_added(self, rc: ReplicationController) -> None:
        self.queue.add(key_of(rc))

    def _rc_updated(self, old: ReplicationController, new: ReplicationController) -> None:
        if old.metadata.uid != new.metadata.uid:
            # Deleted and re-created under the same name while we were not looking.
            self.expectations.forget(key_of(old))
        self.queue.add(key_of(new))

    def _rc_deleted(self, rc: ReplicationController) -> None:
        self.expectations.forget(key_of(rc))
        self.queue.add(key_of(rc))

    def _owner_key(self, pod: Pod, ref: OwnerReference | None) -> str | None:
        """The key of the RC a controller reference points to, if it is one we know (same uid)."""
        if ref is None or ref.kind != "ReplicationController" or ref.api_version != "v1":
            return None
        key = f"{pod.metadata.namespace}/{ref.name}"
        rc = self.rc_informer.get(key)
        return key if rc is not None and rc.metadata.uid == ref.uid else None

    def _matching_rcs(self, pod: Pod) -> list[str]:
        """Every RC in the pod's namespace whose selector matches it: candidates to adopt an orphan."""
        ns = pod.metadata.namespace
        return [
            key_of(rc)
            for rc in self.rc_informer.items()
            if rc.metadata.namespace == ns and matches(selector_of(rc), pod.metadata.labels)
        ]

    def _index(self, pod: Pod) -> None:
        self._pods.setdefault(pod.metadata.namespace or "", {})[key_of(pod)] = pod

    def _unindex(self, pod: Pod) -> None:
        pods = self._pods.get(pod.metadata.namespace or "")
        if pods is not None:
            pods.pop(key_of(pod), None)
            if not pods:
                self._pods.pop(pod.metadata.namespace or "", None)

    def _pod_added(self, pod: Pod) -> None:
        self._index(pod)
        if pod.metadata.deletion_timestamp is not None:
            # Seen for the first time already terminating (e.g. after a re-list): a deletion.
            self._observe_deletion(pod)
            return
        owner = self._owner_key(pod, controller_of(pod))
        if owner is not None:
            self.expectations.creation_observed(owner)
            self.queue.add(owner)
        elif controller_of(pod) is None:
            for key in self._matching_rcs(pod):
                self.queue.add(key)

    def _pod_updated(self, old: Pod, new: Pod) -> None:
        self._index(new)
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        labels_changed = old.metadata.labels != new.metadata.labels
        if new.metadata.deletion_timestamp is not None:
            self._observe_deletion(new)
            if labels_changed:
                self._observe_deletion(old)
            return
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref != new_ref and old_ref is not None:
            # Released or taken over: the old owner has one pod fewer.
            old_owner = self._owner_key(old, old_ref)
            if old_owner is not None:
                self.queue.add(old_owner)
        owner = self._owner_key(new, new_ref)
        if owner is not None:
            self.queue.add(owner)
        elif new_ref is None and (labels_changed or old_ref is not None):
            for key in {*self._matching_rcs(old), *self._matching_rcs(new)}:
                self.queue.add(key)

    def _pod_deleted(self, pod: Pod) -> None:
        self._unindex(pod)
        self._observe_deletion(pod)

    def _observe_deletion(self, pod: Pod) -> None:
        owner = self._owner_key(pod, controller_of(pod))
        if owner is not None:
            self.expectations.deletion_observed(owner, key_of(pod))
            self.queue.add(owner)

    # --- sync ------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """Bring one RC's pods and status in line with its spec, from the caches."""
        rc = self.rc_informer.get(key)
        if rc is None:
            self.expectations.forget(key)
            return
        # Read before looking at the pods: an observation arriving meanwhile can only make us wait.
        satisfied = self.expectations.satisfied(key)
        namespace = rc.metadata.namespace or ""
        active = [p for p in self._pods.get(namespace, {}).values() if is_active(p)]
        claimed = await self._claim(rc, active)
        error: Exception | None = None
        failure_reason = ""
        if satisfied and rc.metadata.deletion_timestamp is None:
            try:
                await self._manage(rc, claimed)
            except _ManageError as exc:
                error, failure_reason = exc.cause, exc.reason
        await self._update_status(rc, claimed, error, failure_reason)
        if error is not None:
            raise error

    async def _claim(self, rc: ReplicationController, pods: list[Pod]) -> list[Pod]:
        """ControllerRefManager.ClaimPods: the active pods this RC owns and that still match, after
        adopting matching orphans and releasing owned pods that no longer match."""
        selector = selector_of(rc)
        uid = rc.metadata.uid
        deleting = rc.metadata.deletion_timestamp is not None
        claimed: list[Pod] = []
        to_adopt: list[Pod] = []
        to_release: list[Pod] = []
        for pod in pods:
            ref = controller_of(pod)
            match = matches(selector, pod.metadata.labels)
            if ref is not None:
                if ref.uid != uid:
                    continue
                if match:
                    claimed.append(pod)
                elif not deleting:
                    to_release.append(pod)
            elif match and not deleting:
                to_adopt.append(pod)
        errors: list[Exception] = []
        if to_release:
            released = await asyncio.gather(
                *(self._release(rc, p) for p in to_release), return_exceptions=True
            )
            errors += [r for r in released if isinstance(r, Exception)]
        if to_adopt and await self._can_adopt(rc):
            adopted = await asyncio.gather(*(self._adopt(rc, p) for p in to_adopt), return_exceptions=True)
            for r in adopted:
                if isinstance(r, Pod):
                    claimed.append(r)
                elif isinstance(r, Exception):
                    errors.append(r)
        if errors:
            raise errors[0]
        return claimed

    async def _can_adopt(self, rc: ReplicationController) -> bool:
        """A live read, not the cache: never adopt for an RC that was just deleted or re-created."""
        try:
            fresh = await self.client.get(
                ReplicationController, rc.metadata.name or "", rc.metadata.namespace
            )
        except NotFound:
            return False
        return fresh.metadata.uid == rc.metadata.uid and fresh.metadata.deletion_timestamp is None

    async def _adopt(self, rc: ReplicationController, pod: Pod) -> Pod | None:
        """Add our controller reference; the ``test`` ops make it apply only to this very pod (uid), and
        the API server refuses a second controller reference."""
        ref = msgspec.to_builtins(owner_reference(rc))
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid}]
        if pod.metadata.owner_references:
            ops.append({"op": "add", "path": "/metadata/ownerReferences/-", "value": ref})
        else:
            ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [ref]})
        try:
            return await self.client.patch(
                Pod, pod.metadata.name or "", ops, pod.metadata.namespace, patch_type="json"
            )
        except NotFound:
            return None

    async def _release(self, rc: ReplicationController, pod: Pod) -> None:
        """Remove only our reference, and only from this pod (uid) if it still has it there."""
        refs = pod.metadata.owner_references or []
        index = next((i for i, r in enumerate(refs) if r.uid == rc.metadata.uid), None)
        if index is None:
            return
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
            {"op": "test", "path": f"/metadata/ownerReferences/{index}/uid", "value": rc.metadata.uid},
        ]
        if len(refs) == 1:
            ops.append({"op": "remove", "path": "/metadata/ownerReferences"})
        else:
            ops.append({"op": "remove", "path": f"/metadata/ownerReferences/{index}"})
        try:
            await self.client.patch(
                Pod, pod.metadata.name or "", ops, pod.metadata.namespace, patch_type="json"
            )
        except NotFound:
            pass
        except ApiError as exc:
            # 422: a failed test, i.e. the pod was re-created or no longer has our reference; either
            # way it is not ours to release.
            if exc.code != 422:
                raise

    async def _manage(self, rc: ReplicationController, pods: list[Pod]) -> None:
        key = key_of(rc)
        desired = rc.spec.replicas if rc.spec.replicas is not None else 1
        diff = len(pods) - desired
        if diff < 0:
            count = min(-diff, self.burst)
            # Expect them all before the first request: the informer may see a pod before its create returns.
            self.expectations.expect_creations(key, count)
            created, error = await slow_start(count, lambda: self._create(rc))
            if created < count:
                # Failed and skipped creations will never be observed.
                self.expectations.creation_observed(key, count - created)
            if error is not None and not isinstance(error, _NamespaceTerminating):
                raise _ManageError(error, "FailedCreate")
        elif diff > 0:
            victims = sorted(pods, key=deletion_order)[: min(diff, self.burst)]
            self.expectations.expect_deletions(key, [key_of(p) for p in victims])
            errors = await gather_failures(self._delete(rc, p) for p in victims)
            if errors:
                raise _ManageError(errors[0], "FailedDelete")

    async def _create(self, rc: ReplicationController) -> None:
        try:
            pod = await self.client.create(pod_from_template(rc), rc.metadata.namespace)
        except ApiError as exc:
            if exc.code == 403 and "being terminated" in str(exc):
                raise _NamespaceTerminating(str(exc)) from exc
            self._event(rc, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        self._event(rc, "Normal", "SuccessfulCreate", f"Created pod: {pod.metadata.name}")

    async def _delete(self, rc: ReplicationController, pod: Pod) -> None:
        name = pod.metadata.name or ""
        try:
            await self.client.delete(Pod, name, pod.metadata.namespace, uid=pod.metadata.uid)
        except Exception as exc:
            # This deletion will never be observed (or already was): stop waiting for it.
            self.expectations.deletion_observed(key_of(rc), key_of(pod))
            if isinstance(exc, NotFound):
                return
            if isinstance(exc, ApiError):
                self._event(rc, "Warning", "FailedDelete", f"Error deleting: {exc}")
            raise
        self._event(rc, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    def _event(self, rc: ReplicationController, type_: str, reason: str, message: str) -> None:
        """Events are best effort and must not slow the pods down: record them in the background."""
        task = asyncio.create_task(self.recorder.record(rc, type_, reason, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- status ----------------------------------------------------------------------------------

    async def _update_status(
        self, rc: ReplicationController, pods: list[Pod], error: Exception | None, reason: str
    ) -> None:
        status = calculate_status(rc, pods, error, reason)
        min_ready = rc.spec.min_ready_seconds or 0
        if min_ready > 0:
            wait = until_available(pods, min_ready)
            if wait is not None:
                self.queue.add_after(key_of(rc), wait + 0.05)
        if status == rc.status:
            return
        current = rc
        for attempt in range(2):
            updated = msgspec.structs.replace(current, status=status)
            try:
                await self.client.replace_status(updated)
                return
            except NotFound:
                return
            except Conflict:
                if attempt == 1:
                    raise
                current = await self.client.get(
                    ReplicationController, rc.metadata.name or "", rc.metadata.namespace
                )
                if current.metadata.uid != rc.metadata.uid:
                    return


class _ManageError(Exception):
    def __init__(self, cause: Exception, reason: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.reason = reason


async def gather_failures(calls: Iterable[Awaitable[None]]) -> list[Exception]:
    """Run the calls in parallel and return their failures; a cancellation still propagates."""
    errors: list[Exception] = []
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, Exception):
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
    return errors


async def slow_start(count: int, create: Callable[[], Awaitable[None]]) -> tuple[int, Exception | None]:
    """Run ``create`` ``count`` times in batches of 1, 2, 4, ... in parallel, stopping after the first
    batch with a failure, so a quota or admission error costs one request rather than hundreds.
    Returns (successes, first error)."""
    done, batch = 0, min(count, 1)
    successes = 0
    while batch > 0:
        errors = await gather_failures(create() for _ in range(batch))
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        done += batch
        batch = min(2 * batch, count - done)
    return successes, None


def owner_reference(rc: ReplicationController) -> OwnerReference:
    return OwnerReference(
        api_version="v1",
        kind="ReplicationController",
        name=rc.metadata.name or "",
        uid=rc.metadata.uid or "",
        controller=True,
        block_owner_deletion=True,
    )


def pod_from_template(rc: ReplicationController) -> Pod:
    """A new pod from the RC's template, named ``<rc>-xxxxx`` by the API server and owned by the RC."""
    template = rc.spec.template
    tmeta = template.metadata if template is not None and template.metadata is not None else ObjectMeta()
    spec = template.spec if template is not None and template.spec is not None else PodSpec()
    return Pod(
        metadata=ObjectMeta(
            generate_name=f"{rc.metadata.name}-",
            namespace=rc.metadata.namespace,
            labels=dict(tmeta.labels) if tmeta.labels else None,
            annotations=dict(tmeta.annotations) if tmeta.annotations else None,
            finalizers=list(tmeta.finalizers) if tmeta.finalizers else None,
            owner_references=[owner_reference(rc)],
        ),
        spec=copy.deepcopy(spec),
    )


def _available(pod: Pod, min_ready: int, at: dt.datetime) -> bool:
    since = _ready_since(pod)
    if since is None:
        return False
    return min_ready <= 0 or since + dt.timedelta(seconds=min_ready) < at


def until_available(pods: list[Pod], min_ready: int) -> float | None:
    """Seconds until the next Ready pod becomes available, None if none is waiting."""
    at = dt.datetime.now(dt.UTC)
    waits = [
        (since + dt.timedelta(seconds=min_ready) - at).total_seconds()
        for p in pods
        if (since := _ready_since(p)) is not None and not _available(p, min_ready, at)
    ]
    return max(min(waits), 0.0) if waits else None


def calculate_status(
    rc: ReplicationController, pods: list[Pod], error: Exception | None, reason: str
) -> ReplicationControllerStatus:
    """The status Kubernetes' calculateStatus writes, from the claimed active pods."""
    template = rc.spec.template
    template_labels = (template.metadata.labels if template and template.metadata else None) or {}
    at = dt.datetime.now(dt.UTC)
    min_ready = rc.spec.min_ready_seconds or 0
    fully = sum(
        1 for p in pods if all((p.metadata.labels or {}).get(k) == v for k, v in template_labels.items())
    )
    ready = sum(1 for p in pods if pod_ready(p))
    available = sum(1 for p in pods if _available(p, min_ready, at))
    conditions = [c for c in rc.status.conditions or () if c.type != REPLICA_FAILURE]
    failure = condition(rc.status.conditions, REPLICA_FAILURE)
    if error is not None:
        conditions.append(
            failure
            or ReplicationControllerCondition(
                type=REPLICA_FAILURE,
                status="True",
                last_transition_time=now(),
                reason=reason,
                message=str(error),
            )
        )
    return ReplicationControllerStatus(
        replicas=len(pods),
        fully_labeled_replicas=fully,
        ready_replicas=ready,
        available_replicas=available,
        observed_generation=rc.metadata.generation,
        conditions=conditions or None,
    )
