"""The request path: one turn of chat, audited before and after.

A turn records its `ask` event (the prompt sealed to the security officer)
durably before the model sees the prompt, and its `answer` event when the
answer ends, however it ends (finished, cancelled, failed). If either write
fails the turn fails: no unaudited answer is generated, and an answer whose
record could not be written ends in an AuditError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.audit import Actor, AuditLog, Event
from appliance.config import GenerationParams
from appliance.engine import Engine, Generation, GenerationStats, Message
from appliance.errors import ApplianceError


@dataclass
class Session:
    """One user's conversation with one model, every turn audited."""

    engine: Engine
    audit: AuditLog
    actor: Actor
    model: str  # what the audit log names as the object: a content id or file name

    def turn(self, messages: Sequence[Message], params: GenerationParams) -> Turn:
        """Start answering the last user message; iterate the result for text."""
        prompt = messages[-1].content
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
        }
        ask_seq = self.audit.record(Event(self.actor, "ask", self.model, details=details), content)
        turn = Turn(self, ask_seq)
        try:
            turn.generation = self.engine.chat(list(messages), params)
        except ApplianceError as exc:
            turn.finish("failed", error=type(exc).__name__)
            raise
        return turn


class Turn(Iterator[str]):
    """An answer in progress; close() records how it ended."""

    def __init__(self, session: Session, ask_seq: int) -> None:
        self.session = session
        self.ask_seq = ask_seq
        self.generation: Generation | None = None
        self._parts: list[str] = []
        self._outcome = "ok"
        self._error: str | None = None
        self._recorded = False

    @property
    def stats(self) -> GenerationStats:
        assert self.generation is not None
        return self.generation.stats

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def __next__(self) -> str:
        assert self.generation is not None
        try:
            piece = next(self.generation)
        except StopIteration:
            raise
        except ApplianceError as exc:
            self._outcome, self._error = "failed", type(exc).__name__
            raise
        self._parts.append(piece)
        return piece

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
        session = self.session
        event = Event(session.actor, "answer", session.model, outcome, details=details)
        session.audit.record(event, {"answer": self.text})
