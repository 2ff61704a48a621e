"""Client-side apply, as kubectl does it, so objects converge on their manifests without clobbering
what others changed. ``pea apply`` and the manifest-directory follower use it.

For each object the live object is read. Missing, it is created with the
``kubectl.kubernetes.io/last-applied-configuration`` annotation holding the manifest as compact JSON.
Present, a three-way patch is computed from that last-applied manifest, the new manifest and the live
object (:func:`controlplane.patch.three_way_patch`): fields the manifest sets win, fields it stopped
setting are removed, and fields it never mentioned (labels added with ``pea label``, replicas set by
``pea scale``, server defaults) are left alone. The same annotation format and patch type as kubectl
mean ``pea apply`` and ``kubectl apply`` can take turns on an object.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, TextIO

from controlplane.api.registry import ResourceInfo
from controlplane.patch import PatchError, supports_strategic_merge, three_way_patch

from .client import Client
from .errors import ClientError, NotFound
from .manifests import Manifest, ManifestError, resolve_namespace, resource_info

__all__ = [
    "LAST_APPLIED",
    "ApplyError",
    "ApplyOptions",
    "apply_one",
    "field_validation",
    "last_applied",
]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_VALIDATE = {"strict": "Strict", "true": "Strict", "warn": "Warn", "ignore": "Ignore", "false": "Ignore"}


def field_validation(flag: str) -> str:
    """kubectl's ``--validate`` value as the server's ``fieldValidation`` mode."""
    mode = _VALIDATE.get(flag.strip().lower())
    if mode is None:
        raise ValueError(
            f'invalid - validate option "{flag}"; must be one of: strict (or true), warn, ignore (or false)'
        )
    return mode


@dataclass(frozen=True)
class ApplyOptions:
    namespace: str = "default"
    # True when -n was given: a manifest naming another namespace is then an error.
    enforce_namespace: bool = False
    field_validation: str = "Strict"
    dry_run: bool = False


def last_applied(obj: dict[str, Any]) -> str:
    """The annotation's value: the manifest as compact JSON with sorted keys and a final newline,
    byte for byte what kubectl stores, so kubectl sees no difference when it applies next."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _modified(manifest: Manifest, info: ResourceInfo, namespace: str) -> dict[str, Any]:
    """The manifest as it will be sent: namespace filled in, the annotation recording itself."""
    obj = copy.deepcopy(manifest.object)
    meta = obj.setdefault("metadata", {})
    if info.namespaced:
        meta["namespace"] = namespace
    # kubectl records ``annotations: {}`` when the manifest has none; doing the same keeps the
    # annotation byte-identical to kubectl's, so neither tool sees a change the other made.
    annotations = meta.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, dict) else {}
    annotations.pop(LAST_APPLIED, None)
    meta["annotations"] = annotations
    recorded = last_applied(obj)
    meta["annotations"] = {**annotations, LAST_APPLIED: recorded}
    return obj


def _original(live: dict[str, Any]) -> dict[str, Any] | None:
    value = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class ApplyError(Exception):
    """A client error with the step it happened in, for kubectl's ``error when creating "x.yaml"``."""

    def __init__(self, error: ClientError, context: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.context = context


async def apply_one(
    client: Client, manifest: Manifest, options: ApplyOptions, warn: TextIO | None = None
) -> str:
    """Apply one object; returns ``created``, ``configured`` or ``unchanged``.

    Raises ManifestError for what is wrong before the server is asked, and ApplyError for the
    server's refusals (or an unreachable server).
    """
    info = resource_info(manifest)
    # A namespace in a cluster-scoped object's manifest means nothing; kubectl ignores it too.
    namespace = (
        resolve_namespace(manifest, options.namespace, options.enforce_namespace) if info.namespaced else ""
    )
    ns = namespace if info.namespaced else None
    modified = _modified(manifest, info, namespace)
    try:
        live = await client.get_raw(info, manifest.name, ns)
    except NotFound:
        live = None
    except ClientError as exc:
        raise ApplyError(exc, f'error when retrieving current configuration of "{manifest.source}"') from exc
    if live is None:
        try:
            await client.create_raw(
                info, modified, ns, field_validation=options.field_validation, dry_run=options.dry_run
            )
        except ClientError as exc:
            raise ApplyError(exc, f'error when creating "{manifest.source}"') from exc
        return "created"
    original = _original(live)
    if original is None and warn is not None:
        print(
            f"Warning: resource {info.plural}/{manifest.name} is missing the {LAST_APPLIED} annotation "
            "which is required by pea apply. The missing annotation will be patched automatically.",
            file=warn,
        )
    strategic = supports_strategic_merge(info.kind)
    try:
        patch = three_way_patch(original, modified, live, info.kind if strategic else None)
    except PatchError as exc:
        raise ManifestError(f'error when computing the patch for "{manifest.source}": {exc}') from None
    if not patch:
        return "unchanged"
    try:
        await client.patch_raw(
            info,
            manifest.name,
            patch,
            ns,
            patch_type="strategic" if strategic else "merge",
            field_validation=options.field_validation,
            dry_run=options.dry_run,
        )
    except ClientError as exc:
        raise ApplyError(exc, f'error when patching "{manifest.source}"') from exc
    return "configured"
