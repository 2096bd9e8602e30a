"""The request path: one turn of chat through identity, policy and audit.

    who may ask (role, idle timeout)
 -> check_input: DLP on the prompt (redact, block, raise the label)
 -> the label against the user's clearance
 -> audit `ask` (the prompt sealed to the officer), durable before the model runs
 -> the engine, on the redacted prompt
 -> OutputGuard on the stream: DLP and labels on the answer before it is shown
 -> audit `answer` when the turn ends, however it ends

If an audit write fails the turn fails: no unaudited answer is generated, and
an answer whose record could not be written ends in an AuditError. The CLI
and the TUI both go through here; neither calls the engine directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, Event
from appliance.config import GenerationParams
from appliance.engine import Engine, Generation, GenerationStats, Message
from appliance.errors import ApplianceError, AuthenticationError, BlockedError
from appliance.identity import DEV_ROLE, Principal, Users, has_users
from appliance.policy import Checked, Level, OutputGuard, Policy, check_input

SETUP_HINT = "an admin creates the first account with 'appliance setup --admin NAME'"


def development_mode(home: Path, policy: Policy, account: str) -> Principal | None:
    """The local account with every role, if the home has no users and the policy allows it."""
    if has_users(home):
        return None
    if not policy.allow_dev_mode:
        raise AuthenticationError(
            f"no users exist and policy {policy.describe()} forbids development mode; {SETUP_HINT}"
        )
    return Principal(account, DEV_ROLE, policy.levels[-1].id, dev=True)


def authenticate(home: Path, policy: Policy, log: AuditLog, user: str, password: str) -> Principal:
    """Check a password against the home's users; every outcome is audited.

    Failures count towards the policy's lockout; the password is never logged.
    """
    if not has_users(home):
        raise AuthenticationError(f"there are no users yet; {SETUP_HINT}")
    failure = Actor(user, "unknown")
    with Users(home) as users:
        try:
            result = users.sign_in(
                user,
                password,
                max_failures=policy.lockout_failures,
                lockout_minutes=policy.lockout_minutes,
            )
        except AuthenticationError:  # a locked account
            details = {"locked": True}
            log.record(Event(failure, "login_failed", "appliance", "denied", details=details))
            raise
    if result.principal is None:
        details = {"locked_now": result.locked_now}
        log.record(Event(failure, "login_failed", "appliance", "denied", details=details))
        message = "wrong user name or password"
        if result.locked_now:
            message += f"; the account is now locked for {policy.lockout_minutes} minutes"
        raise AuthenticationError(message)
    principal = result.principal
    log.record(Event(Actor(principal.user, principal.role), "login", "appliance"))
    return principal


@dataclass
class Session:
    """One signed-in user's conversation with one model."""

    engine: Engine
    audit: AuditLog
    policy: Policy
    principal: Principal
    model: str  # what the audit log names as the object: a content id or file name
    level: Level  # the level the user declared for this session
    last_active: float = field(default_factory=time.monotonic)

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.user, self.principal.role)

    @property
    def clearance(self) -> Level:
        return self.policy.level(self.principal.clearance)

    def turn(self, messages: Sequence[Message], params: GenerationParams) -> Turn:
        """Check and record the last user message, then start answering it."""
        self._check_idle()
        self.principal.require("ask")
        prompt = messages[-1].content
        checked = check_input(self.policy, prompt, self.level)
        self._record_findings(checked, "input")
        if checked.blocked is not None:
            raise BlockedError(
                f"the prompt was refused by policy {self.policy.describe()}: it contains "
                f"{_kind(checked.blocked.detector)}"
            )
        if checked.label.rank > self.clearance.rank:
            self._refuse_label(checked.label, "prompt")
        content = {"prompt": prompt}
        system = [m.content for m in messages if m.role == "system"]
        if system:
            content["system"] = system[0]
        details = {
            "messages": len(messages),
            "prompt_chars": len(prompt),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            "redacted": checked.actions.count("redact"),
        }
        event = Event(self.actor, "ask", self.model, label=checked.label.id, details=details)
        ask_seq = self.audit.record(event, content)
        turn = Turn(self, ask_seq, checked.label)
        sent = [*messages[:-1], Message("user", checked.text)]
        try:
            turn.generation = self.engine.chat(sent, params)
        except ApplianceError as exc:
            turn.finish("failed", error=type(exc).__name__)
            raise
        return turn

    def idle(self) -> bool:
        """Whether the policy's idle timeout has passed since the last activity."""
        return time.monotonic() - self.last_active > self.policy.idle_timeout_minutes * 60

    def sign_out(self, reason: str) -> None:
        self.audit.record(Event(self.actor, "logout", details={"reason": reason}))

    def _check_idle(self) -> None:
        if self.idle():
            self.sign_out("idle")
            raise AuthenticationError(
                f"the session was idle for more than {self.policy.idle_timeout_minutes} "
                "minutes; sign in again"
            )
        self.last_active = time.monotonic()

    def _record_findings(self, checked: Checked | OutputGuard, direction: str) -> None:
        summary = checked.summary()
        if not summary:
            return
        blocked = checked.blocked is not None
        action = "policy_block" if blocked else "policy_redact"
        details = {"direction": direction, "findings": summary}
        outcome = "denied" if blocked else "ok"
        self.audit.record(Event(self.actor, action, self.model, outcome, details=details))

    def _refuse_label(self, label: Level, what: str) -> None:
        details = {"label": label.id, "clearance": self.clearance.id, "what": what}
        event = Event(self.actor, "policy_block", self.model, "denied", label.id, details)
        self.audit.record(event)
        language = self.policy.language
        raise BlockedError(
            f"the {what} is labelled {label.name(language)}, above the clearance of "
            f"{self.principal.user} ({self.clearance.name(language)})"
        )


