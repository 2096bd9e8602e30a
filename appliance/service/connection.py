"""One client's connection: its sign-in, its conversations, its answers.

The session belongs to the connection that signed in: the session id a
client must send with every request is compared (in constant time) with this
connection's own, so a session id read elsewhere is worth nothing here. What
a client sends is checked by `protocol` before anything acts on it, and what
it is sent goes through an outbox of bounded size: a client that stops
reading loses its connection, the engine never waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import os
import pwd
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.accounts import AccountAdmin, first_accounts
from appliance.audit import Actor, Event
from appliance.backup import require_backup
from appliance.config import GenerationParams
from appliance.documents.answers import describe, ground
from appliance.drafting import save_draft
from appliance.errors import (
    ApplianceError,
    AuthenticationError,
    BusyError,
    PermissionDeniedError,
    UsageError,
)
from appliance.grounding import Grounding
from appliance.policy.airgap import attest
from appliance.policy.override import current, site_passages
from appliance.seal import Recipient
from appliance.service import accounts
from appliance.service.auditing import AuditCalls, checkpoint
from appliance.service.documents import DocumentCalls
from appliance.service.endpoint import Peer
from appliance.service.protocol import (
    LineReader,
    ProtocolError,
    Request,
    decode,
    encode,
    error_body,
    parse_request,
)
from appliance.service.queue import Job
from appliance.service.saved import Kept, SavedConversations, not_saved, saved_calls
from appliance.session import (
    Conversation,
    Session,
    authenticate,
    development_mode,
    grant_airgap_override,
    session_level,
    start_conversation,
    task_params,
)

if TYPE_CHECKING:
    from appliance.service.server import Server

log = logging.getLogger("appliance.service")

SIGN_IN_SECONDS = 60.0  # a connection that has not signed in by then is closed
SEND_SECONDS = 30.0  # a client that takes longer to accept a message is dropped
OUTBOX_BYTES = 4 << 20  # what may wait for a slow reader before it is dropped
MAX_CONVERSATIONS = 16  # per connection
TEXT_CHUNK = 64 << 10  # characters per message when a whole answer is sent at once
DRAFT_PART = 384 << 10  # bytes of a draft per message (512 KiB as base64)
PASSWORD_CALLS = ("authorize_password", "set_password")
SESSION_ENDED = ("idle", "account_changed")  # Session's own refusals: it signed itself out


@dataclass(frozen=True)
class Question:
    """An `ask` as the engine's thread takes it up."""

    request_id: int
    session: Session
    conversation: Conversation
    prompt: str
    params: GenerationParams
    saved: SavedConversations | None = None  # where to save it once answered, if asked to
    docs: bool = False  # ground the answer in the user's documents
    collection: str | None = None  # only this collection's
    grounding: Grounding | None = None  # from one uploaded file (`file`), read already


class Outbox:
    """Messages for one client, written by their own thread within SEND_SECONDS each."""

    def __init__(self, sock: socket.socket, on_failure: Callable[[], None]) -> None:
        self._sock = sock.dup()  # its own timeout, apart from the reader's
        self._sock.settimeout(SEND_SECONDS)
        self._items: deque[bytes] = deque()
        self._size = 0
        self._changed = threading.Condition()
        self._closed = False
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._write, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: dict[str, Any], *, wait: float | None = None) -> bool:
        """Queue a message; False if the client is gone or not reading.

        With `wait`, a producer that can pause (an export) waits up to that
        long for room instead of giving the client up at once.
        """
        data = encode(message)
        with self._changed:
            if wait is not None:
                deadline = time.monotonic() + wait
                while (
                    not self._closed
                    and self._size + len(data) > OUTBOX_BYTES // 2
                    and time.monotonic() < deadline
                ):
                    self._changed.wait(deadline - time.monotonic())
            if self._closed:
                return False
            if self._size + len(data) > OUTBOX_BYTES:
                self._closed = True  # the client is not reading: give up on it
                self._changed.notify_all()
                overflow = True
            else:
                self._items.append(data)
                self._size += len(data)
                self._changed.notify_all()
                overflow = False
        if overflow:
            self._on_failure()
        return not overflow

    def close(self, flush_seconds: float = 2.0) -> None:
        """Send what is queued (briefly), then stop."""
        deadline = time.monotonic() + flush_seconds
        with self._changed:
            while self._items and not self._closed and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=SEND_SECONDS + 1)
        self._sock.close()

    def _write(self) -> None:
        while True:
            with self._changed:
                while not self._items and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return  # overflowed or closing: what is left is dropped
                data = self._items.popleft()
                self._size -= len(data)
                self._changed.notify_all()
            try:
                self._sock.sendall(data)
            except OSError:  # gone, or too slow for SEND_SECONDS
                with self._changed:
                    self._closed = True
                    self._changed.notify_all()
                self._on_failure()
                return


