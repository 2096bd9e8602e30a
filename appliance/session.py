"""The request path: one turn of chat through identity, policy and audit.

    who may ask (idle timeout, the account unchanged since sign-in, role, air gap)
 -> check_input on every message the engine will see (system prompt, history,
    prompt): redact, block, raise the label from the conversation's label
 -> the adapter the policy serves the turn with, if any (its level raises the label)
 -> the label against the user's clearance
 -> the route: a listed GPU server where the policy and the server allow the label,
    else this host's engine (or a refusal, where the policy says so)
 -> audit `ask` (the prompt sealed to the officer), durable before the model runs
 -> the engine, on the redacted messages
 -> OutputGuard on the stream: DLP and labels on the answer before it is shown
 -> audit `answer` when the turn ends, however it ends

If an audit write fails the turn fails: no unaudited answer is generated, and
an answer whose record could not be written ends in an AuditError. The CLI
and the TUI both go through here; neither calls the engine directly. A
`Conversation` keeps only redacted text, so neither its history nor what a
front end saves of it holds what the policy redacted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, Event
from appliance.config import GenerationParams
from appliance.engine import AdapterUse, ChatEngine, Generation, GenerationStats, Message
from appliance.engine.remote import RemoteEngine
from appliance.errors import ApplianceError, AuthenticationError, BlockedError, UsageError
from appliance.grounding import Grounding, compose
from appliance.homestate import record_state
from appliance.identity import DEV_ROLE, Principal, Users, check_account, has_users
from appliance.policy import Checked, Level, OutputGuard, Policy, check_added, check_input
from appliance.policy.override import (
    Override,
    airgap_verdict,
    check_grant,
    grant,
    site_passages,
)

SETUP_HINT = (
    "an admin and an officer create the first accounts with "
    "'appliance setup --admin NAME --officer NAME'"
)


def development_mode(home: Path, policy: Policy, account: str) -> Principal | None:
    """The local account with every role, if the home has no users and the policy allows it."""
    if has_users(home):
        return None
    if not policy.allow_dev_mode:
        raise AuthenticationError(
            f"no users exist and policy {policy.describe()} forbids development mode; {SETUP_HINT}",
            code="no_dev_mode",
            policy=policy.describe(),
        )
    return Principal(account, DEV_ROLE, policy.levels[-1].id, dev=True)


def authenticate(
    home: Path,
    policy: Policy,
    log: AuditLog,
    user: str,
    password: str,
    *,
    os_uid: int | None = None,
) -> Principal:
    """Check a password against the home's users; every outcome is audited.

    A known name and an unknown one get the same work and the same words;
    the log names an unknown one only by its keyed hash, never as typed (it
    may be a password typed into the wrong field). The password is never logged.
    `os_uid` is the OS account the service's client runs as: where the policy
    binds accounts to OS users, the account must be bound to that one.
    """
    if not has_users(home):
        raise AuthenticationError(f"there are no users yet; {SETUP_HINT}", code="no_users")
    with Users(home) as users:
        known = users.account(user) is not None
        failure = Actor(user if known else f"?{users.name_key(user)}", "unknown")
        try:
            result = users.sign_in(
                user,
                password,
                max_failures=policy.lockout_failures,
                lockout_minutes=policy.lockout_minutes,
            )
        except AuthenticationError:  # waiting after failures, or locked by an admin
            refused = {"refused": True}
            log.record(Event(failure, "login_failed", "appliance", "denied", details=refused))
            raise
    if result.principal is None:
        waiting = {"wait_until_us": result.wait_until_us}
        log.record(Event(failure, "login_failed", "appliance", "denied", details=waiting))
        message = "wrong user name or password"
        if result.wait_until_us:
            clock = time.strftime("%H:%M:%S UTC", time.gmtime(result.wait_until_us / 1e6))
            message += f"; the next attempt with this name must wait until {clock}"
        raise AuthenticationError(
            message, code="wrong_password", wait_until_us=result.wait_until_us
        )
    principal = result.principal
    if policy.service.bind_os_users and os_uid is not None and principal.os_uid != os_uid:
        actor = Actor(principal.user, principal.role)
        elsewhere = {"os_uid": os_uid, "bound": principal.os_uid}
        log.record(Event(actor, "login_failed", "appliance", "denied", details=elsewhere))
        raise AuthenticationError(
            f"{principal.user} may sign in only from the OS account bound to it "
            "(an admin binds it: appliance users bind)",
            code="os_user",
            user=principal.user,
        )
    details = {"must_change": True} if principal.must_change else {}
    log.record(Event(Actor(principal.user, principal.role), "login", "appliance", details=details))
    return principal


def session_level(
    policy: Policy, principal: Principal, declared: str | None, log: AuditLog
) -> Level:
    """The level a session works at: the one declared (else the policy's default),
    never above the user's clearance (a refusal is audited)."""
    level = policy.level(declared or policy.default_level)
    clearance = policy.level(principal.clearance)
    if level.rank > clearance.rank:
        actor = Actor(principal.user, principal.role)
        details = {"level": level.id, "clearance": clearance.id}
        log.record(Event(actor, "policy_block", "appliance", "denied", level.id, details))
        raise BlockedError(
            f"{principal.user} is cleared to {clearance.name(policy.language)}, "
            f"not {level.name(policy.language)}",
            code="level_above_clearance",
            level=level.id,
            clearance=clearance.id,
            user=principal.user,
        )
    return level


def check_airgap(home: Path, policy: Policy, actor: Actor, log: AuditLog) -> str:
    """'air-gapped', or why not; refuses (audited) where the policy requires the gap."""
    passages = site_passages(home, policy.remote)
    verdict = airgap_verdict(
        home, policy.require_airgap, policy.airgap_override_max_minutes, passages
    )
    if verdict.allowed:
        return verdict.detail
    details = {"airgap": verdict.detail}
    log.record(Event(actor, "policy_block", "appliance", "denied", details=details))
    raise BlockedError(
        f"policy {policy.describe()} requires an air gap, but {verdict.detail}; "
        "run the appliance under its systemd unit (no network) or disconnect the host",
        code="no_airgap",
        policy=policy.describe(),
    )


def grant_airgap_override(
    home: Path, policy: Policy, log: AuditLog, principal: Principal, minutes: int, reason: str
) -> Override:
    """An officer lets the appliance serve off the air gap for a while: audited first,
    bounded by the policy, and signed into the home's state."""
    actor = Actor(principal.user, principal.role)
    if not principal.may("airgap.override"):  # a refusal is audited, as every other
        refused = {"permission": "airgap.override"}
        log.record(Event(actor, "policy_block", "airgap override", "denied", details=refused))
        principal.require("airgap.override")
    check_grant(minutes, reason, policy.airgap_override_max_minutes, policy.describe())
    details = {"minutes": minutes, "reason": reason}
    log.record(Event(actor, "config_change", "airgap override", details=details), checkpoint=True)
    override = grant(home, actor.user, minutes, reason)
    record_state(home, log, actor, "airgap override")
    return override


@dataclass
class Conversation:
    """One conversation as the engine sees it: the messages as checked (redacted),
    and the highest label any of its turns reached, which every later turn carries."""

    system: str | None = None
    messages: list[Message] = field(default_factory=list)  # user/assistant, redacted
    label: Level | None = None
    task: str | None = None  # the policy's preset that gave the system prompt

    def reset(self) -> None:
        self.messages, self.label = [], None


def start_conversation(policy: Policy, system: str | None, task: str | None) -> Conversation:
    """A new conversation: a system prompt of the user's own, or a policy's task preset's."""
    if task is None:
        return Conversation(system)
    if system is not None:
        raise UsageError(
            "a task preset brings its own system prompt: give --task or --system, not both",
            code="task_and_system",
        )
    return Conversation(policy.task(task).system, task=task)


def task_params(
    policy: Policy, task: str | None, max_tokens: int | None, temperature: float | None
) -> tuple[int, float]:
    """Sampling for a turn: what the user asked for, else the preset's, else the defaults."""
    preset = policy.task(task) if task is not None else None
    defaults = GenerationParams()
    if max_tokens is None:
        max_tokens = (preset and preset.max_tokens) or defaults.max_tokens
    if temperature is None:
        preset_temperature = preset.temperature if preset is not None else None
        temperature = defaults.temperature if preset_temperature is None else preset_temperature
    return max_tokens, temperature


@dataclass
class Session:
    """One signed-in user's conversations with one model."""

    home: Path
    engine: ChatEngine
    audit: AuditLog
    policy: Policy
    principal: Principal
    model: str  # what the audit log names as the object: a content id or file name
    level: Level  # the level the user declared for this session
    origin: dict[str, Any] = field(default_factory=dict)  # the client's OS identity, audited
    last_active: float = field(default_factory=time.monotonic)
    # GPU servers on the closed network (engine/remote.py), where the site lists some
    # and the policy allows them; turns it may not take stay with `engine`.
    remote: RemoteEngine | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.user, self.principal.role)

    @property
    def clearance(self) -> Level:
        return self.policy.level(self.principal.clearance)

    @property
    def top_cleared(self) -> bool:
        """Whether the user is cleared to the policy's highest level (nothing to withhold)."""
        return self.clearance.rank >= self.policy.levels[-1].rank

    def check_active(self) -> None:
        """Before every action: the idle timeout, the account unchanged since sign-in."""
        self._check_idle()
        try:
            check_account(self.home, self.principal)
        except AuthenticationError as exc:
            self.sign_out("account changed")
            raise AuthenticationError(
                exc.message, code="account_changed", user=self.principal.user
            ) from None

    def check_still_allowed(self) -> None:
        """Before every question: active, the role may ask, the air gap holds."""
        self.check_active()
        self.principal.require("ask")
        check_airgap(self.home, self.policy, self.actor, self.audit)

    def turn(
        self,
        conversation: Conversation,
        prompt: str,
        params: GenerationParams,
        grounding: Grounding | None = None,
    ) -> Turn:
        """Check every message the engine will see, record the ask, start answering.

        The system prompt and the history are checked again on every turn, the
        prompt for the first time: each is redacted, may block, and raises the
        label, which starts from the session level and the conversation's label.
        Sources from documents (`grounding`) go through the policy's `added`
        rules: redacted, never blocking, each raising the label to its own.
        """
        self.check_still_allowed()
        label = self.level
        if conversation.label is not None and conversation.label.rank > label.rank:
            label = conversation.label
        sent: list[Message] = []
        checks: list[tuple[str, Message]] = (
            [("the system prompt", Message("system", conversation.system))]
            if conversation.system
            else []
        )
        checks += [("an earlier message", message) for message in conversation.messages]
        checks.append(("the prompt", Message("user", prompt)))
        redacted = 0
        for what, message in checks:
            checked = check_input(self.policy, message.content, label)
            self._record_findings(checked, "input")
            if checked.blocked is not None:
                raise BlockedError(
                    f"{what} was refused by policy {self.policy.describe()}: it contains "
                    f"{_kind(checked.blocked.detector)}",
                    code="dlp_blocked",
                    what=what,
                    kind=checked.blocked.detector,
                )
            label = checked.label
            redacted += checked.actions.count("redact")
            sent.append(Message(message.role, checked.text))
        asked = sent[-1]
        sources = grounding.sources if grounding is not None else ()
        texts = []
        for source in sources:
            added = check_added(self.policy, source.text, source.label)
            self._record_findings(added, "added")
            redacted += added.actions.count("redact")
            texts.append(added.text)
            label = source.label if source.label.rank > label.rank else label
        adapter, label = self._adapter(label)
        if sources:
            composed = compose(asked.content, sources, texts, self.policy.language)
            sent[-1] = Message("user", composed)
        if label.rank > self.clearance.rank:
            self._refuse_label(label, "conversation" if len(sent) > 1 else "prompt")
        route = self._route(label, adapter)
        content = {"prompt": prompt}
        if conversation.system:
            content["system"] = conversation.system
        if sources:
            content["sources"] = "\n\n".join(texts)
        details = {
            "messages": len(sent),
            "prompt_chars": len(prompt),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            "redacted": redacted,
            **({"task": conversation.task} if conversation.task else {}),
            **self.origin,
        }
        if adapter is not None:
            details["adapter"] = self._adapter_details(adapter)
        if route:
            details["remote"] = list(route)  # the servers it may go to; `answer` names one
        if grounding is not None:
            details["documents"] = {
                "sources": [
                    {"chunk": s.chunk_id, "document": s.document_id, "label": s.label.id}
                    for s in sources
                ],
                "declined": grounding.declined is not None,
                **grounding.details,
            }
        event = Event(self.actor, "ask", self.model, label=label.id, details=details)
        ask_seq = self.audit.record(event, content)
        history = sent[1:-1] if conversation.system else sent[:-1]
        turn = Turn(self, conversation, history, asked, ask_seq, label, adapter)
        try:
            if grounding is not None and grounding.declined is not None:
                turn.generation = canned(grounding.declined)  # the model is not asked
            elif route and self.remote is not None:
                turn.generation = self.remote.chat(sent, params, endpoints=route)
            else:
                turn.generation = self.engine.chat(sent, params, adapter=adapter)
        except ApplianceError as exc:
            turn.finish("failed", error=type(exc).__name__)
            raise
        return turn

    def _adapter(self, label: Level) -> tuple[AdapterUse | None, Level]:
        """The adapter the policy serves this turn with, if any, and the turn's label,
        raised to the adapter's own classification."""
        rule = self.policy.adapter_for(
            self.principal.role, label, self.clearance, self.engine.adapters
        )
        if rule is None:
            return None, label
        own = self.policy.level(rule.classification)
        return AdapterUse(rule.name, rule.scale), own if own.rank > label.rank else label

    def _route(self, label: Level, adapter: AdapterUse | None) -> tuple[str, ...]:
        """The GPU servers this turn may go to (empty: the local engine answers).

        Only below both the policy's `remote.max_level` and a server's own level,
        and never with an adapter (a server serves none of the host's). A turn
        above them never leaves the host: refused (audited) where the policy says
        `above = "refuse"` or this host has no engine of its own (the "remote"
        backend), else answered here.
        """
        top = self.policy.remote_level()
        if self.remote is None or top is None or adapter is not None:
            return ()
        if label.rank <= top.rank:
            eligible = tuple(
                endpoint.name
                for endpoint in self.remote.endpoints
                if label.rank <= self.policy.level(endpoint.max_level).rank
            )
            if eligible:
                return eligible
        if self.policy.remote.above == "refuse" or self.engine is self.remote:
            details = {"label": label.id, "remote": "above the servers' level"}
            event = Event(self.actor, "policy_block", self.model, "denied", label.id, details)
            self.audit.record(event)
            language = self.policy.language
            raise BlockedError(
                f"policy {self.policy.describe()} sends no turn labelled {label.name(language)} "
                "to the GPU servers, and answers none here",
                code="remote_above",
                label=label.id,
            )
        return ()

    def _adapter_details(self, adapter: AdapterUse) -> dict[str, Any]:
        return {
            "name": adapter.name,
            "scale": adapter.scale,
            "sha256": self.engine.adapters[adapter.name],
        }

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
                "minutes; sign in again",
                code="idle",
                minutes=self.policy.idle_timeout_minutes,
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
            f"{self.principal.user} ({self.clearance.name(language)})",
            code="label_above_clearance",
            what=what,
            label=label.id,
            clearance=self.clearance.id,
            user=self.principal.user,
        )


