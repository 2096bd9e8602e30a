"""`appliance docs`: add, list, show, remove and reindex local documents; shared collections.

On a service host the command is a client: it reads the files the user
names and sends them; the service parses, labels and stores them. Without a
service it runs the same `Library` in this (hardened) process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.audit import AuditLog, audit_dir
from appliance.cli.auth import add_auth_options, sign_in
from appliance.cli.client import signed_in_client
from appliance.cli.progress import step_progress
from appliance.config import appliance_home
from appliance.documents.home import open_documents
from appliance.documents.library import Library
from appliance.errors import ApplianceError, InputError, UsageError
from appliance.fsutil import read_limited
from appliance.policy import active_policy
from appliance.seal import harden_process
from appliance.service import RemoteDocuments, find_service
from appliance.textsafe import printable

MAX_READ = 1 << 30  # the policy's limit is checked by the service; this bounds the read


def register(commands: Any) -> None:
    docs = commands.add_parser("docs", help="local documents: add, list, show, remove, reindex")
    sub = docs.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add files (HWP/HWPX, PDF, DOCX, text) to a collection")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--level", metavar="LEVEL", help="the level you declare (default: policy's)")
    add.add_argument("--collection", metavar="NAME", help="a shared collection (default: yours)")
    add.add_argument("--effective", metavar="YYYY-MM-DD", help="the date it takes effect (시행일)")
    add.add_argument("--supersedes", metavar="DOC", help="the id of the document it replaces")
    listing = sub.add_parser("list", help="the documents you may read")
    listing.add_argument("--collection", metavar="NAME")
    show = sub.add_parser("show", help="a document's label, findings and chunks")
    show.add_argument("document", metavar="DOC")
    show.add_argument("--text", action="store_true", help="print the chunks' text as well")
    remove = sub.add_parser("remove", help="remove a document and its text from the store")
    remove.add_argument("document", metavar="DOC")
    reindex = sub.add_parser("reindex", help="read stale documents again (parser, chunker, policy)")
    reindex.add_argument("--collection", metavar="NAME")
    reindex.add_argument("--all", action="store_true", help="every document, stale or not")
    collections = sub.add_parser("collections", help="collections; officers manage shared ones")
    collections.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=("list", "create", "add-member", "remove-member"),
    )
    collections.add_argument("name", nargs="?", metavar="COLLECTION")
    collections.add_argument("member", nargs="?", metavar="USER")
    for parser, run in (
        (add, run_add),
        (listing, run_list),
        (show, run_show),
        (remove, run_remove),
        (reindex, run_reindex),
        (collections, run_collections),
    ):
        add_auth_options(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=run)


@contextlib.contextmanager
def _library(args: argparse.Namespace) -> Iterator[Library | RemoteDocuments]:
    """The signed-in user's documents: the service's where one runs."""
    home = appliance_home()
    service = find_service(home)
    if service is not None:
        with signed_in_client(args, service) as client:
            yield RemoteDocuments(client)
        return
    harden_process()  # this process is about to hold document text
    policy = active_policy(home)
    with AuditLog(audit_dir(home)) as log:
        principal = sign_in(args, home, policy, log)
        with open_documents(home, log) as store:
            yield Library(home, policy, log, principal, store)


def run_add(args: argparse.Namespace) -> int:
    failures = 0
    with _library(args) as library, step_progress("Adding documents") as bar:
        for count, path in enumerate(args.paths):
            try:
                data = read_limited(path, MAX_READ, "the document")
                result = library.add(
                    path.name,
                    data,
                    level=args.level,
                    collection=args.collection,
                    effective=args.effective,
                    supersedes=args.supersedes,
                )
            except InputError as exc:
                failures += 1
                _warn(str(exc))
                continue
            except ApplianceError as exc:
                if len(args.paths) == 1:
                    raise
                failures += 1
                _warn(f"{path}: {exc}")
                continue
            finally:
                if bar is not None:
                    bar(count + 1, len(args.paths))
            _print_added(args, path, result)
    return 0 if not failures else 20


def _print_added(args: argparse.Namespace, path: Path, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    document = result["document"]
    what = "unchanged" if result.get("unchanged") else "added"
    chunks = result.get("chunks")
    made = f", {chunks['added']} new chunks, {chunks['kept']} kept" if chunks else ""
    print(
        f"{printable(str(path))}: {what} as {document['id']} "
        f"[{printable(document['label_name'])}] in {printable(document['collection'])}{made}"
    )


def run_list(args: argparse.Namespace) -> int:
    with _library(args) as library:
        result = library.list(args.collection)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for document in result["documents"]:
        pages = f"{document['pages']} p." if document["pages"] else ""
        print(
            f"{document['id']}  [{printable(document['label_name'])}]  "
            f"{printable(document['collection'])}  {printable(document['name'])}  "
            f"{document['format']} {pages} {_day(document['added_us'])}"
        )
    if not result["documents"]:
        print("No documents you may read.", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _library(args) as library:
        result = library.show(args.document, text=args.text)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    document = result["document"]
    print(f"{printable(document['name'])}: {printable(document['title'])}")
    print(f"  id {document['id']}, {document['format']}, {document['bytes']} bytes")
    markings = ", ".join(result["markings"]) or "none"
    print(f"  label {printable(document['label_name'])} (declared {result['declared']}, "
          f"found {result['found']}); markings {markings}")  # fmt: skip
    findings = ", ".join(f"{kind} x{count}" for kind, count in result["findings"].items())
    print(f"  findings {findings or 'none'}")
    if document["effective"] or document["supersedes"]:
        print(f"  effective {document['effective'] or '-'}, supersedes "
              f"{document['supersedes'] or '-'}")  # fmt: skip
    for chunk in result["chunks"]:
        place = f"p. {chunk['page']}" if chunk["page"] else f"section {chunk['section'] or '-'}"
        print(f"  [{chunk['id']}] {chunk['kind']} {place}, {chunk['chars']} characters")
        if args.text:
            print("    " + printable(chunk["text"]).replace("\\n", "\n    "))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with _library(args) as library:
        result = library.remove(args.document)
    print(f"Removed {result['removed']} and its {result['chunks']} chunks.")
    return 0


def run_reindex(args: argparse.Namespace) -> int:
    with _library(args) as library:
        result = library.reindex(args.collection, force=args.all)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Reindexed {result['reindexed']}, {result['failed']} failed, "
              f"{result['current']} already current.")  # fmt: skip
    return 0 if not result["failed"] else 20


def run_collections(args: argparse.Namespace) -> int:
    with _library(args) as library:
        if args.action == "list":
            result = library.collections()
        elif args.action == "create":
            result = library.create_collection(_given(args.name, "a collection's name"))
        else:
            result = library.set_member(
                _given(args.name, "a collection's name"),
                _given(args.member, "a user"),
                member=args.action == "add-member",
            )
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for collection in result.get("collections") or [result["collection"]]:
        kind = "shared" if collection["shared"] else f"own ({collection['owner']})"
        members = collection.get("members")
        listed = f", members: {', '.join(members) or 'none'}" if members is not None else ""
        print(f"{printable(collection['name'])}  {kind}{printable(listed)}")
    return 0


def _given(value: str | None, what: str) -> str:
    if not value:
        raise UsageError(f"give {what}")
    return value


def _day(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, UTC).strftime("%Y-%m-%d")


def _warn(message: str) -> None:
    print(f"appliance: {printable(message)}", file=sys.stderr)
