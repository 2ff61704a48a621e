"""The dashboard's widgets, one module per area."""

from __future__ import annotations

from .command_bar import CommandBar
from .header import ClusterHeader
from .resource_table import ResourceTable

__all__ = ["ClusterHeader", "CommandBar", "ResourceTable"]
