"""Following a directory of manifests: the cluster holds what the folder says (``pea apply -f DIR
--watch`` and ``pea controlplane --manifests DIR``, like k3s's manifests folder plus Flux's prune).

Design. :class:`DirectorySync` owns one directory. A *sync* reads every ``*.yaml``/``*.yml``/``*.json``
under it (recursively, with :mod:`manifests`' rules for hidden and editor files), applies what changed
with the same three-way client-side apply as ``pea apply`` (:func:`apply_one`), then prunes. Every
sync re-reads and re-parses all files (cheap, local) so the desired set is always whole, but only files
whose content changed since their last successful apply are sent to the server; a *full* sync (at
start, and every ``self_heal`` seconds when asked) applies everything, which reverts hand edits of
fields the manifests set while leaving fields they do not set (an allocated clusterIP, replicas set by
``pea scale``) alone. :meth:`run` triggers syncs from ``watchfiles.awatch`` (debounced).

Ownership. Each applied object gets the label ``peapod.io/manifest-dir: <id>`` (``id``: a short hash
of the directory's absolute path, or a name given) and the annotation ``peapod.io/manifest-source``
naming its file relative to the directory. Both go through the apply itself, so renaming a file only
patches the annotation: same object, same uid.

A file is all-or-nothing: each of its objects is first applied as a server dry run; only when all of
them pass is the file applied for real (objects in a namespace this same sync creates cannot be dry
run and are checked by the real apply only; a refusal there, or a race, is reported per object and the
file's other objects may already be applied). Files are applied together in :func:`sort_for_apply`
order, so a namespace in ``z.yaml`` still comes before a configmap in it from ``a.yaml``.

Prune deletes the objects carrying this directory's label and a source annotation (what a follower
applied: the endpoints controller copies a Service's labels onto its Endpoints) that no file defines any
more, workloads first and namespaces last, tolerating NotFound, with a uid precondition so a recreated
object is left alone. Never pruned: objects annotated ``peapod.io/prune: "false"``; what a failing file
applied last time (remembered per file, and found by the live source annotation after a restart);
anything at all when the directory is missing, unreadable or holds no objects (a warning is printed
instead).

Status: one line per sync on ``out`` (``sync: 3 applied, 5 unchanged, 1 pruned, 1 failed``; "failed"
counts files currently failing), one error line per failure on ``err``, and Events in the cluster
(``Applied``, ``Pruned``, ``ApplyFailed``; component ``pea-manifests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec

from controlplane.api.core import ObjectReference
from controlplane.api.registry import RESOURCES, ResourceInfo

from .apply import ApplyError, ApplyOptions, apply_one
from .client import Client, path_for
from .errors import ClientError, Conflict, NotFound
from .events import EventRecorder
from .manifests import (
    EXTENSIONS,
    Manifest,
    ManifestError,
    ignored,
    parse,
    read_text,
    resolve_namespace,
    resource_info,
    sort_for_apply,
    walk,
)

__all__ = [
    "COMPONENT",
    "DIR_LABEL",
    "PRUNE_ANNOTATION",
    "SOURCE_ANNOTATION",
    "DirectorySync",
    "SyncResult",
    "directory_id",
]

log = logging.getLogger(__name__)

DIR_LABEL = "peapod.io/manifest-dir"
SOURCE_ANNOTATION = "peapod.io/manifest-source"
PRUNE_ANNOTATION = "peapod.io/prune"
COMPONENT = "pea-manifests"

# (kind, namespace or "", name): what an object is, independent of its file.
Key = tuple[str, str, str]

_RANK = {"Namespace": 0, "ConfigMap": 1, "Secret": 1, "Service": 2}


def directory_id(path: str | Path) -> str:
    """A short stable id for a directory: the same folder gets the same label across restarts."""
    absolute = str(Path(path).expanduser().resolve())
    return hashlib.sha256(absolute.encode()).hexdigest()[:12]


def _valid_label_value(value: str) -> bool:
    if not value or len(value) > 63 or not (value[0].isalnum() and value[-1].isalnum()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)


@dataclass
class _FileState:
    """What a file did last time: its content digest, the objects it applied, whether it failed and
    whether the failure is worth retrying (a server refusal may pass later; a parse error will not)."""

    digest: str
    keys: set[Key]
    ok: bool = True
    retry: bool = False
    error: str = ""


@dataclass
class SyncResult:
    """The counts of one sync, as printed in its summary line."""

    applied: int = 0
    unchanged: int = 0
    pruned: int = 0
    failed: int = 0
    guarded: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"sync: {self.applied} applied, {self.unchanged} unchanged, "
            f"{self.pruned} pruned, {self.failed} failed"
        )


@dataclass
class _File:
    """One file as read in this sync: its objects (stamped with our label) or why it cannot be used."""

    rel: str
    source: str
    digest: str
    manifests: list[tuple[Manifest, ResourceInfo, Key]] = field(default_factory=list)
    error: str | None = None


class DirectorySync:
    """Keeps the cluster matching one directory of manifests; see the module docstring.

    ``format_error(exc, context)`` turns an exception into one line (``tui.printers.error_line``);
    ``out`` gets the summary lines, ``err`` the errors and warnings."""

    def __init__(
        self,
        client: Client,
        directory: str | Path,
        *,
        options: ApplyOptions | None = None,
        prune: bool = True,
        self_heal: float | None = None,
        manifest_id: str | None = None,
        debounce_ms: int = 300,
        retry_seconds: float = 10.0,
        out: TextIO | None = None,
        err: TextIO | None = None,
        format_error: Callable[[BaseException, str | None], str] | None = None,
    ) -> None:
        if manifest_id is not None and not _valid_label_value(manifest_id):
            raise ValueError(
                f'invalid manifest id "{manifest_id}": use at most 63 letters, digits, "-", "_" or ".", '
                "starting and ending with a letter or digit"
            )
        if self_heal is not None and self_heal <= 0:
            raise ValueError("the self-heal interval must be more than 0 seconds")
        self.client = client
        self.root = Path(directory)
        self.id = manifest_id or directory_id(self.root)
        self.options = options or ApplyOptions()
        self.prune = prune
        self.self_heal = self_heal
        self.debounce_ms = debounce_ms
        self.retry_seconds = retry_seconds
        self.out = out
        self.err = err
        self._format = format_error or (
            lambda exc, context: f"error: {context + ': ' if context else ''}{exc}"
        )
        self.recorder = EventRecorder(client, COMPONENT)
        self._files: dict[str, _FileState] = {}
        self._dirty = asyncio.Event()
        self._last_failure = ""

    @property
    def selector(self) -> str:
        """The label selector of every object this directory applied."""
        return f"{DIR_LABEL}={self.id}"

    # --- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """A full sync, then a sync after every change (and a full one every ``self_heal`` seconds)
        until ``stop`` is set or the task is cancelled."""
        stop = stop or asyncio.Event()
        # The watcher's own stop: awatch sets the event it is given when cancelled, and the
        # caller's ``stop`` is not ours to set.
        halt = asyncio.Event()
        watcher = asyncio.create_task(self._watch(halt))
        try:
            retry = not await self._sync_guarded(full=True)
            while not stop.is_set():
                full = await self._next(stop, retry=retry or self._retrying())
                if stop.is_set():
                    break
                retry = not await self._sync_guarded(full=full)
        finally:
            halt.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _sync_guarded(self, *, full: bool) -> bool:
        """One sync that cannot end the follower (nor the control plane running it): a failure,
        such as the server going away mid-sync, is one line and a retry later. True when it ran."""
        try:
            await self.sync(full=full)
        except Exception as exc:
            line = _naming(self._format(exc, f'error syncing "{self.root}"'), str(self.root), "syncing")
            if line != self._last_failure:  # once per outage, not at every retry
                self._print(self.err, line)
            self._last_failure = line
            return False
        self._last_failure = ""
        return True

    def _retrying(self) -> bool:
        return any(not s.ok and s.retry for s in self._files.values())

    async def _next(self, stop: asyncio.Event, *, retry: bool) -> bool:
        """Wait for a change (False), the self-heal timer (True), a retry of failed files (False)
        or ``stop``; returns whether the next sync is a full one."""
        timeouts = [t for t in (self.self_heal, self.retry_seconds if retry else None) if t is not None]
        timeout = min(timeouts) if timeouts else None
        changed = asyncio.create_task(self._dirty.wait())
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({changed, stopped}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for task in (changed, stopped):
                task.cancel()
        if changed in done:
            self._dirty.clear()
            return False
        return not done and self.self_heal is not None and timeout == self.self_heal

    async def _watch(self, stop: asyncio.Event) -> None:
        """Mark the directory dirty on every relevant change; survive the directory going away."""
        from watchfiles import awatch

        while not stop.is_set():
            if not await asyncio.to_thread(self.root.is_dir):
                await asyncio.sleep(1.0)
                if await asyncio.to_thread(self.root.is_dir):
                    self._dirty.set()
                continue
            try:
                async for changes in awatch(
                    self.root, debounce=self.debounce_ms, step=50, stop_event=stop, recursive=True
                ):
                    if any(self._relevant(path) for _, path in changes):
                        self._dirty.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the directory vanished or cannot be watched: try again
                self._warn(f"watching {self.root}: {exc}")
                self._dirty.set()
                await asyncio.sleep(1.0)

    def _relevant(self, path: str) -> bool:
        try:
            rel = Path(path).relative_to(self.root.resolve())
        except ValueError:
            try:
                rel = Path(path).relative_to(self.root)
            except ValueError:
                return True
        if any(ignored(part) for part in rel.parts):
            return False
        return rel.suffix.lower() in EXTENSIONS or rel.suffix == ""

    # --- one sync -------------------------------------------------------------------------------

    async def sync(self, *, full: bool = False) -> SyncResult:
        """Apply what changed (everything when ``full``), prune what no file defines, report."""
        result = SyncResult()
        files, readable = await asyncio.to_thread(self._scan)
        seen = {f.rel for f in files}
        for rel in list(self._files):
            if rel not in seen:
                del self._files[rel]
        owners: dict[Key, str] = {}
        for f in files:
            self._claim(f, owners)
        to_apply = [f for f in files if f.error is None and self._needs_apply(f, full)]
        for f in files:
            if f.error is not None:
                await self._file_failed(f, f.error, result, retry=False)
        passed = await self._dry_run(to_apply, result)
        await self._apply(passed, result)
        result.failed = sum(1 for s in self._files.values() if not s.ok)
        if self.prune:
            await self._prune(files, readable, result)
        self._print(self.out, result.summary())
        return result

    def _scan(self) -> tuple[list[_File], bool]:
        """Every manifest file with its parsed objects; ``readable`` is False when the directory
        itself could not be listed (then nothing is pruned)."""
        try:
            paths = list(walk(self.root, True)) if self.root.is_dir() else None
        except ManifestError as exc:
            self._warn(str(exc))
            return [], False
        if paths is None:
            self._warn(f'the directory "{self.root}" does not exist')
            return [], False
        files = []
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            f = _File(rel, str(path), "")
            try:
                text = read_text(path)
                f.digest = hashlib.sha256(text.encode()).hexdigest()
                for m in parse(text, f.source):
                    info = resource_info(m)
                    ns = resolve_namespace(m, self.options.namespace, self.options.enforce_namespace)
                    key = (info.kind, ns if info.namespaced else "", m.name)
                    f.manifests.append((self._stamp(m, rel), info, key))
            except ManifestError as exc:
                f.error = self._format(exc, None)
                f.manifests = []
            files.append(f)
        return files, True

    def _claim(self, f: _File, owners: dict[Key, str]) -> None:
        """One object, one file: a second file defining it fails (it would fight the first)."""
        if f.error is not None:
            return
        for m, _, key in f.manifests:
            other = owners.get(key)
            if other is not None and other != f.rel:
                kind, ns, name = key
                where = f"{ns}/{name}" if ns else name
                f.error = self._format(
                    ManifestError(
                        f'"{f.source}" (document at line {m.line}) defines {kind} {where}, '
                        f'already defined in "{other}"'
                    ),
                    None,
                )
                f.manifests = []
                return
        for _, _, key in f.manifests:
            owners[key] = f.rel

    def _needs_apply(self, f: _File, full: bool) -> bool:
        state = self._files.get(f.rel)
        return full or state is None or state.digest != f.digest or (not state.ok and state.retry)

    def _stamp(self, m: Manifest, rel: str) -> Manifest:
        """The manifest with this directory's label and its source annotation added."""
        obj = copy.deepcopy(m.object)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        labels = meta.get("labels")
        meta["labels"] = {**(labels if isinstance(labels, dict) else {}), DIR_LABEL: self.id}
        annotations = meta.get("annotations")
        meta["annotations"] = {
            **(annotations if isinstance(annotations, dict) else {}),
            SOURCE_ANNOTATION: rel,
        }
        return Manifest(m.source, m.line, obj)

    async def _dry_run(self, files: list[_File], result: SyncResult) -> list[_File]:
        """The files whose every object the server accepts in a dry run (all-or-nothing files)."""
        creating = {key[2] for f in files for _, info, key in f.manifests if info.kind == "Namespace"}
        exists: dict[str, bool] = {}
        dry = dataclasses.replace(self.options, dry_run=True)
        passed = []
        for f in files:
            error = None
            for m, info, key in sorted(f.manifests, key=lambda e: _RANK.get(e[1].kind, 3)):
                ns = key[1]
                if info.namespaced and ns in creating and not await self._exists(ns, exists):
                    continue  # its namespace comes with this sync: the real apply checks it
                try:
                    await apply_one(self.client, m, dry)
                except ManifestError as exc:
                    error = _naming(self._format(exc, None), f.source)
                except ApplyError as exc:
                    context = f"{exc.context} (document at line {m.line})"
                    error = _naming(
                        self._format(exc.error, context), f"{f.source} (document at line {m.line})"
                    )
                if error is not None:
                    break
            if error is None:
                passed.append(f)
            else:
                await self._file_failed(f, error, result, retry=True)
        return passed

    async def _exists(self, namespace: str, cache: dict[str, bool]) -> bool:
        if namespace not in cache:
            info = next(r for r in RESOURCES if r.kind == "Namespace")
            try:
                await self.client.get_raw(info, namespace)
                cache[namespace] = True
            except ClientError:
                cache[namespace] = False
        return cache[namespace]

    async def _apply(self, files: list[_File], result: SyncResult) -> None:
        """Apply the files' objects for real, all files together in apply order."""
        by_source = {f.source: f for f in files}
        entries = {id(m): (info, key) for f in files for m, info, key in f.manifests}
        applied: dict[str, set[Key]] = {f.rel: set() for f in files}
        errors: dict[str, str] = {}
        for m in sort_for_apply(m for f in files for m, _, _ in f.manifests):
            f = by_source[m.source]
            info, key = entries[id(m)]
            try:
                outcome = await apply_one(self.client, m, self.options)
            except ManifestError as exc:
                line = _naming(self._format(exc, None), f.source)
            except ApplyError as exc:
                context = f"{exc.context} (document at line {m.line})"
                line = _naming(self._format(exc.error, context), f"{f.source} (document at line {m.line})")
            else:
                applied[f.rel].add(key)
                if outcome == "unchanged":
                    result.unchanged += 1
                else:
                    result.applied += 1
                    await self._event_applied(info, key, f"{info.kind} {outcome} from {f.rel}")
                continue
            errors.setdefault(f.rel, line)
            self._print(self.err, line)
            result.errors.append(line)
            await self._event(_namespace_ref("default"), "Warning", "ApplyFailed", f"{f.rel}: {line}")
        for f in files:
            previous = self._files.get(f.rel)
            if f.rel in errors:
                kept = previous.keys if previous is not None else set()
                self._files[f.rel] = _FileState(
                    f.digest, kept | applied[f.rel], ok=False, retry=True, error=errors[f.rel]
                )
            else:
                self._files[f.rel] = _FileState(f.digest, {key for _, _, key in f.manifests})

    async def _file_failed(self, f: _File, line: str, result: SyncResult, *, retry: bool) -> None:
        """Report a file that cannot be applied; what it applied last time stays (and is kept from
        prune). An unchanged broken file is reported once, not at every sync."""
        previous = self._files.get(f.rel)
        self._files[f.rel] = _FileState(
            f.digest, previous.keys if previous is not None else set(), ok=False, retry=retry, error=line
        )
        if (
            previous is not None
            and not previous.ok
            and previous.digest == f.digest
            and previous.error == line
        ):
            return
        self._print(self.err, line)
        result.errors.append(line)
        await self._event(_namespace_ref("default"), "Warning", "ApplyFailed", f"{f.rel}: {line}")

    # --- prune ----------------------------------------------------------------------------------

    async def _prune(self, files: list[_File], readable: bool, result: SyncResult) -> None:
        desired = {key for f in files for _, _, key in f.manifests}
        failing = {rel for rel, s in self._files.items() if not s.ok}
        kept = {key for rel in failing for key in self._files[rel].keys}
        if not readable or (not desired and not failing):
            live = await self._live()
            if live:
                result.guarded = True
                self._warn(
                    f'no manifests read from "{self.root}": pruning nothing '
                    f"({len(live)} objects with {self.selector} kept)"
                )
            return
        doomed = []
        for info, obj in await self._live():
            meta = obj.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            key = (info.kind, meta.get("namespace") or "", meta.get("name") or "")
            if key in desired or key in kept or meta.get("deletionTimestamp"):
                continue
            if SOURCE_ANNOTATION not in annotations:
                # Only what this follower applied: a controller may copy the label onto objects of
                # its own (the endpoints controller copies a Service's labels onto its Endpoints).
                continue
            if annotations.get(SOURCE_ANNOTATION) in failing:
                continue
            if str(annotations.get(PRUNE_ANNOTATION, "")).lower() == "false":
                continue
            doomed.append((info, key, meta, annotations.get(SOURCE_ANNOTATION, "")))
        doomed.sort(key=lambda d: -_RANK.get(d[0].kind, 3))
        for info, key, meta, source in doomed:
            kind, ns, name = key
            try:
                await self.client.delete(info.type, name, ns or None, uid=meta.get("uid"))
            except (NotFound, Conflict):
                continue
            except ClientError as exc:
                line = self._format(exc, f'error when pruning {info.plural}/{name} (was in "{source}")')
                self._print(self.err, line)
                result.errors.append(line)
                continue
            result.pruned += 1
            self._print(self.out, f"{info.plural}/{name} pruned")
            ref = _reference(info, key, meta.get("uid"))
            await self._event(ref, "Normal", "Pruned", f"{kind} pruned: no longer in {self.root}")

    async def _live(self) -> list[tuple[ResourceInfo, dict[str, Any]]]:
        """Every object carrying this directory's label, of every kind served."""
        out: list[tuple[ResourceInfo, dict[str, Any]]] = []
        for info in RESOURCES:
            if info.kind == "Event":
                continue
            try:
                resp = await self.client.request(
                    "GET", path_for(info), params={"labelSelector": self.selector}
                )
            except NotFound:
                continue
            items = msgspec.json.decode(resp.content).get("items") or []
            out.extend((info, item) for item in items if isinstance(item, dict))
        return out

    # --- reporting ------------------------------------------------------------------------------

    async def _event_applied(self, info: ResourceInfo, key: Key, message: str) -> None:
        uid = None
        with contextlib.suppress(ClientError):
            live = await self.client.get_raw(info, key[2], key[1] or None)
            uid = (live.get("metadata") or {}).get("uid")
        await self._event(_reference(info, key, uid), "Normal", "Applied", message)

    async def _event(self, ref: ObjectReference, type_: str, reason: str, message: str) -> None:
        if self.options.dry_run:
            return
        await self.recorder.record(ref, type_, reason, message[:1024])

    def _warn(self, message: str) -> None:
        self._print(self.err, f"warning: {message}")

    @staticmethod
    def _print(stream: TextIO | None, line: str) -> None:
        if stream is None:
            log.info("%s", line)
            return
        print(line, file=stream)
        with contextlib.suppress(Exception):
            stream.flush()


def _naming(line: str, where: str, doing: str = "applying") -> str:
    """``line`` naming ``where`` (a file): transport errors come without the context they were in."""
    return line if where.split(" ")[0] in line else f"{line} ({doing} {where})"


def _plain_error(exc: BaseException, context: str | None) -> str:
    return f"error: {context}: {exc}" if context else f"error: {exc}"


def _reference(info: ResourceInfo, key: Key, uid: str | None) -> ObjectReference:
    return ObjectReference(
        kind=info.kind, namespace=key[1] or None, name=key[2], uid=uid, api_version=info.api_version
    )


def _namespace_ref(name: str) -> ObjectReference:
    return ObjectReference(kind="Namespace", name=name, api_version="v1")
