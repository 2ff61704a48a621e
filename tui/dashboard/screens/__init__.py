"""The dashboard's screens, one per module."""

from __future__ import annotations

from .confirm import ConfirmScreen
from .describe import DescribeScreen
from .help import HelpScreen
from .logs import ContainerPicker, LogScreen
from .namespaces import ALL_NAMESPACES, NamespaceScreen
from .resources import ResourcesScreen
from .scale import ScaleScreen
from .yaml_view import YamlScreen

__all__ = [
    "ALL_NAMESPACES",
    "ConfirmScreen",
    "ContainerPicker",
    "DescribeScreen",
    "HelpScreen",
    "LogScreen",
    "NamespaceScreen",
    "ResourcesScreen",
    "ScaleScreen",
    "YamlScreen",
]
