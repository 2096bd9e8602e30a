"""`appliance ask` and `appliance chat`: answers streamed from the local model."""

from __future__ import annotations

import argparse
import contextlib
import hmac
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from appliance import adapters, catalog, seal
from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.bundle.manifest import model_pin
from appliance.cli import client
from appliance.cli.askfile import add_file_option, check_file_options, load_file, open_file
from appliance.cli.audit import warn_if_metadata_only
from appliance.cli.auth import add_auth_options, sign_in
from appliance.cli.drafts import add_draft_options, draft_target, report_saved
from appliance.cli.passphrase import openers
from appliance.cli.progress import byte_progress
from appliance.cli.seal import add_open_options
from appliance.config import EngineSettings, GenerationParams, appliance_home, load_home_config
from appliance.documents.answers import describe, ground
from appliance.documents.home import open_documents
from appliance.documents.library import Library
from appliance.documents.onefile import OneFile
from appliance.drafting import save_draft
from appliance.engine import AdapterFile, ChatEngine, load_engine
from appliance.engine.remote import RemoteEngine
from appliance.errors import ConfigError, IntegrityError, UsageError
from appliance.fsutil import atomic_writer
from appliance.grounding import Grounding
from appliance.policy import Policy, active_policy
from appliance.policy.egress import report_to
from appliance.remote_engines import open_remote
from appliance.seal import harden_process
from appliance.service import find_service
from appliance.session import (
    Conversation,
    Session,
    Turn,
    check_airgap,
    session_level,
    start_conversation,
    task_params,
)
from appliance.textsafe import printable

CHAT_HELP = client.CHAT_HELP


