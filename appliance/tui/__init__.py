"""The terminal UI for secure workstations (Textual).

Everything it does goes through the session pipeline (sign-in, policy,
audit); it never calls the engine itself, and workers never touch widgets.
"""

from appliance.tui.app import AppContext, ApplianceApp

__all__ = ["AppContext", "ApplianceApp"]
