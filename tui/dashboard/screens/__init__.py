"""The dashboard's screens, one per module."""

from __future__ import annotations

from .help import HelpScreen
from .resources import ResourcesScreen

__all__ = ["HelpScreen", "ResourcesScreen"]