def _kind(detector: str) -> str:
    return {
        "rrn": "a resident registration number",
        "foreigner_rn": "a foreigner registration number",
        "passport": "a passport number",
        "driver_license": "a driver's licence number",
        "phone": "a phone number",
        "business_rn": "a business registration number",
        "corporate_rn": "a corporate registration number",
        "bank_account": "a bank account number",
        "service_number": "a military service number",
        "mgrs": "a grid reference",
        "marking": "a classification marking",
    }.get(detector, f"a match for the rule '{detector}'")


class Turn(Iterator[str]):
    """An answer in progress: text that passed the output rules; close() records it."""

    def __init__(self, session: Session, ask_seq: int, label: Level) -> None:
        self.session = session
        self.ask_seq = ask_seq
        self.generation: Generation | None = None
        self.guard = OutputGuard(session.policy, label)
        self._shown: list[str] = []
        self._produced: list[str] = []  # what the model wrote, for the officer
        self._outcome = "ok"
        self._error: str | None = None
        self._recorded = False
        self._ended = False

    @property
    def stats(self) -> GenerationStats:
        assert self.generation is not None
        return self.generation.stats

    @property
    def text(self) -> str:
        """What the user was shown."""
        return "".join(self._shown)

    @property
    def label(self) -> Level:
        return self.guard.label

    @property
    def outcome(self) -> str:
        """ok, cancelled, denied or failed (final once the turn is closed)."""
        return self._outcome

    def __next__(self) -> str:
        assert self.generation is not None
        while not self._ended:
            try:
                piece = next(self.generation)
            except StopIteration:
                self._ended = True
                shown = self.guard.finish()
            except ApplianceError as exc:
                self._outcome, self._error = "failed", type(exc).__name__
                raise
            else:
                self._produced.append(piece)
                shown = self.guard.feed(piece)
            self._enforce()
            if shown:
                self._shown.append(shown)
                return shown
        raise StopIteration

    def _enforce(self) -> None:
        """Stop the answer at the first output the user may not see."""
        session = self.session
        if self.guard.blocked is not None:
            self._deny()
            raise BlockedError(
                f"the answer was stopped by policy {session.policy.describe()}: it contained "
                f"{_kind(self.guard.blocked.detector)}"
            )
        if self.guard.label.rank > session.clearance.rank:
            self._deny()
            session._refuse_label(self.guard.label, "answer")

    def _deny(self) -> None:
        self._outcome = "denied"
        self._ended = True
        if self.generation is not None:
            self.generation.cancel()

    def cancel(self) -> None:
        self._outcome = "cancelled"
        if self.generation is not None:
            self.generation.cancel()

    def close(self) -> None:
        """Release the engine and record the answer (once)."""
        if self.generation is not None:
            self.generation.close()
        self.finish(self._outcome, error=self._error)

    def finish(self, outcome: str, *, error: str | None = None) -> None:
        if self._recorded:
            return
        self._recorded = True
        session = self.session
        session._record_findings(self.guard, "output")
        details: dict[str, Any] = {"ask_seq": self.ask_seq, "chars": len(self.text)}
        if self.generation is not None:
            stats = self.generation.stats
            details |= {
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "finish": stats.finish_reason,
            }
        if error:
            details["error"] = error
        event = Event(session.actor, "answer", session.model, outcome, self.label.id, details)
        session.audit.record(event, {"answer": "".join(self._produced)})
        session.last_active = time.monotonic()
