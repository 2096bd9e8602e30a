"""Drafts: a conversation saved as a document, a deliberate and audited export.

The appliance (on a service host, the service) renders the file; the client
only writes the bytes it is sent. The draft's classification is the
conversation's label, never lower: a user may not save what is labelled above
their clearance, nor anything above the highest level the policy lets leave
the appliance (`drafts.max_level`). Classified levels carry the policy's
예고문 and a copy number, issued from one counter per home. Every save, and
every refusal, is an audit event `draft` (sha256 of the bytes, format, label,
copy number; the title sealed to the officer).
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import os
from dataclasses import dataclass

from appliance.audit import Event
from appliance.config import ensure_dir
from appliance.drafts import FORMATS, Draft, Marking, Section, render
from appliance.engine import Message
from appliance.errors import BlockedError, UsageError
from appliance.fsutil import atomic_writer
from appliance.policy import Level
from appliance.session import Conversation, Session

COPIES = "drafts/copies"  # the home's last copy number issued
MAX_TITLE = 200
HEADINGS = {"ko": ("질문", "답변"), "en": ("Question", "Answer")}


@dataclass(frozen=True)
class SavedDraft:
    data: bytes
    sha256: str
    format: str
    label: Level
    copy: int | None  # for classified levels


def save_draft(
    session: Session,
    conversation: Conversation,
    fmt: str,
    *,
    whole: bool = False,
    title: str | None = None,
    task: str | None = None,
    conversation_id: str | None = None,
) -> SavedDraft:
    """Render the last answer (or, `whole`, every exchange) of `conversation`;
    `conversation_id`: the saved conversation it is, for the audit log."""
    session.check_active()
    session.principal.require("drafts.save")
    if fmt not in FORMATS:
        raise UsageError(
            f"a draft is one of {', '.join(FORMATS)}, not {fmt[:20]!r}",
            code="draft_format",
            format=fmt[:20],
        )
    messages = conversation.messages
    if not any(message.role == "assistant" for message in messages):
        raise UsageError("there is no answer to save yet", code="draft_empty")
    policy, language = session.policy, session.policy.language
    label = conversation.label or session.level
    label = label if label.rank >= session.level.rank else session.level
    details: dict[str, object] = {
        "format": fmt,
        "scope": "conversation" if whole else "answer",
        **({"task": task} if task else {}),
        **({"conversation": conversation_id} if conversation_id else {}),
    }
    if label.rank > session.clearance.rank:
        _refuse(session, label, details, "clearance")
        raise BlockedError(
            f"the conversation is labelled {label.name(language)}, above the clearance of "
            f"{session.principal.user} ({session.clearance.name(language)})",
            code="draft_clearance", level=label.name(language),
        )  # fmt: skip
    allowed = policy.draft_level()
    if label.rank > allowed.rank:
        _refuse(session, label, details, "export_level")
        raise BlockedError(
            f"policy {policy.describe()} lets no draft above {allowed.name(language)} leave "
            f"the appliance; this conversation is {label.name(language)}",
            code="draft_level", level=label.name(language), allowed=allowed.name(language),
        )  # fmt: skip
    today = datetime.datetime.now(datetime.UTC)
    copy = next_copy(session) if policy.classified(label) else None
    marking = Marking(label.name(language))
    if copy is not None:
        until = policy.drafts.until(today.date())
        marking = Marking(
            label.name(language),
            notice=policy.drafts.wording("notice", language).format(
                until=f"{until.year}. {until.month}. {until.day}.", level=label.name(language)
            ),
            copy=policy.drafts.wording("copy", language).format(copy=copy),
        )
    title = _title(title, messages, language)
    draft = Draft(title, marking, _sections(messages, whole, language), today)
    data = render(draft, fmt)
    digest = hashlib.sha256(data).hexdigest()
    details |= {"sha256": digest, "bytes": len(data), **({"copy": copy} if copy else {})}
    event = Event(session.actor, "draft", session.model, label=label.id, details=details)
    session.audit.record(event, {"title": title})
    return SavedDraft(data, digest, fmt, label, copy)


def next_copy(session: Session) -> int:
    """The next copy number of this home, under a lock, durable before it is used."""
    path = ensure_dir(session.home / os.path.dirname(COPIES)) / os.path.basename(COPIES)
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            last = int(path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            last = 0
        except ValueError:
            raise UsageError(f"{path} does not hold a copy number", code="draft_copies") from None
        with atomic_writer(path) as sink:
            sink.write(f"{last + 1}\n".encode("ascii"))
        return last + 1
    finally:
        os.close(lock)  # and with it the lock


def _refuse(session: Session, label: Level, details: dict[str, object], reason: str) -> None:
    details = {**details, "reason": reason, "clearance": session.clearance.id}
    event = Event(session.actor, "draft", session.model, "denied", label.id, details)
    session.audit.record(event)


def _title(title: str | None, messages: list[Message], language: str) -> str:
    if title is not None:
        title = " ".join(title.split())
        if not title or len(title) > MAX_TITLE or not title.isprintable():
            raise UsageError(
                f"a draft's title is 1-{MAX_TITLE} printable characters", code="draft_title"
            )
        return title
    first = " ".join(next(m.content for m in messages if m.role == "user").split())
    if not first:
        return "초안" if language == "ko" else "Draft"
    return first[:60] + ("…" if len(first) > 60 else "")


def _sections(messages: list[Message], whole: bool, language: str) -> tuple[Section, ...]:
    if not whole:
        answer = next(m.content for m in reversed(messages) if m.role == "assistant")
        return (Section(None, answer),)
    asked, answered = HEADINGS[language]
    return tuple(
        Section(asked if m.role == "user" else answered, m.content)
        for m in messages
        if m.role in ("user", "assistant")
    )