class Connection:
    def __init__(self, server: Server, sock: socket.socket, peer: Peer) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.opened = time.time()
        self.session: Session | None = None
        self._session_id = ""
        self._must_change = False
        self._conversations: dict[str, Kept] = {}
        self._saved: SavedConversations | None = None  # the user's store, while signed in
        # The last request that counts as the user's activity (the idle timeout runs from
        # it); before sign-in, the last message (the sign-in timeout runs from it).
        self._last_active = time.monotonic()
        self._pending: dict[int, Job] = {}  # at most one answer at a time
        self._audit: AuditCalls | None = None
        self._documents = DocumentCalls(server)
        self._closing = threading.Event()
        self._close_lock = threading.Lock()
        self._closed = False
        self.outbox = Outbox(sock, self._broken)

    # -- the reader ---------------------------------------------------------------

    def run(self) -> None:
        reader = LineReader(self.sock)
        reason = "disconnected"
        try:
            while not self._closing.is_set():
                left = self._idle_left()
                if left <= 0 and self._pending:
                    left = self._idle_limit()  # waiting for its answer is not idling
                if left <= 0:
                    reason = "idle" if self.session else "no_sign_in"
                    self._tell(0, AuthenticationError(_IDLE[reason], code=reason))
                    break
                self.sock.settimeout(left)
                try:
                    line = reader.read()
                except TimeoutError:
                    continue  # measured again: a request or an answer moved the time
                if line is None:
                    break
                self._handle(line)
        except ProtocolError as exc:
            reason = "protocol error"
            self._tell(0, exc)
        except OSError:
            pass
        finally:
            self.close(reason)

    def _idle_limit(self) -> float:
        if self.session is None:
            return SIGN_IN_SECONDS
        return self.server.policy.idle_timeout_minutes * 60.0

    def _idle_left(self) -> float:
        return self._last_active + self._idle_limit() - time.monotonic()

    def _handle(self, line: bytes) -> None:
        if self.session is None:
            self._last_active = time.monotonic()  # no sign-in yet: any message counts
        message = decode(line)
        raw_id = message.get("id")
        reply_to = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else 0
        try:
            request = parse_request(message)
            if request.op not in ("hello", "sign_in", "setup"):
                self._require_session(request)
            if request.op != "check" or request.args.get("active"):
                self._last_active = time.monotonic()  # the user's activity, not a client's poll
            result = getattr(self, f"_op_{request.op}")(request)
        except ProtocolError:
            raise
        except ApplianceError as exc:
            if isinstance(exc, AuthenticationError):
                self._session_ended(exc)
            self._tell(reply_to, exc)
            return
        except Exception:  # a bug: the client hears one line, the service goes on
            log.exception("request failed")
            self._tell(reply_to, ApplianceError("the service failed; see its log"))
            return
        if result is not None:
            self.outbox.put({"id": request.id, "ok": result})

    def _require_session(self, request: Request) -> None:
        given = request.args["session"].encode("utf-8")
        if self.session is None or not hmac.compare_digest(given, self._session_id.encode()):
            raise AuthenticationError(
                "this connection is not signed in with that session; sign in first",
                code="no_session",
            )
        if self._must_change and not self._changing_own_password(request):
            raise AuthenticationError(
                f"the password of {self.session.principal.user} was set by someone else; "
                "set your own first",
                code="must_change",
                user=self.session.principal.user,
            )
        # Idle since the connection's last activity (a client's poll is none); a question
        # runs the full check again on the engine's thread, however long it waited.
        self.session.last_active = self._last_active
        self.session.check_active()

    def _changing_own_password(self, request: Request) -> bool:
        """All a user whose password someone else set may do: set their own (and check in)."""
        if request.op in ("passwd", "sign_out", "check"):
            return True
        args = request.args
        own = self.session is not None and args.get("name") == self.session.principal.user
        return request.op == "users" and own and args["call"] in PASSWORD_CALLS

    # -- operations ---------------------------------------------------------------

    def _op_hello(self, request: Request) -> dict[str, Any]:
        return self.server.hello()

    def _op_sign_in(self, request: Request) -> dict[str, Any]:
        if self.session is not None:
            raise UsageError("this connection is already signed in", code="signed_in")
        server, args = self.server, request.args
        if "user" in args:
            principal = authenticate(
                server.home,
                server.policy,
                server.log,
                args["user"],
                args.get("password", ""),
                os_uid=self.peer.uid,
            )
        else:
            dev = development_mode(server.home, server.policy, self._os_user())
            if dev is None:
                raise AuthenticationError("sign in with a user name and password", code="needed")
            principal = dev
        level = session_level(server.policy, principal, args.get("level"), server.log)
        saved, notice = SavedConversations.at_sign_in(server.home, principal, args.get("password"))
        origin = {"peer_uid": self.peer.uid, "peer_pid": self.peer.pid}
        session = Session(
            server.home,
            server.engine,
            server.log,
            server.policy,
            principal,
            server.model,
            level,
            origin=origin,
            remote=server.remote,
        )
        details = {**origin, "peer_gid": self.peer.gid, "level": level.id}
        try:
            server.log.record(Event(session.actor, "start", "service", details=details))
        except BaseException:
            if saved is not None:
                saved.close()
            raise
        self.session, self._session_id = session, secrets.token_urlsafe(32)
        self._must_change = principal.must_change
        self._saved, self._last_active = saved, time.monotonic()
        return {
            "session": self._session_id,
            "user": principal.user,
            "role": principal.role,
            "clearance": principal.clearance,
            "level": level.id,
            "must_change": principal.must_change,
            "development": principal.dev,
            # Whether answers arrive as they are written: only where no later
            # marking can take back what was shown (docs/formats/protocol.md).
            "streaming": session.top_cleared,
            "conversations": saved is not None,
            "notice": notice,
        }

    def _op_setup(self, request: Request) -> dict[str, Any]:
        """The home's first admin and officer, for a client that could write the home
        itself (root, or the service's own user); refused once any account exists."""
        if self.peer.uid not in (0, os.getuid()):
            raise PermissionDeniedError(
                "only root or the service's own user sets up the home",
                code="setup_denied",
            )
        server, args = self.server, request.args
        escrow = Recipient.parse(args["escrow"]) if "escrow" in args else None
        with server.setting_up:  # two at once would each find no account
            first_accounts(
                server.home,
                server.policy,
                server.log,
                Actor(self._os_user(), "setup"),
                (args["admin"], args["admin_password"]),
                (args["officer"], args["officer_password"]),
                escrow,
            )
        return {}

    def _op_passwd(self, request: Request) -> dict[str, Any]:
        session = self._signed_in()
        principal = session.principal
        admin = AccountAdmin(self.server.home, self.server.policy, self.server.log, principal)
        admin.set_password(principal.user, request.args["password"])
        self._end_session("password changed")
        return {"signed_out": True}

    def _op_ask(self, request: Request) -> None:
        session, args = self._signed_in(), request.args
        if self._pending:
            raise UsageError(
                "one answer at a time on a connection: wait for it or cancel it",
                code="one_at_a_time",
            )
        saved = None
        if args.get("save"):
            if "conversation" not in args:
                raise UsageError("ask: 'save' needs a 'conversation' to save", code="bad_field")
            saved = self._require_saved()
        conversation = self._conversation(
            args.get("conversation"), args.get("system"), args.get("task")
        )
        max_tokens, temperature = task_params(
            session.policy, conversation.task, args.get("max_tokens"), args.get("temperature")
        )
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=temperature,
            seed=args["seed"] if "seed" in args else secrets.randbits(32),
            ignore_eos=args.get("ignore_eos", False),
        )
        grounding = self._file_grounding(session, args) if "file" in args else None
        question = Question(
            request.id,
            session,
            conversation,
            args["prompt"],
            params,
            saved,
            docs=bool(args.get("docs")),
            collection=args.get("collection"),
            grounding=grounding,
        )

        def execute(job: Job) -> None:
            self._answer(job, question)

        job = Job(session.principal.user, execute)
        self._pending[request.id] = job
        try:
            ahead = self.server.queue.submit(job)
        except BusyError:
            del self._pending[request.id]
            raise
        if ahead:
            self.outbox.put({"id": request.id, "queued": {"ahead": ahead}})
        return None  # the answer replies when it ends

    def _file_grounding(self, session: Session, args: dict[str, Any]) -> Grounding:
        """An `ask` about one uploaded file: parsed, labelled and chunked here, before the
        question queues (as `docs add` parses), so a slow file holds up no one's answer."""
        try:
            if args.get("docs"):
                raise UsageError("ask: 'file' or 'docs', not both", code="bad_field")
            session.check_still_allowed()
            read = self._documents.read_upload(session, args)
        finally:
            self._documents.discard()  # used once, whatever happened
        return read.ground(args["prompt"])

    def _op_reset(self, request: Request) -> dict[str, Any]:
        self._signed_in()
        self._conversations.pop(request.args["conversation"], None)  # and its saved id
        return {}

    def _op_check(self, request: Request) -> dict[str, Any]:
        """The session holds (checked with every request); how long until it is idle."""
        self._signed_in()
        left = self._idle_limit() if self._pending else max(self._idle_left(), 0.0)
        return {"idle_seconds": round(left)}

    def _op_conversations(self, request: Request) -> dict[str, Any]:
        """The user's saved conversations: list, open one under a name, delete one."""
        session = self._signed_in()
        return saved_calls(
            self._saved, session, request.args, self._conversations, self._check_room
        )

    def _op_cancel(self, request: Request) -> dict[str, Any]:
        self._signed_in()
        target = request.args["request"]
        job = self._pending.get(target)
        if job is None:
            return {"cancelled": False}
        if self.server.queue.withdraw(job):  # never started: nothing was asked or recorded
            self._pending.pop(target, None)
            self.outbox.put({"id": target, "ok": {"outcome": "cancelled"}})
        else:
            job.cancel()
        return {"cancelled": True}

    def _op_status(self, request: Request) -> dict[str, Any]:
        self._signed_in().principal.require("service.status")
        return self.server.status()

    def _op_doctor(self, request: Request) -> dict[str, Any]:
        """`appliance doctor` as the service sees the home, for an admin or an officer."""
        self._signed_in().principal.require("service.status")
        checks = self.server.doctor(checkpoint(request.args.get("trusted")))
        return {"ok": all(found["ok"] is not False for found in checks), "checks": checks}

    def _op_users(self, request: Request) -> dict[str, Any]:
        session = self._signed_in()
        server = self.server
        admin = AccountAdmin(server.home, server.policy, server.log, session.principal)
        return accounts.serve(admin, request.args)

    def _op_airgap(self, request: Request) -> dict[str, Any]:
        """The air gap as the service sees it (its namespace and the host's), or an
        officer's override of the requirement."""
        session, args, server = self._signed_in(), request.args, self.server
        if args["call"] == "override":
            override = grant_airgap_override(
                server.home,
                server.policy,
                server.log,
                session.principal,
                args.get("minutes", 0),
                args.get("reason", ""),
            )
            return {"override": override.describe()}
        if args["call"] != "status":
            raise UsageError(f"airgap: no call {args['call'][:40]!r}", code="unknown_op")
        active = current(server.home, server.policy.airgap_override_max_minutes)
        return {
            "attestation": attest(
                passages=site_passages(server.home, server.policy.remote)
            ).as_json(),
            "override": active.describe() if active else None,
        }

    def _op_audit(self, request: Request) -> dict[str, Any]:
        session = self._signed_in()
        if self._audit is None or self._audit.principal is not session.principal:
            self._audit = AuditCalls(self.server.home, self.server.log, session.principal)

        def send(text: str) -> bool:
            return self.outbox.put({"id": request.id, "data": text}, wait=SEND_SECONDS)

        return self._audit.call(request.args, send)

    def _op_backup(self, request: Request) -> dict[str, Any]:
        """A backup now, an admin's act: the service writes it into the site's folder,
        sealed to the site's recipients (no client chooses either)."""
        session = self._signed_in()
        require_backup(self.server.log, session.principal)
        return self.server.backup(session.actor).to_dict()

    def _op_docs(self, request: Request) -> dict[str, Any]:
        session = self._signed_in()

        def send(message: dict[str, Any]) -> bool:
            return self.outbox.put({"id": request.id, **message}, wait=SEND_SECONDS)

        return self._documents.call(session, request.args, send)

    def _op_draft(self, request: Request) -> dict[str, Any]:
        """A kept conversation rendered as a document, sent in parts; the client writes
        those bytes where its user asked and checks them against the sha256."""
        session, args = self._signed_in(), request.args
        if self._pending:
            raise UsageError(
                "one request at a time on a connection: wait for the answer or cancel it",
                code="one_at_a_time",
            )
        conversation = self._conversations.get(args["conversation"])
        if conversation is None:
            raise UsageError("there is no answer to save yet", code="draft_empty")
        draft = save_draft(
            session,
            conversation,
            args["format"],
            whole=bool(args.get("whole")),
            title=args.get("title"),
            task=conversation.task,
            conversation_id=conversation.saved_id,
        )
        for start in range(0, len(draft.data), DRAFT_PART):
            part = base64.b64encode(draft.data[start : start + DRAFT_PART]).decode("ascii")
            if not self.outbox.put({"id": request.id, "data": part}, wait=SEND_SECONDS):
                raise UsageError("the client stopped reading the draft", code="gone")
        policy = session.policy
        return {
            "sha256": draft.sha256,
            "bytes": len(draft.data),
            "format": draft.format,
            "label": draft.label.id,
            "label_name": draft.label.name(policy.language),
            "copy": draft.copy,
        }

    def _op_sign_out(self, request: Request) -> dict[str, Any]:
        self._signed_in()
        self._end_session("signed out")
        self._closing.set()  # the reply goes out, then the connection closes
        return {}

    # -- answering (on the engine's thread) -----------------------------------------

    def _answer(self, job: Job, question: Question) -> None:
        request_id = question.request_id
        final: dict[str, Any]
        try:
            if job.cancelled.is_set() or self._closing.is_set():
                final = {"ok": {"outcome": "cancelled"}}
            else:
                self.outbox.put({"id": request_id, "started": {}})
                question.session.last_active = time.monotonic()  # waiting was not idling
                final = {"ok": self._run_turn(job, question)}
                if question.saved is not None and final["ok"]["outcome"] == "ok":
                    final["ok"] |= self._save(question.saved, question.conversation)
        except ApplianceError as exc:
            if isinstance(exc, AuthenticationError):
                self._session_ended(exc)
            final = {"error": error_body(exc)}
        except Exception:  # a bug: the client hears one line, the service goes on
            log.exception("answer failed")
            final = {"error": error_body(ApplianceError("the service failed to answer"))}
        # Free the connection for its next question before telling it this one ended;
        # the idle time runs from the answer's end.
        self._last_active = time.monotonic()
        self._pending.pop(request_id, None)
        self.outbox.put({"id": request_id, **final})

    def _run_turn(self, job: Job, question: Question) -> dict[str, Any]:
        request_id, session = question.request_id, question.session
        grounding = question.grounding
        if question.docs:  # retrieval as this user, on the engine's thread, in queue order
            library = self._documents.library(session)
            grounding = ground(library, question.prompt, collection=question.collection)
        turn = session.turn(question.conversation, question.prompt, question.params, grounding)
        job.on_cancel = turn.cancel
        if job.cancelled.is_set():
            turn.cancel()
        streaming = session.top_cleared
        deadline = time.monotonic() + self.server.policy.service.answer_seconds
        timed_out = False
        try:
            for piece in turn:
                if streaming and not self.outbox.put({"id": request_id, "text": piece}):
                    turn.cancel()
                if not timed_out and time.monotonic() > deadline:
                    timed_out = True
                    turn.cancel()
        finally:
            turn.close()  # records the answer, however it ended
        if not streaming and turn.outcome == "ok":
            text = turn.text
            for start in range(0, len(text), TEXT_CHUNK):
                self.outbox.put({"id": request_id, "text": text[start : start + TEXT_CHUNK]})
        stats = turn.stats
        policy = session.policy
        return {
            "outcome": turn.outcome,
            "timed_out": timed_out,
            "label": turn.label.id,
            "label_name": turn.label.name(policy.language),
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "tokens_per_second": round(stats.tokens_per_second, 2),
            "first_token_seconds": stats.time_to_first_token,
            "finish": stats.finish_reason,
            "dropped_messages": stats.dropped_messages,
            **(_grounded(grounding, policy.language) if grounding is not None else {}),
        }

    def _save(self, saved: SavedConversations, conversation: Conversation) -> dict[str, Any]:
        """Save an answered conversation; a failure is reported, the answer kept."""
        assert isinstance(conversation, Kept)  # save needs a named conversation
        try:
            return {"saved": saved.save(conversation)}
        except ApplianceError as exc:
            return {"save_error": exc.message}

    # -- helpers ----------------------------------------------------------------------

    def _signed_in(self) -> Session:
        assert self.session is not None  # _require_session ran
        return self.session

    def _require_saved(self) -> SavedConversations:
        if self._saved is None:
            raise not_saved()
        return self._saved

    def _check_room(self) -> None:
        if len(self._conversations) >= MAX_CONVERSATIONS:
            raise UsageError(
                f"a connection keeps at most {MAX_CONVERSATIONS} conversations; reset one",
                code="too_many_conversations",
                most=MAX_CONVERSATIONS,
            )

    def _conversation(self, name: str | None, system: str | None, task: str | None) -> Conversation:
        started = start_conversation(self.server.policy, system, task)
        if name is None:
            return started
        kept = self._conversations.get(name)
        if kept is None:
            self._check_room()
            kept = self._conversations[name] = Kept(started.system, task=started.task)
        elif (system is not None or task is not None) and (
            started.system != kept.system or started.task != kept.task
        ):
            raise UsageError(
                "a conversation keeps the system prompt it started with; reset it to change it",
                code="system_changed",
            )
        return kept

    def _os_user(self) -> str:
        try:
            return pwd.getpwuid(self.peer.uid).pw_name
        except KeyError:
            return f"uid{self.peer.uid}"

    def _tell(self, request_id: int, exc: ApplianceError) -> None:
        self.outbox.put({"id": request_id, "error": error_body(exc)})

    def _session_ended(self, exc: AuthenticationError) -> None:
        """The session ended itself (idle, account changed): its logout is recorded."""
        if exc.code in SESSION_ENDED:
            self._forget_session()

    def _end_session(self, reason: str) -> None:
        session = self.session
        self._forget_session()
        for job in list(self._pending.values()):
            if not self.server.queue.withdraw(job):
                job.cancel()
        if session is not None:
            with contextlib.suppress(ApplianceError):
                session.sign_out(reason)

    def _forget_session(self) -> None:
        """Every way a session ends comes here: its state and its store go with it."""
        self.session, self._session_id, self._must_change = None, "", False
        self._last_active = time.monotonic()  # the sign-in timeout runs from here
        self._conversations.clear()
        self._documents.discard()
        saved, self._saved = self._saved, None
        if saved is not None:
            saved.close()  # after a save under way; a later one reports the session ended

    def _broken(self) -> None:
        """The client stopped reading or went away: stop its work, end the connection."""
        self._closing.set()
        for job in list(self._pending.values()):
            job.cancel()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self, reason: str) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._end_session(reason)
        self.outbox.close()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.server.forget(self)

    def describe(self) -> dict[str, Any]:
        session = self.session
        return {
            "user": session.principal.user if session else None,
            "role": session.principal.role if session else None,
            "peer_uid": self.peer.uid,
            "peer_pid": self.peer.pid,
            "since": round(self.opened),
            "answering": bool(self._pending),
        }


def _grounded(grounding: Grounding, language: str) -> dict[str, Any]:
    return {"sources": describe(grounding, language), "declined": grounding.declined is not None}


_IDLE = {
    "idle": "the session was idle too long; sign in again",
    "no_sign_in": "no sign-in came in time; connect again",
}
