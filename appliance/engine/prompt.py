"""The prompt every backend sends: the conversation rendered, tokenized and fitted.

Both backends (in-process and llama-server) build the prompt here, with the
appliance's own chat format, so an answer does not depend on which serves it.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.engine.chat import ChatFormat, Message
from appliance.errors import ContextOverflowError

# Share of the context window kept free for the answer when history is trimmed.
ANSWER_SHARE = 4


def fit(
    messages: list[Message],
    max_tokens: int,
    context_length: int,
    chat_format: ChatFormat,
    tokenize: Callable[[str], list[int]],
) -> tuple[list[int], int]:
    """The prompt's tokens and how many messages were left out.

    The answer is given `min(max_tokens, context/4)` tokens of room; the oldest
    user/assistant exchanges are left out until the rest fits. A prompt that
    cannot fit alone is a ContextOverflowError.
    """
    reserve = min(max_tokens, context_length // ANSWER_SHARE)
    budget = context_length - reserve
    head = messages[:1] if messages and messages[0].role == "system" else []
    turns = messages[len(head) :]
    dropped = 0
    while True:
        tokens = tokenize(chat_format.render(head + turns))
        if len(tokens) <= budget:
            return tokens, dropped
        if len(turns) <= 1:
            raise ContextOverflowError(
                f"the prompt needs {len(tokens)} tokens but the context window "
                f"of {context_length} leaves room for {budget}",
                needed=len(tokens),
                room=budget,
            )
        turns = turns[2:]  # one user/assistant exchange, oldest first
        dropped += 2


def one_bos(tokens: list[int], bos: int) -> list[int]:
    """Tokens with one BOS at the start: the template may have written it already."""
    if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
        return tokens[1:]
    return tokens
