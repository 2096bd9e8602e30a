"""Turn a conversation into prompt text, the way the model was trained to read it.

The model's own Jinja template (`tokenizer.chat_template` in the GGUF) is
rendered in Jinja's immutable sandbox: a template is data from the model file,
and data must not reach Python objects. Base models without a template get a
plain "User:/Assistant:" transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from appliance.errors import EngineError, ModelFormatError, UsageError

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise UsageError(f"unknown chat role '{self.role}'")


class ChatFormat:
    """Renders messages to prompt text with a model's template or the plain fallback."""

    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.uses_model_template = template is not None
        self._template = _compile(template) if template is not None else None
        # A plain transcript ends where the model starts writing another turn.
        self.stop_strings: tuple[str, ...] = () if template else ("\nUser:", "\nAssistant:")

    def render(self, messages: list[Message]) -> str:
        """The prompt for the model's next assistant turn."""
        check_conversation(messages)
        if self._template is None:
            return _plain(messages)
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=True,
            )
        except jinja2.TemplateError as exc:
            raise EngineError(
                f"the model's chat template rejected the conversation: {exc}"
            ) from None


def check_conversation(messages: list[Message]) -> None:
    """An optional system message, then user/assistant turns ending with the user."""
    turns = messages[1:] if messages and messages[0].role == "system" else messages
    if not turns or turns[-1].role != "user":
        raise UsageError("a conversation must end with a user message")
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.role != expected:
            raise UsageError("conversation turns must alternate between user and assistant")


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ModelFormatError(f"the model's chat template is not valid Jinja: {exc}") from None


def _plain(messages: list[Message]) -> str:
    parts: list[str] = []
    for message in messages:
        if message.role == "system":
            parts.append(f"{message.content}\n\n")
        elif message.role == "user":
            parts.append(f"User: {message.content}\n")
        else:
            parts.append(f"Assistant: {message.content}\n")
    parts.append("Assistant:")
    return "".join(parts)