def register(commands: Any) -> None:
    ask = commands.add_parser("ask", help="answer one prompt, streamed to stdout")
    ask.add_argument("prompt", help="the prompt, or - to read it from standard input")
    _add_options(ask)
    ask.add_argument("--stats", action="store_true", help="print token counts and speed on stderr")
    add_draft_options(ask, save=True)
    ask.set_defaults(run=run_ask)

    chat = commands.add_parser("chat", help="line-mode chat (for scripts and SSH)")
    _add_options(chat)
    add_draft_options(chat, save=False)
    chat.set_defaults(run=run_chat)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model, how to open it if sealed, and how llama.cpp runs it."""
    parser.add_argument(
        "--model", help="catalog id, or a .gguf or sealed file (default: the default model)"
    )
    add_open_options(parser)
    parser.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads (default: one per physical core)"
    )
    parser.add_argument(
        "--context",
        type=int,
        metavar="N",
        help=f"context window in tokens, per answer (default: the home's config, "
        f"else {EngineSettings().context_length})",
    )


def _add_options(parser: argparse.ArgumentParser) -> None:
    defaults = GenerationParams()
    add_model_options(parser)
    add_auth_options(parser)
    parser.add_argument(
        "--level", metavar="LEVEL", help="classification level of the session (a policy level id)"
    )
    parser.add_argument("--system", help="system prompt")
    parser.add_argument(
        "--task", metavar="ID", help="a task preset of the policy (its system prompt and options)"
    )
    parser.add_argument(
        "--max-tokens", type=int, metavar="N", help=f"(default: {defaults.max_tokens})"
    )
    parser.add_argument(
        "--temperature", type=float, metavar="T", help=f"(default: {defaults.temperature})"
    )
    parser.add_argument("--seed", type=int, metavar="S", help="fix sampling (default: random)")
    parser.add_argument(
        "--docs", action="store_true", help="answer from your documents, citing them as [n]"
    )
    parser.add_argument(
        "--collection", metavar="NAME", help="with --docs: only this collection's documents"
    )
    add_file_option(parser)


def run_ask(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    check_file_options(args)
    _check_params(args)
    service = find_service(appliance_home())
    if service is not None:
        return client.ask(args, service, prompt)
    site_folder = load_home_config(appliance_home()).exports
    target = None  # checked before the model loads
    if args.save is not None:
        target = draft_target(args.save, args.exports, site_folder)
    data = load_file(args, in_process=True)  # so is the file
    with open_session(args) as session:
        conversation = start_conversation(session.policy, args.system, args.task)
        grounding = _ground(args, session, prompt, open_file(args, session, data))
        turn = session.turn(conversation, prompt, _params(args, session.policy), grounding)
        stream_to(turn, sys.stdout)
        sys.stdout.write("\n")
        if target is not None and turn.outcome == "ok":
            _save_draft(session, conversation, target, args.title)
        if grounding is not None:
            client.print_sources({"sources": describe(grounding, session.policy.language)},
                                 sys.stdout)  # fmt: skip
        if args.stats:
            stats = turn.stats
            print(
                f"[{stats.prompt_tokens} prompt tokens, {stats.completion_tokens} generated "
                f"at {stats.tokens_per_second:.1f} tokens/s, finish: {stats.finish_reason}]",
                file=sys.stderr,
            )
    return 0


def run_chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    check_file_options(args)
    _check_params(args)
    service = find_service(appliance_home())
    if service is not None:
        return client.chat(args, service, _read_lines(interactive), interactive)
    data = load_file(args, in_process=True)
    with open_session(args) as session:
        params = _params(args, session.policy)
        one = open_file(args, session, data)  # read once; it grounds every turn
        if interactive:
            info = session.engine.info
            name = printable(info.name)  # from the model file
            print(f"{name} ({info.quantization}), local. {CHAT_HELP}", file=sys.stderr)
        conversation = start_conversation(session.policy, args.system, args.task)

        def answer(line: str) -> int:
            grounding = _ground(args, session, line, one)
            turn = session.turn(conversation, line, params, grounding)
            stream_to(turn, sys.stdout)
            if grounding is not None and grounding.sources:
                sources = describe(grounding, session.policy.language)
                sys.stdout.write("\n")
                client.print_sources({"sources": sources}, sys.stdout)
            return turn.stats.dropped_messages

        def save(name: str) -> None:
            target = draft_target(name, args.exports, load_home_config(session.home).exports)
            _save_draft(session, conversation, target, None, whole=True)

        client.chat_loop(_read_lines(interactive), interactive, conversation.reset, answer, save)
    return 0


@contextlib.contextmanager
def open_session(args: argparse.Namespace) -> Iterator[Session]:
    """Policy, audit log, sign-in, air gap, then the model: every check before any answer."""
    home = appliance_home()
    policy = active_policy(home)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(AuditLog(audit_dir(home), require_content=policy.require_content))
        report_to(lambda event, target: _record_egress(log, event, target))
        principal = sign_in(args, home, policy, log)
        actor = Actor(principal.user, principal.role)
        level = session_level(policy, principal, args.level, log)
        airgap = check_airgap(home, policy, actor, log)
        details = {"policy": policy.name, "version": policy.version, "sha256": policy.sha256}
        log.record(Event(actor, "start", "appliance", details={**details, "airgap": airgap}))
        log.start_heartbeat(actor)
        engine, model = stack.enter_context(open_engine(args))
        warn_if_metadata_only(log)  # once the model loaded: a failure stays one line
        yield Session(home, engine, log, policy, principal, model, level)


def _ground(
    args: argparse.Namespace, session: Session, question: str, one: OneFile | None = None
) -> Grounding | None:
    """With --file or --docs and no service: the file's chunks for the question, or
    retrieval in this process, as the signed-in user."""
    if one is not None:
        session.check_still_allowed()
        return one.ground(question)
    if not args.docs:
        return None
    session.check_still_allowed()
    harden_process()  # this process is about to hold document text
    with open_documents(session.home, session.audit) as store:
        library = Library(session.home, session.policy, session.audit, session.principal, store)
        return ground(library, question, collection=args.collection)


def _record_egress(log: AuditLog, event: str, target: str) -> None:
    details = {"egress": event, "target": target}
    log.record(
        Event(Actor("appliance", "system"), "policy_block", "network", "denied", None, details)
    )


@contextlib.contextmanager
def open_engine(args: argparse.Namespace) -> Iterator[tuple[ChatEngine, str]]:
    """The loaded model (with the home's adapters for it), and the name the audit
    log gives it.

    The home's config.toml chooses the backend ([engine] backend: in this process,
    or a llama-server child answering `slots` requests at once) and its defaults;
    --context and --threads override them.
    """
    with open_engines(args, None) as (engine, _, name):
        yield engine, name


@contextlib.contextmanager
def open_engines(
    args: argparse.Namespace, policy: Policy | None
) -> Iterator[tuple[ChatEngine, RemoteEngine | None, str]]:
    """As `open_engine`, and with a `policy` that allows remote engines, the GPU
    servers the home's config.toml lists (None where there are none)."""
    home = appliance_home()
    config = load_home_config(home)
    settings = config.engine_settings(context_length=args.context, threads=args.threads)
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(open_model(args))
        remote = None
        if policy is not None:
            remote = open_remote(config.remotes, policy, model.path, settings, model.verified)
            if remote is not None:
                stack.enter_context(remote)
        if settings.backend == "remote":  # no weights here: the servers answer every turn
            if remote is None:
                raise ConfigError(
                    'the "remote" backend needs GPU servers ([[remote]] in config.toml) '
                    "and a policy that allows them ([remote] allowed)"
                )
            yield remote, remote, model.name
            return
        loaded: list[AdapterFile] = []
        if any(record.base == model.name for record in adapters.listed(home)):
            loaded = stack.enter_context(adapters.opened(home, model.name, model.keys()))
        engine = stack.enter_context(
            load_engine(model.path, settings, verified=model.verified, adapters=loaded)
        )
        yield engine, remote, model.name


