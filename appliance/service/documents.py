"""Documents through the service: `appliance docs ...` and the UI's documents screen.

The client reads the user's files and sends them in `upload` parts (base64,
each acknowledged, so a client cannot run ahead of the service); `add` then
names the file, its size and sha256, and the service runs the same `Library`
the in-process command runs, as the connection's principal. An `ask` with
`file` names an upload the same way and has it read for that question alone
(`onefile`: nothing stored). The upload is held in this connection's memory
only, at most the policy's file size, and wiped once used: a document's
bytes never touch the service's disk outside the encrypted store.
`RemoteDocuments` is what a client holds: Library's methods, each one request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.documents.library import Library, Progress
from appliance.documents.onefile import OneFile, read_file
from appliance.errors import UsageError
from appliance.service.client import Client

if TYPE_CHECKING:
    from appliance.documents.store import DocumentStore
    from appliance.service.server import Server
    from appliance.session import Session

UPLOAD_PART = 512 << 10  # bytes of a file per `upload` message (base64 fits MAX_LINE)
CALLS = (
    "upload",
    "add",
    "list",
    "show",
    "remove",
    "reindex",
    "collections",
    "create_collection",
    "add_member",
    "remove_member",
)


class DocumentCalls:
    """One connection's document requests; its upload buffer lives and dies with it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._upload = bytearray()

    def call(
        self, session: Session, args: dict[str, Any], send: Callable[[dict[str, Any]], object]
    ) -> dict[str, Any]:
        call = args["call"]
        if call not in CALLS:
            raise UsageError(f"docs: no call {call[:40]!r}", code="unknown_op")
        if call == "upload":
            return self._receive(args)
        library = self.library(session)
        if call == "add":
            return self._add(library, args, send)
        if call == "list":
            return library.list(args.get("collection"))
        if call == "show":
            return library.show(_needed(args, "document"), text=bool(args.get("text")))
        if call == "remove":
            return library.remove(_needed(args, "document"))
        if call == "reindex":
            return library.reindex(
                args.get("collection"), force=bool(args.get("force")), progress=_relay(send)
            )
        if call == "collections":
            return library.collections()
        if call == "create_collection":
            return library.create_collection(_needed(args, "collection"))
        member = call == "add_member"
        return library.set_member(_needed(args, "collection"), _needed(args, "name"), member=member)

    def library(self, session: Session) -> Library:
        """The session's user's documents (also what `ask` with `docs` retrieves from)."""
        store: DocumentStore = self.server.documents()
        server = self.server
        return Library(server.home, server.policy, server.log, session.principal, store)

    def _receive(self, args: dict[str, Any]) -> dict[str, Any]:
        """One part of a file, at the offset the service expects next."""
        offset = args.get("offset", 0)
        if offset == 0:
            self.discard()
        if offset != len(self._upload):
            self.discard()
            raise UsageError("docs upload: parts must come in order, from offset 0")
        try:
            data = base64.b64decode(_needed(args, "data"), validate=True)
        except binascii.Error:
            self.discard()
            raise UsageError("docs upload: 'data' is not base64", code="bad_field") from None
        limit = self.server.policy.documents.max_file_bytes
        if len(self._upload) + len(data) > limit:
            self.discard()
            raise UsageError(
                f"the file is larger than the policy's {self.server.policy.documents.max_file_mb} "
                "MiB for a document",
                code="too_large",
                most_mib=self.server.policy.documents.max_file_mb,
            )
        self._upload += data
        return {"received": len(self._upload)}

    def _add(
        self, library: Library, args: dict[str, Any], send: Callable[[dict[str, Any]], object]
    ) -> dict[str, Any]:
        try:
            data = bytes(self._upload)
            if not _matches(data, args.get("size"), args.get("sha256")):
                raise UsageError(
                    "docs add: the uploaded bytes are not the file the client named (size or "
                    "sha256 differ); nothing was added",
                    code="upload_mismatch",
                )
            return library.add(
                _needed(args, "file"),
                data,
                level=args.get("level"),
                collection=args.get("collection"),
                effective=args.get("effective"),
                supersedes=args.get("supersedes"),
                progress=_relay(send),
            )
        finally:
            self.discard()

    def read_upload(self, session: Session, args: dict[str, Any]) -> OneFile:
        """An `ask` with `file`: the upload, if it is the file named (`file_size`,
        `file_sha256`), read for questions as the session's user at its level; the
        buffer is wiped either way, and nothing parses bytes that do not match."""
        name = str(args["file"])
        try:
            data = bytes(self._upload)
            if not _matches(data, args.get("file_size"), args.get("file_sha256")):
                raise UsageError(
                    f"ask: the uploaded bytes are not {name[:80]}, the file the client named "
                    "(size or sha256 differ); it was not read",
                    code="upload_mismatch",
                    file=name[:80],
                )
            server = self.server
            return read_file(
                name,
                data,
                policy=server.policy,
                principal=session.principal,
                log=server.log,
                level=session.level,
            )
        finally:
            self.discard()

    def discard(self) -> None:
        """Wipe the upload buffer (a copy made for parsing is the child's, gone with it)."""
        self._upload[:] = bytes(len(self._upload))
        self._upload.clear()


