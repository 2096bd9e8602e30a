"""Commands as clients of the appliance service: sign-in, `ask` and `chat` over its socket.

The service decides everything (policy, DLP, labels, audit); the client reads
what the user types and writes what the service sends. It never holds more
than the user is allowed to see: the service sends an answer piece by piece
only where no later marking can take it back, else whole at its end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from appliance.cli.askfile import file_fields, load_file
from appliance.cli.auth import changing_own_password
from appliance.cli.drafts import draft_target, report_saved
from appliance.errors import AuthenticationError, BlockedError, ContextOverflowError, UsageError
from appliance.service import Answer, Client
from appliance.textsafe import printable

CHAT_HELP = (
    "Commands: /reset forgets the conversation, /save NAME.hwpx|.docx|.md saves it as a "
    "draft, /exit quits (or Ctrl-D)."
)
_LOCAL_ONLY = ("model", "identity", "content_id", "passphrase_file", "threads")


def refuse_local_options(args: argparse.Namespace) -> None:
    """Model options choose what an in-process command loads; the service has its model."""
    for name in _LOCAL_ONLY:
        if getattr(args, name, None):
            option = "--" + name.replace("_", "-")
            raise UsageError(
                f"{option} applies to a command that runs in-process; the appliance "
                "service serves its own model"
            )


@contextlib.contextmanager
def signed_in_client(args: argparse.Namespace, path: Path) -> Iterator[Client]:
    """A connection to the service, signed in as --user (or in development mode)."""
    from appliance.cli.passphrase import read_secret

    with Client(path) as client:
        user = getattr(args, "user", None)
        password = read_secret(args.password_file, f"Password for {user}") if user else None
        result = client.sign_in(user, password, getattr(args, "level", None))
        if result.get("development") and sys.stderr.isatty():
            print(
                f"DEVELOPMENT MODE: no users exist; the service runs this as "
                f"{printable(str(result.get('user')))} with every role",
                file=sys.stderr,
            )
        if result.get("must_change") and not changing_own_password(args):
            _replace_password(client, str(user), password or "", args)
        yield client


def _replace_password(client: Client, user: str, old: str, args: argparse.Namespace) -> None:
    from appliance.cli.passphrase import read_secret

    if not sys.stdin.isatty():
        raise AuthenticationError(
            f"the password of {user} was set by someone else; set your own first "
            f"with 'appliance users passwd {user} --user {user}'"
        )
    print(f"The password of {user} was set by someone else: choose your own.", file=sys.stderr)
    new = read_secret(None, f"New password for {user}", confirm=True)
    client.passwd(new)
    client.sign_in(user, new, getattr(args, "level", None))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "system": args.system,
        "task": args.task,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "docs": getattr(args, "docs", False) or None,
        "collection": getattr(args, "collection", None),
    }


def print_sources(result: dict[str, Any], out: TextIO) -> None:
    """Under a grounded answer: the numbered sources it was given, version and label."""
    sources = result.get("sources") or []
    for source in sources:
        details = [str(source.get("label_name"))]
        if source.get("effective"):
            details.append(f"in force {source['effective']}")
        if source.get("superseded"):
            details.append("superseded")
        where = f", {source['place']}" if source.get("place") else ""
        out.write(
            f"[{source.get('n')}] {printable(str(source.get('title')))}{printable(where)} "
            f"({printable(', '.join(details))}) {source.get('document')}\n"
        )


def ask(args: argparse.Namespace, path: Path, prompt: str) -> int:
    refuse_local_options(args)
    data = load_file(args, in_process=False)
    with signed_in_client(args, path) as client:
        target = None
        if args.save is not None:  # checked before the question is asked
            target = draft_target(args.save, args.exports, client.hello().get("exports"))
        named = file_fields(client, args.file, data)
        answer = client.ask(prompt, conversation="ask", **_options(args), **named)
        result = stream(answer, sys.stdout)
        sys.stdout.write("\n")
        print_sources(result, sys.stdout)
        if target is not None and result.get("outcome") == "ok":
            draft, fmt = target
            saved = client.draft_to(draft, conversation="ask", format=fmt, title=args.title)
            report_saved(draft, saved)
        if args.stats:
            print(
                f"[{result.get('prompt_tokens')} prompt tokens, "
                f"{result.get('completion_tokens')} generated at "
                f"{result.get('tokens_per_second', 0):.1f} tokens/s, "
                f"finish: {result.get('finish')}]",
                file=sys.stderr,
            )
    return 0


def chat(args: argparse.Namespace, path: Path, lines: Iterator[str], interactive: bool) -> int:
    refuse_local_options(args)
    data = load_file(args, in_process=False)
    with signed_in_client(args, path) as client:
        if interactive:
            hello = client.hello()
            model = printable(str(hello.get("model")))
            print(f"{model}, served by the appliance service. {CHAT_HELP}", file=sys.stderr)

        def answer(line: str) -> int:
            named = file_fields(client, args.file, data)  # an upload serves one ask
            result = stream(
                client.ask(line, conversation="chat", **_options(args), **named), sys.stdout
            )
            if result.get("sources"):
                sys.stdout.write("\n")
                print_sources(result, sys.stdout)
            return int(result.get("dropped_messages") or 0)

        def save(name: str) -> None:
            draft, fmt = draft_target(name, args.exports, client.hello().get("exports"))
            saved = client.draft_to(draft, conversation="chat", format=fmt, whole=True)
            report_saved(draft, saved)

        chat_loop(
            lines, interactive, lambda: client.call("reset", conversation="chat"), answer, save
        )
    return 0


def chat_loop(
    lines: Iterator[str],
    interactive: bool,
    reset: Callable[[], object],
    answer: Callable[[str], int],
    save: Callable[[str], None],
) -> None:
    """The chat's commands and turns, in-process or through the service alike.

    `answer` writes the answer to a line and returns how many older messages
    were left out to fit the context. On a terminal a refused or interrupted
    question is reported and the chat goes on; in a script it ends the command.
    """
    for line in lines:
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            reset()
            continue
        if line == "/help":
            print(CHAT_HELP, file=sys.stderr)
            continue
        if line == "/save" or line.startswith("/save "):
            try:
                save(line.removeprefix("/save").strip())
            except (UsageError, BlockedError) as exc:
                if not interactive:
                    raise
                print(f"[{printable(str(exc))}]", file=sys.stderr)
            continue
        try:
            dropped = answer(line)
        except (ContextOverflowError, BlockedError, KeyboardInterrupt) as exc:
            if not interactive:
                raise
            print(f"\n[{printable(str(exc)) or 'cancelled'}]", file=sys.stderr)
            continue
        sys.stdout.write("\n\n" if interactive else "\n")
        sys.stdout.flush()
        if dropped:
            print(f"[{dropped} older messages left out to fit the context]", file=sys.stderr)


def stream(answer: Answer, out: TextIO) -> dict[str, Any]:
    """Write the answer as it arrives; Ctrl-C asks the service to stop it."""
    if sys.stderr.isatty():
        answer.on_queued = lambda ahead: print(
            f"[the appliance is busy: {ahead} answer(s) ahead]", file=sys.stderr
        )
    try:
        for piece in answer:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        answer.cancel()
        for _ in answer:  # what the service sends until it confirms the cancel
            pass
        raise
    assert answer.result is not None
    if answer.result.get("outcome") == "cancelled":
        reason = "it ran too long" if answer.result.get("timed_out") else "it was cancelled"
        print(f"\n[the answer was stopped: {reason}]", file=sys.stderr)
    return answer.result
