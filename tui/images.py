"""``pea image load FILE [--node N]...``: send an image archive to nodes through their agents.

There is no registry: an image built on one machine (``podman save``) reaches the nodes by being posted
to each node's ``nodes/{name}/proxy/images/load`` on the API server, which authorizes the user (an admin
or user, never a node identity) and streams the archive to the node's agent — the agent serves only the
API server, so this works wherever the API server does, with the user's own credentials and TLS.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

import msgspec

from controlplane.api.core import Node
from controlplane.client import ApiError, Client, ClientError


def setup_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["load"], help="what to do with the image")
    p.add_argument("file", help="an image archive (podman save / docker save)")
    p.add_argument("--node", action="append", default=[], help="a node to send it to (default: every node)")


class _Loaded(msgspec.Struct):
    images: list[str] = []


async def run_image(
    args: argparse.Namespace, out: TextIO, err: TextIO, client: Client, token: str | None
) -> int:
    """``token`` is unused (kept for the caller): ``client`` carries the user's credentials."""
    path = Path(args.file)
    if not await asyncio.to_thread(path.is_file):
        raise ValueError(f'the path "{args.file}" does not exist')
    nodes = [await client.get(Node, n) for n in args.node] if args.node else (await client.list(Node)).items
    if not nodes:
        raise ValueError("there are no nodes to send the image to")
    archive = await asyncio.to_thread(path.read_bytes)
    failed = 0
    for node in nodes:
        name = node.metadata.name or ""
        try:
            resp = await client.request(
                "POST",
                f"/api/v1/nodes/{quote(name, safe='')}/proxy/images/load",
                body=archive,
                content_type="application/x-tar",
            )
            loaded = msgspec.json.decode(resp.content, type=_Loaded)
        except ApiError as exc:
            print(f"error: node {name}: {exc.status.message or exc}", file=err)
            failed += 1
            continue
        except (ClientError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            print(f"error: node {name}: {exc}", file=err)
            failed += 1
            continue
        print(f"node/{name}: loaded {', '.join(loaded.images) or 'nothing'}", file=out)
    return 1 if failed else 0
