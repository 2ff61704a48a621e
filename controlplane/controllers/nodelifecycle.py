"""STUB: being written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlplane.client import Client

if TYPE_CHECKING:
    from .manager import ControllerSettings


class NodeLifecycleController:
    def __init__(self, client: Client, settings: ControllerSettings) -> None:
        self.client = client
        self.settings = settings

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