@dataclass
class OpenModel:
    """The model a command serves: the file (or sealed memfd) llama.cpp opens, whether
    its bytes are authenticated, its audit name, and the keys of the site identity."""

    path: str | Path
    verified: bool
    name: str
    args: argparse.Namespace
    _keys: list[seal.Opener] | None = None

    def keys(self) -> list[seal.Opener]:
        """What opens the site's sealed files (the model's, else the identities given)."""
        if self._keys is None:
            given = self.args.identity
            self._keys = openers(given, self.args.passphrase_file) if given else []
        return self._keys


@contextlib.contextmanager
def open_model(args: argparse.Namespace, *, adapting: bool = False) -> Iterator[OpenModel]:
    """The command line's model, else the home's: a sealed one decrypted into sealed
    memory (closed on exit), a catalogued one checked against its pin. The site
    identity (--identity) opens a sealed model, and the adapters of any model
    (`adapting`: one is being added; else the home has some for this model)."""
    home = appliance_home()
    args = _home_model(args)
    if args.model is None or not seal.is_sealed(args.model):
        path, verified, name = resolve_model(args.model)
        ours = adapting or any(record.base == name for record in adapters.listed(home))
        if args.content_id or (args.identity and not ours):
            raise UsageError("--identity and --content-id apply to sealed models only")
        yield OpenModel(path, verified, name, args)
        return
    keys = openers(args.identity, args.passphrase_file)
    with contextlib.closing(open_sealed(args, keys)) as sealed:
        verified = sealed_is_pinned(sealed) or sealed.pinned
        report = sealed.report
        print(f"[{sealed.header.content_id}: {report.describe()}]", file=sys.stderr)
        if report.warning:
            print(f"warning: {report.warning}", file=sys.stderr)
        yield OpenModel(sealed.path, verified, sealed.header.content_id, args, keys)


def _home_model(args: argparse.Namespace) -> argparse.Namespace:
    """The home's configured model and identities, unless the command line names a model."""
    if args.model is not None:
        return args
    config = load_home_config(appliance_home())
    if config.model is None:
        return args
    identities = args.identity or list(config.identities)
    home_model = {"model": str(config.model), "identity": identities, "manifest": config.manifest}
    return argparse.Namespace(**{**vars(args), **home_model})


