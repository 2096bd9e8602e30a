"""What every full screen of the appliance shares: typed access to the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp


class ApplianceScreen(Screen[None]):
    @property
    def owner(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]