def _matches(data: bytes, size: object, sha256: object) -> bool:
    """Whether the upload is the file a client named by its size and sha256."""
    digest = hashlib.sha256(data).hexdigest()
    return size == len(data) and hmac.compare_digest(digest, str(sha256 or ""))


def _relay(send: Callable[[dict[str, Any]], object]) -> Progress:
    def progress(stage: str, done: int, total: int) -> None:
        send({"progress": {"stage": stage, "done": done, "total": total}})

    return progress


def _needed(args: dict[str, Any], name: str) -> Any:
    if name not in args:
        raise UsageError(f"docs {args['call']} needs {name!r}", code="bad_field")
    return args[name]


class RemoteDocuments:
    """Library's methods, answered by the service for the signed-in user."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, call: str, progress: Progress | None = None, **args: Any) -> dict[str, Any]:
        def on_progress(message: dict[str, Any]) -> None:
            if progress is not None:
                progress(
                    str(message.get("stage")),
                    int(message.get("done") or 0),
                    int(message.get("total") or 0),
                )

        return self.client.call("docs", call=call, on_progress=on_progress, **args)

    def add(
        self,
        name: str,
        data: bytes,
        *,
        level: str | None = None,
        collection: str | None = None,
        effective: str | None = None,
        supersedes: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        self.upload(data, progress)
        return self._call(
            "add",
            progress,
            file=name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            level=level,
            collection=collection,
            effective=effective,
            supersedes=supersedes,
        )

    def upload(self, data: bytes, progress: Progress | None = None) -> dict[str, Any]:
        """Send a file in acknowledged parts to the connection's upload buffer, for an
        `add` or an `ask` with `file` to use; the fields that name it to the service."""
        total = len(data)
        for offset in range(0, max(total, 1), UPLOAD_PART):
            part = base64.b64encode(data[offset : offset + UPLOAD_PART]).decode()
            self._call("upload", offset=offset, data=part)
            if progress is not None:
                progress("upload", min(offset + UPLOAD_PART, total), total)
        return {"size": total, "sha256": hashlib.sha256(data).hexdigest()}

    def list(self, collection: str | None = None) -> dict[str, Any]:
        return self._call("list", collection=collection)

    def show(self, document_id: str, *, text: bool = False) -> dict[str, Any]:
        return self._call("show", document=document_id, text=text)

    def remove(self, document_id: str) -> dict[str, Any]:
        return self._call("remove", document=document_id)

    def reindex(
        self,
        collection: str | None = None,
        *,
        force: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        return self._call("reindex", progress, collection=collection, force=force)

    def collections(self) -> dict[str, Any]:
        return self._call("collections")

    def create_collection(self, name: str) -> dict[str, Any]:
        return self._call("create_collection", collection=name)

    def set_member(self, collection: str, user: str, *, member: bool) -> dict[str, Any]:
        call = "add_member" if member else "remove_member"
        return self._call(call, collection=collection, name=user)
