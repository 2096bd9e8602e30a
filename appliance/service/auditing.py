"""The audit commands through the service: what an officer's or admin's client asks.

The service reads the log and enforces the same permissions the in-process
commands do (refusals audited). An officer's private key never reaches it:
`show` with content returns the sealed blobs and their sealed keys, which
the client opens; setting officer keys is proved by the client opening a
challenge sealed to each new recipient.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from appliance.audit import Actor, AuditLog, Checkpoint, Event, PublicKey
from appliance.audit.export import FORMATS, write_export
from appliance.errors import AuthenticationError, UsageError
from appliance.homestate import accept_state, record_state, verify_state
from appliance.identity import Principal
from appliance.seal import Recipient, seal_bytes

PAGE = 500  # events per `show` reply; the client asks on from the last seq
CHALLENGE_ID = "appliance-officer-challenge"


class AuditCalls:
    """One connection's audit requests, as its signed-in principal."""

    def __init__(self, home: Path, log: AuditLog, principal: Principal) -> None:
        self.home = home
        self.log = log
        self.principal = principal
        self.actor = Actor(principal.user, principal.role)
        self._challenge: tuple[list[Recipient], list[bytes]] | None = None

    def call(self, args: dict[str, Any], send: Callable[[str], bool]) -> dict[str, Any]:
        handler = getattr(self, f"_{args['call']}", None)
        if handler is None:
            raise UsageError(f"audit: no call {args['call'][:40]!r}", code="unknown_op")
        result: dict[str, Any] = handler(args, send) if args["call"] == "export" else handler(args)
        return result

    def _require(self, permission: str) -> None:
        if not self.principal.may(permission):
            details = {"permission": permission}
            event = Event(self.actor, "policy_block", "audit log", "denied", details=details)
            self.log.record(event)
            self.principal.require(permission)

    def _key(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("audit.read")
        key = self.log.key.public
        return {"log_id": self.log.log_id, "fingerprint": key.fingerprint, "public": str(key)}

    def _verify(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("audit.read")
        key = PublicKey.parse(args["pubkey"]) if "pubkey" in args else None
        trusted = checkpoint(args.get("trusted"))
        report = self.log.verify(key, trusted)
        return {
            "report": report.as_json(),
            "officer_recoveries": report.officer_recoveries,
            "unsigned_tail": report.unsigned_tail,
            "state": verify_state(self.home, self.log, trusted),
        }

    def _show(self, args: dict[str, Any]) -> dict[str, Any]:
        decrypt = bool(args.get("decrypt"))
        self._require("audit.content" if decrypt else "audit.read")
        limit = min(args.get("limit", PAGE), PAGE)
        rows = list(
            self.log.events(
                since_us=args.get("since_us"),
                user=args.get("user"),
                action=args.get("action"),
                term=args.get("term"),
                limit=limit,
                after_seq=args.get("after", 0),
                newest_first=bool(args.get("newest")),
            )
        )
        events = [
            {
                "seq": row["seq"],
                "leaf": row["leaf"].decode() if isinstance(row["leaf"], bytes) else row["leaf"],
                "content": _b64(row["content"]) if decrypt and row["content"] else None,
                "sealed": row["content"] is not None,
            }
            for row in rows
        ]
        reply: dict[str, Any] = {"events": events, "more": len(rows) == limit}
        if decrypt:  # sealed to the officers: only an officer's identity opens them
            keys = self.log.store.content_keys()
            reply["keys"] = {_b64(ident): _b64(sealed) for ident, sealed in keys.items()}
        return reply

    def _prune(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("audit.prune")
        if "before_us" not in args:
            raise UsageError("audit prune needs 'before_us'", code="bad_field")
        details = {"before": args.get("before", str(args["before_us"]))}
        through, dropped = self.log.prune(args["before_us"], self.actor, details)
        return {"through": through, "dropped": dropped}

    def _export(self, args: dict[str, Any], send: Callable[[str], bool]) -> dict[str, Any]:
        self._require("audit.read")
        fmt = args.get("format", "jsonl")
        if fmt not in FORMATS:
            raise UsageError(f"audit export: no format {fmt[:20]!r}", code="bad_field")
        since: Checkpoint | int | None = args.get("since_seq")
        if "since_checkpoint" in args:
            since = checkpoint(args["since_checkpoint"])
        sender = _Sender(send)
        sink = cast(BinaryIO, sender)  # write() is all write_export uses
        result = write_export(self.log, sink, self.actor, fmt=fmt, since=since)
        # The client writes the file; what it was sent is on record, by its sha256.
        delivered = {"sha256": sender.sha256.hexdigest(), "bytes": sender.size}
        details = {"delivered": delivered, "first": result.first_seq, "last": result.last_seq}
        self.log.record(Event(self.actor, "export", "audit log", details=details))
        return {
            "events": result.events,
            "first": result.first_seq,
            "last": result.last_seq,
            "sha256": delivered["sha256"],
        }

    def _officers(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("audit.read")
        return {"recipients": [str(recipient) for recipient in self.log.officers]}

    def _officer_challenge(self, args: dict[str, Any]) -> dict[str, Any]:
        """A random secret sealed to each proposed recipient: opening them proves possession."""
        self._require("audit.officer-keys")
        texts = args.get("recipients") or []
        if not 1 <= len(texts) <= 8:
            raise UsageError("give 1 to 8 officer recipients", code="bad_field")
        recipients = [Recipient.parse(text) for text in texts]
        secrets = [os.urandom(32) for _ in recipients]
        self._challenge = (recipients, secrets)
        sealed = [
            seal_bytes(secret, [recipient], CHALLENGE_ID)
            for recipient, secret in zip(recipients, secrets, strict=True)
        ]
        return {"challenges": [_b64(blob) for blob in sealed]}

    def _officer_set(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("audit.officer-keys")
        challenge, self._challenge = self._challenge, None  # one answer per challenge
        answers = args.get("answers") or []
        if challenge is None or len(answers) != len(challenge[1]):
            raise AuthenticationError(
                "the officer keys were not proved: ask for a challenge and open it",
                code="no_proof",
            )
        proved = [
            hmac.compare_digest(_unb64(answer), secret)
            for answer, secret in zip(answers, challenge[1], strict=True)
        ]
        if not all(proved):
            raise AuthenticationError(
                "an officer identity did not open its challenge: the keys stay as they were",
                code="no_proof",
            )
        self.log.set_officers(challenge[0], self.actor)
        record_state(self.home, self.log, self.actor, "key_rotate")
        return {"officers": len(challenge[0])}

    def _state(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("accept"):
            self._require("audit.read")
            return {"state": verify_state(self.home, self.log)}
        self._require("audit.officer-keys")
        reason = (args.get("reason") or "").strip()
        if not reason:
            raise UsageError("give the reason for accepting the home's state", code="bad_field")
        seq, changed = accept_state(self.home, self.log, self.actor, reason)
        return {"seq": seq, "changed": changed}


class _Sender:
    """A binary sink that sends what is written as text messages, in order."""

    def __init__(self, send: Callable[[str], bool]) -> None:
        self.send = send
        self._decoder = codecs.getincrementaldecoder("utf-8")()  # a write may split a character
        self.sha256 = hashlib.sha256()  # of every byte sent
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        text = self._decoder.decode(bytes(data))
        if text and not self.send(text):
            raise UsageError("the client stopped reading the export", code="gone")
        return len(data)

    def flush(self) -> None:
        return None


def checkpoint(text: str | None) -> Checkpoint | None:
    if text is None:
        return None
    return Checkpoint.parse_file(text.encode("utf-8"), "the trusted checkpoint")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""
