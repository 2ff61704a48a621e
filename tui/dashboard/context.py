"""What the dashboard's screens share: the running ``PeapodApp``, typed (its client, namespace,
read-only mode and clock). One mixin instead of a copy of the same property in every screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.message_pump import MessagePump

if TYPE_CHECKING:
    from .app import PeapodApp

__all__ = ["OnDashboard"]


class OnDashboard:
    """Mixed into a Screen: ``self.peapod`` is the app it runs in, as a ``PeapodApp``."""

    @property
    def peapod(self) -> PeapodApp:
        from .app import PeapodApp  # app.py imports the screens

        app = cast(MessagePump, self).app
        assert isinstance(app, PeapodApp)
        return app