def canned(text: str) -> Generation:
    """A generation that writes `text`: the appliance's own answer, never the model's."""
    data = text.encode("utf-8")
    return Generation(
        iter((0,)),
        lambda _token: data,
        lambda _token: False,
        max_tokens=1,
        stop_strings=(),
        stats=GenerationStats(prompt_tokens=0),
        on_finish=lambda: None,
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

    def __init__(
        self,
        session: Session,
        conversation: Conversation,
        history: list[Message],
        prompt: Message,
        ask_seq: int,
        label: Level,
        adapter: AdapterUse | None = None,
    ) -> None:
        self.session = session
        self.adapter = adapter
        self.conversation = conversation
        self.history = history  # as the engine saw them: redacted
        self.prompt = prompt
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
                f"{_kind(self.guard.blocked.detector)}",
                code="answer_blocked",
                kind=self.guard.blocked.detector,
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
            if stats.endpoint is not None:  # the GPU server that answered
                details["endpoint"] = {
                    "name": stats.endpoint,
                    "certificate_sha256": stats.endpoint_certificate,
                }
        if self.adapter is not None:
            details["adapter"] = session._adapter_details(self.adapter)
        if error:
            details["error"] = error
        event = Event(session.actor, "answer", session.model, outcome, self.label.id, details)
        session.audit.record(event, {"answer": "".join(self._produced)})
        session.last_active = time.monotonic()
        if outcome == "ok":
            self._extend_conversation()

    def _extend_conversation(self) -> None:
        """The exchange joins the conversation (redacted), which keeps the label it reached."""
        conversation = self.conversation
        dropped = self.generation.stats.dropped_messages if self.generation else 0
        answer = Message("assistant", self.text)
        conversation.messages = [*self.history[dropped:], self.prompt, answer]
        conversation.label = self.label
