"""``pea image load FILE [--node N]...``: send an image archive to nodes through their agents.

There is no registry: an image built on one machine (``podman save``) reaches the nodes by being posted
to each agent's endpoint, whose address the agent publishes on its Node (``peapod.io/agent-address``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TextIO

import httpx

from agent.node import AGENT_ADDRESS
from controlplane.api.core import Node
from controlplane.client import Client


def setup_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["load"], help="what to do with the image")
    p.add_argument("file", help="an image archive (podman save / docker save)")
    p.add_argument("--node", action="append", default=[], help="a node to send it to (default: every node)")


async def run_image(
    args: argparse.Namespace, out: TextIO, err: TextIO, client: Client, token: str | None
) -> int:
    path = Path(args.file)
    if not await asyncio.to_thread(path.is_file):
        raise ValueError(f'the path "{args.file}" does not exist')
    nodes = [await client.get(Node, n) for n in args.node] if args.node else (await client.list(Node)).items
    if not nodes:
        raise ValueError("there are no nodes to send the image to")
    archive = await asyncio.to_thread(path.read_bytes)
    failed = 0
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=5)) as http:
        for node in nodes:
            name = node.metadata.name
            address = (node.metadata.annotations or {}).get(AGENT_ADDRESS)
            if not address:
                print(f"error: node {name} publishes no agent address", file=err)
                failed += 1
                continue
            try:
                resp = await http.post(f"http://{address}/images/load", content=archive, headers=headers)
            except httpx.HTTPError as exc:
                print(f"error: node {name}: cannot reach its agent at {address}: {exc}", file=err)
                failed += 1
                continue
            body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
            if resp.status_code >= 400:
                print(f"error: node {name}: {body.get('error') or resp.text.strip()}", file=err)
                failed += 1
            else:
                print(f"node/{name}: loaded {', '.join(body.get('images') or []) or 'nothing'}", file=out)
    return 1 if failed else 0
