"""Account management through the service: `appliance users ...` as a client.

The service runs the same `AccountAdmin` the in-process command runs, as the
signed-in principal of the connection, so the rules (admins for operators and
admins, officers for officers, requests and approvals) and the audit trail
are the same. `RemoteAccounts` is what the command holds on a service host:
the methods of `AccountAdmin`, each one request.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from appliance.accounts import AccountAdmin
from appliance.errors import UsageError
from appliance.identity import Account, Principal, Request
from appliance.service.client import Client

# call -> the argument names it takes, each a string unless listed in FLAGS
CALLS: dict[str, tuple[str, ...]] = {
    "authorize": ("permission",),
    "authorize_password": ("name",),
    "accounts": (),
    "add": ("name", "role", "clearance", "password"),
    "request_officer": ("name", "clearance"),
    "pending": (),
    "approve": ("name", "password"),
    "set_password": ("name", "password"),
    "set_locked": ("name", "locked"),
    "bind": ("name", "os_uid"),
}
FLAGS = {"locked"}


def serve(admin: AccountAdmin, args: dict[str, Any]) -> dict[str, Any]:
    """Run one call of AccountAdmin for the connection's principal."""
    call = args["call"]
    if call not in CALLS:
        raise UsageError(f"users: no call {call[:40]!r}", code="unknown_op")
    given = {key: args[key] for key in CALLS[call] if key in args}
    if call == "accounts":
        return {"accounts": [asdict(account) for account in admin.accounts()]}
    if call == "pending":
        return {"requests": [asdict(request) for request in admin.pending()]}
    if call == "add":
        return {"clearance": admin.add(**_all(call, given, optional={"clearance"}))}
    if call == "request_officer":
        return {"request": asdict(admin.request_officer(**_all(call, given, {"clearance"})))}
    if call == "approve":
        return {"request": asdict(admin.approve(**_all(call, given)))}
    if call == "set_locked":
        admin.set_locked(given.get("name", ""), locked=bool(given.get("locked")))
        return {}
    if call == "bind":  # no os_uid: bound to none
        admin.bind(given.get("name", ""), given.get("os_uid"))
        return {}
    if call == "authorize":
        admin.authorize(given.get("permission", "users.manage"))
        return {}
    getattr(admin, call)(**_all(call, given))
    return {}


def _all(call: str, given: dict[str, Any], optional: set[str] | None = None) -> dict[str, Any]:
    optional = optional or set()
    missing = [key for key in CALLS[call] if key not in given and key not in optional]
    if missing:
        raise UsageError(f"users {call} needs {missing[0]!r}", code="bad_field")
    return {key: given.get(key) for key in CALLS[call]}


class RemoteAccounts:
    """AccountAdmin's methods, answered by the service for the signed-in user."""

    def __init__(self, client: Client) -> None:
        self.client = client
        signed = client.signed_in
        self.principal = Principal(
            str(signed.get("user")),
            str(signed.get("role")),
            str(signed.get("clearance")),
            dev=bool(signed.get("development")),
        )

    def _call(self, call: str, **args: Any) -> dict[str, Any]:
        return self.client.call("users", call=call, **args)

    def authorize(self, permission: str = "users.manage") -> None:
        self._call("authorize", permission=permission)

    def authorize_password(self, name: str) -> None:
        self._call("authorize_password", name=name)

    def accounts(self) -> list[Account]:
        return [Account(**row) for row in self._call("accounts")["accounts"]]

    def add(self, name: str, role: str, clearance: str | None, password: str) -> str:
        reply = self._call("add", name=name, role=role, clearance=clearance, password=password)
        return str(reply["clearance"])

    def request_officer(self, name: str, clearance: str | None) -> Request:
        return Request(**self._call("request_officer", name=name, clearance=clearance)["request"])

    def pending(self) -> list[Request]:
        return [Request(**row) for row in self._call("pending")["requests"]]

    def approve(self, name: str, password: str) -> Request:
        return Request(**self._call("approve", name=name, password=password)["request"])

    def set_password(self, name: str, password: str) -> None:
        self._call("set_password", name=name, password=password)

    def set_locked(self, name: str, *, locked: bool) -> None:
        self._call("set_locked", name=name, locked=locked)

    def bind(self, name: str, os_uid: int | None) -> None:
        self._call("bind", name=name, os_uid=os_uid)
