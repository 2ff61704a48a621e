"""``pea apply``: apply every manifest (namespaces first, see
:func:`controlplane.client.manifests.sort_for_apply`) with the client's three-way apply
(:mod:`controlplane.client.apply`), reporting each object as kubectl does."""

from __future__ import annotations

from typing import TextIO

from controlplane.client import Client
from controlplane.client.apply import ApplyError, ApplyOptions, apply_one
from controlplane.client.manifests import Manifest, ManifestError, resource_info, sort_for_apply

from .printers import error_line, resource_name

__all__ = ["apply"]


async def apply(
    client: Client, manifests: list[Manifest], options: ApplyOptions, out: TextIO, err: TextIO
) -> bool:
    """Apply every object, reporting each as kubectl does; True when all of them succeeded.

    One object failing does not stop the others: each error is printed and the result says so."""
    ok = True
    suffix = " (server dry run)" if options.dry_run else ""
    for manifest in sort_for_apply(manifests):
        try:
            result = await apply_one(client, manifest, options, err)
        except ManifestError as exc:
            print(error_line(exc), file=err)
            ok = False
            continue
        except ApplyError as exc:
            print(error_line(exc.error, exc.context, server=client.server), file=err)
            ok = False
            continue
        info = resource_info(manifest)
        print(f"{resource_name(info, manifest.name)} {result}{suffix}", file=out)
    return ok