def open_sealed(args: argparse.Namespace, keys: list[seal.Opener]) -> seal.SealedModel:
    source = Path(args.model)
    manifest = getattr(args, "manifest", None)  # the home's installed release pins its model
    pin = model_pin(manifest) if manifest is not None else None
    with byte_progress(f"Unsealing {source.name}") as progress:
        return seal.load_sealed(
            source,
            keys,
            expect_content_id=args.content_id or (pin.content_id if pin else None),
            expect_sha256=pin.model_sha256 if pin else None,
            progress=progress,
        )


def sealed_is_pinned(sealed: seal.SealedModel) -> bool:
    """Whether a sealed model is a catalogued one, byte for byte.

    A sealed file claiming a catalog content id must decrypt to exactly the
    pinned bytes. Anyone holding a recipient can seal a file, so other sealed
    models are treated like any file from outside the catalog.
    """
    entry = catalog.load_catalog().by_content_id(sealed.header.content_id)
    if entry is None:
        return False
    if not hmac.compare_digest(sealed.sha256, entry.sha256):
        raise IntegrityError(
            f"the sealed model claims to be {entry.content_id} but its contents differ "
            "from the catalog's pinned sha256"
        )
    return True


def resolve_model(name: str | None) -> tuple[Path, bool, str]:
    """The model file, whether its bytes are authenticated, and its audit name.

    A catalog id resolves to its prepared file, checked against the pinned
    sha256; anything else is a path to a GGUF file from outside the catalog.
    """
    known = catalog.load_catalog()
    if name is not None and name not in known.entries:
        return Path(name), False, Path(name).name
    entry = known.get(name) if name else known.default_entry
    home = appliance_home()
    if not catalog.model_path(entry, home).is_file():
        with byte_progress(f"Preparing {entry.id}") as progress:
            return catalog.prepare(entry, home, progress), True, entry.content_id
    return catalog.verified_path(entry, home), True, entry.content_id


def stream_to(turn: Turn, out: TextIO) -> str:
    """Write the answer; Ctrl-C cancels generation cleanly.

    A pipe cannot take back what it received, so unless the user is cleared
    to the policy's top level the answer is written only once it is complete:
    a marking near its end may still raise its label above the clearance.
    Closing the turn records the answer; if that fails, so does the command.
    """
    stream = turn.session.top_cleared
    try:
        for piece in turn:
            if stream:
                out.write(piece)
                out.flush()
    except KeyboardInterrupt:
        turn.cancel()
        raise
    finally:
        turn.close()
    if not stream:
        out.write(turn.text)
        out.flush()
    return turn.text


def _check_params(args: argparse.Namespace) -> None:
    """The sampling options the user gave are valid, before anything opens."""
    defaults = GenerationParams()
    GenerationParams(
        max_tokens=defaults.max_tokens if args.max_tokens is None else args.max_tokens,
        temperature=defaults.temperature if args.temperature is None else args.temperature,
        seed=args.seed or 0,
    )


def _params(args: argparse.Namespace, policy: Policy) -> GenerationParams:
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    max_tokens, temperature = task_params(policy, args.task, args.max_tokens, args.temperature)
    return GenerationParams(max_tokens=max_tokens, temperature=temperature, seed=seed)


def _save_draft(
    session: Session,
    conversation: Conversation,
    target: tuple[Path, str],
    title: str | None,
    *,
    whole: bool = False,
) -> None:
    """With no service: the draft rendered and audited here, written as the service's
    client writes it."""
    path, fmt = target
    draft = save_draft(session, conversation, fmt, whole=whole, title=title, task=conversation.task)
    with atomic_writer(path, mode=0o600) as sink:
        sink.write(draft.data)
    language = session.policy.language
    report_saved(
        path, {"label_name": draft.label.name(language), "copy": draft.copy, "sha256": draft.sha256}
    )


def _read_lines(interactive: bool) -> Iterator[str]:
    """User turns: prompted lines on a terminal, plain lines from a pipe."""
    if not interactive:
        for raw in sys.stdin:
            line = raw.strip()
            if line:
                yield line
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  - line editing and history for input()
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        if line:
            yield line
