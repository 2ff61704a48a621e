"""Two API servers sharing one SQLite store: allocations stay unique, and each sees the other's writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.api import Container, Node, ObjectMeta, Pod, PodSpec
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings


async def test_two_servers_never_hand_out_the_same_pod_cidr(tmp_path: Path) -> None:
    def settings() -> Settings:
        return Settings(
            data_dir=tmp_path / "shared", listen="127.0.0.1:0", scheduler=False, controllers=False
        )

    a, b = ControlPlane(settings()), ControlPlane(settings())
    await a.start()
    await b.start()
    try:
        async with Client(a.url) as ca, Client(b.url) as cb:
            made = await asyncio.gather(
                *(c.create(Node(metadata=ObjectMeta(name=f"n{i}"))) for i, c in enumerate([ca, cb] * 10))
            )
            cidrs = [n.spec.pod_cidr for n in made]
            assert len(set(cidrs)) == 20 and all(c and c.endswith("/24") for c in cidrs)
            # b's watch learns of a's write by polling the shared file.
            spec = PodSpec(containers=[Container(name="c", image="busybox")])
            created = await ca.create(Pod(metadata=ObjectMeta(name="p"), spec=spec))
            since = str(int(created.metadata.resource_version or 1) - 1)
            seen = None
            async for event in cb.watch(Pod, "default", resource_version=since):
                if event.type == "ADDED":
                    seen = event.object
                    break
            assert seen is not None and seen.metadata.uid == created.metadata.uid
    finally:
        await b.stop()
        await a.stop()
