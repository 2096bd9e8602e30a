"""Changing one's own password from the UI (F8): the current one, then the new one twice.

The service's `passwd` sets the signed-in user's password and ends the
session, so the UI returns to sign-in and says why. `passwd` asks for no
current password: the UI checks it first by signing in with it on a
connection of its own, audited like every sign-in and counted as a failure
when wrong, so that whoever finds a workstation left signed in can neither
change its password nor guess the current one faster than at sign-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.errors import ApplianceError
from appliance.tui.forms import OwnPasswordForm
from appliance.tui.link import Link

if TYPE_CHECKING:
    from appliance.tui.app import ApplianceApp


def change_own_password(app: ApplianceApp, link: Link) -> None:
    """Open the form for the signed-in user; once changed, back to sign-in."""
    if link.principal.dev:
        app.notify(app.words("password.dev"), severity="warning")
        return
    if getattr(app.screen, "busy", False):  # an answer holds the link until it ends
        app.notify(app.words("chat.still_answering"), severity="warning")
        return

    def change(current: str, new: str) -> str | None:
        return _change(app, link, current, new)

    def done(changed: dict[str, str] | None) -> None:
        if changed is not None and app.link is link:
            app.sign_out(notice=app.words("password.changed"))

    app.push_screen(OwnPasswordForm(app, link.principal.user, change), done)


def _change(app: ApplianceApp, link: Link, current: str, new: str) -> str | None:
    """Check the current password, then set the new one; why not, or None when done."""
    try:
        check = Link(app.context.service)
        try:
            check.sign_in(link.principal.user, current)
        finally:
            check.sign_out()  # the check's own session; the service records its logout
    except ApplianceError as exc:
        if exc.code == "wrong_password" and not exc.params.get("wait_until_us"):
            return app.words("password.wrong_current")
        return app.say(exc)
    try:
        link.passwd(new)
    except ApplianceError as exc:
        return app.say(exc)
    return None
