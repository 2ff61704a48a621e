"""``y``: one object as ``pea get -o yaml`` prints it, kept live, highlighted when tree-sitter can.

A Secret's values (``data`` and ``stringData``) are masked until ``x`` reveals them, as k9s does; the
title line says which. The raw object is kept, so ``x`` re-presents it without asking the server.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from controlplane.api.registry import ResourceInfo
from controlplane.client import Client
from tui.printers import to_yaml

from .text_view import DetailScreen

__all__ = ["MASK", "YamlScreen", "masked"]

MASK = "********"
SECRET_FIELDS = ("data", "stringData")


def masked(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Secret with every value under ``data``/``stringData`` replaced by ``MASK``."""
    out = dict(obj)
    for field in SECRET_FIELDS:
        values = obj.get(field)
        if isinstance(values, dict):
            out[field] = {key: MASK for key in values}
    return out


class YamlScreen(DetailScreen):
    VERB = "YAML"
    LANGUAGE = "yaml"

    BINDINGS = [Binding("x", "toggle_secrets", "Reveal/hide values")]

    def __init__(self, info: ResourceInfo, name: str, namespace: str | None) -> None:
        super().__init__(info, name, namespace)
        #: Whether a Secret's values are shown as they are.
        self.revealed = False

    @property
    def is_secret(self) -> bool:
        return self.info.kind == "Secret"

    async def fetch(self, client: Client) -> dict[str, Any]:
        return await client.get_raw(self.info, self.object_name, self.namespace)

    def present(self, payload: Any) -> str:
        obj = payload if self.revealed or not self.is_secret else masked(payload)
        return to_yaml(obj)

    def title_text(self) -> str:
        title = super().title_text()
        if self.is_secret:
            state = "values shown (x hides)" if self.revealed else "values hidden (x reveals)"
            title += f"   [{state}]"
        return title

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_secrets":
            return self.is_secret
        return True

    def action_toggle_secrets(self) -> None:
        self.revealed = not self.revealed
        self.refresh_title()
        self.refresh_bindings()
        if self.payload is not None:
            self.show_text(self.present(self.payload))
