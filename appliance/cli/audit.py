"""`appliance audit ...`: the security officer's view of the audit log."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from appliance.audit import (
    Actor,
    AuditLog,
    Checkpoint,
    ContentOpener,
    Event,
    PublicKey,
    TamperError,
    audit_dir,
)
from appliance.audit.export import FORMATS, verify_export, write_export
from appliance.cli.auth import add_auth_options, sign_in
from appliance.cli.client import signed_in_client
from appliance.cli.passphrase import add_passphrase_option, openers, passphrase_source
from appliance.cli.progress import byte_progress
from appliance.config import appliance_home
from appliance.errors import IncompleteLogError, InputError, UsageError
from appliance.fsutil import atomic_writer
from appliance.homestate import accept_state, record_state, verify_state
from appliance.policy import active_policy
from appliance.seal import Identity, open_bytes, read_identity
from appliance.service import Client, find_service
from appliance.service.auditing import CHALLENGE_ID
from appliance.textsafe import json_line, printable


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="verify, export and read the audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    key = sub.add_parser("key", help="the device's public key (give it to verify-export)")
    add_auth_options(key)
    key.set_defaults(run=run_key)

    verify = sub.add_parser("verify", help="check the whole chain and every checkpoint")
    verify.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    _add_trust_options(verify, pubkey_required=False)
    add_auth_options(verify)
    verify.set_defaults(run=run_verify)

    export = sub.add_parser("export", help="write a signed export for offline verification")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.add_argument(
        "--since", metavar="CHECKPOINT", help="a checkpoint file or a seq: export only what follows"
    )
    export.add_argument("--format", choices=FORMATS, default="jsonl")
    add_auth_options(export)
    export.set_defaults(run=run_export)

    check = sub.add_parser("verify-export", help="verify an export on any machine")
    check.add_argument("export", type=Path, metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    _add_trust_options(check, pubkey_required=True)
    check.add_argument(
        "--save-checkpoint",
        type=Path,
        metavar="FILE",
        help="where to write the export's last checkpoint, to trust next time "
        "(default: advance the --trusted-checkpoint file)",
    )
    check.set_defaults(run=run_verify_export)

    show = sub.add_parser("show", help="list events (metadata; content with --decrypt)")
    show.add_argument("--since", metavar="TIME", help="ISO date or time (UTC unless given)")
    show.add_argument("--actor", metavar="USER")
    show.add_argument("--action", metavar="ACTION")
    show.add_argument("--limit", type=int, metavar="N")
    show.add_argument(
        "--document",
        metavar="DOC",
        help="only what concerns a document: who added or removed it, and every answer "
        "that was given passages of it",
    )
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.add_argument(
        "--decrypt", action="store_true", help="open prompts and answers (officer identity)"
    )
    show.add_argument("--identity", action="append", type=Path, metavar="KEYFILE")
    add_passphrase_option(show, "that unlocks the identity")
    add_auth_options(show)
    show.set_defaults(run=run_show)

    prune = sub.add_parser("prune", help="drop sealed content older than a date (hashes stay)")
    prune.add_argument("--before", required=True, metavar="DATE", help="ISO date or time (UTC)")
    add_auth_options(prune)
    prune.set_defaults(run=run_prune)

    state = sub.add_parser(
        "state",
        help="check the home against its last signed state; --accept signs it as it is (officers)",
    )
    state.add_argument(
        "--accept",
        action="store_true",
        help="sign the home's config and policy as they are now (after a reviewed hand edit)",
    )
    state.add_argument("--reason", metavar="TEXT", help="why (required with --accept)")
    add_auth_options(state)
    state.set_defaults(run=run_state)

    officer = sub.add_parser("officer", help="show or set the officer keys content is sealed to")
    officer.add_argument(
        "--identity",
        action="append",
        type=Path,
        metavar="FILE",
        help="seal content to this officer identity from now on (repeatable); opening it "
        "proves the officer holds it",
    )
    add_passphrase_option(officer, "of the identities")
    add_auth_options(officer)
    officer.set_defaults(run=run_officer)


def _add_trust_options(parser: argparse.ArgumentParser, *, pubkey_required: bool) -> None:
    parser.add_argument(
        "--pubkey",
        required=pubkey_required,
        metavar="KEY",
        help="the device public key (aak1...) from 'appliance audit key'",
    )
    parser.add_argument(
        "--trusted-checkpoint",
        type=Path,
        metavar="FILE",
        help="the last checkpoint you verified: the log must extend it",
    )


@contextlib.contextmanager
def open_log(*, existing: bool = False) -> Iterator[AuditLog]:
    """The home's audit log; made at first start unless `existing` is required."""
    directory = audit_dir(appliance_home())
    if existing and not (directory / "log.db").is_file():
        raise InputError(f"there is no audit log in {directory} yet")
    with AuditLog(directory) as log:
        yield log


@contextlib.contextmanager
def signed_in(
    args: argparse.Namespace, permission: str, *, existing: bool = True
) -> Iterator[tuple[AuditLog, Actor]]:
    """The audit log and the signed-in user, who must hold `permission`."""
    home = appliance_home()
    policy = active_policy(home)
    with open_log(existing=existing) as log:
        principal = sign_in(args, home, policy, log)
        actor = Actor(principal.user, principal.role)
        if not principal.may(permission):
            details = {"permission": permission}
            log.record(Event(actor, "policy_block", "audit log", "denied", details=details))
            principal.require(permission)
        yield log, actor


def warn_if_metadata_only(log: AuditLog) -> None:
    if not log.records_content:
        print(
            "audit: no security officer key is configured, so prompts and answers are not "
            "recorded, only metadata (an officer runs 'appliance audit officer --identity FILE')",
            file=sys.stderr,
        )


def run_key(args: argparse.Namespace) -> int:
    with remote(args) as client:
        if client is not None:
            found = client.call("audit", call="key")
            log_id, fingerprint, public = found["log_id"], found["fingerprint"], found["public"]
        else:
            with signed_in(args, "audit.read", existing=False) as (log, _):
                key = log.key.public
                log_id, fingerprint, public = log.log_id, key.fingerprint, str(key)
    print(f"Audit log:        {log_id}")
    print(f"Device key:       {fingerprint}")
    print("Public key (for 'appliance audit verify-export --pubkey'):")
    print(public)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    key = PublicKey.parse(args.pubkey) if args.pubkey else None
    trusted = _read_checkpoint(args.trusted_checkpoint)
    with remote(args) as client:
        if client is not None:
            found = client.call(
                "audit",
                call="verify",
                pubkey=args.pubkey,
                trusted=trusted.to_file_bytes().decode() if trusted else None,
            )
            summary, recoveries = found["report"], found["officer_recoveries"]
            unsigned = found["unsigned_tail"]
        else:
            with signed_in(args, "audit.read") as (log, _):
                try:
                    report = log.verify(key, trusted)
                except TamperError as exc:
                    _print_failure(args.json, exc)
                    raise
            summary, recoveries = report.as_json(), report.officer_recoveries
            unsigned = report.unsigned_tail
    if args.json:
        print(json.dumps(summary))
        return _complete(summary)
    print(f"Audit log verified: {_summary(summary)}.")
    for seq in recoveries:
        print(f"An officer account was recovered with the escrow identity at seq {seq}.")
    if unsigned:
        print(f"{unsigned} events after the last checkpoint are not signed yet.")
    _print_restores(summary)
    return _complete(summary)


def _print_restores(summary: dict[str, Any]) -> None:
    for seq in summary.get("restored_before", []):
        print(f"The log was restored from a backup at seq {seq}, before this export begins.")
    for restore in summary.get("restores", []):
        approved = restore["approved_by"]
        lost = (
            f"events {restore['lost_from']}-{restore['lost_through']} between the backup and "
            "the officer's checkpoint are lost"
            if restore["lost_from"] is not None
            else "the backup reached the officer's checkpoint"
        )
        print(
            printable(
                f"Restored at seq {restore['seq']} from a backup ending at seq "
                f"{restore['backup_seq']}, approved by admin {approved.get('admin')} and "
                f"officer {approved.get('officer')}, resuming above the officer's checkpoint "
                f"at seq {restore['trusted_seq']}: {lost}; the device key changed from "
                f"{restore['old_key']} to {restore['new_key']}."
            )
        )
        if not restore["confirmed"]:
            print(
                "  Only the restore event vouches for the new key: check its fingerprint with "
                "the officer who approved the restore, or verify against the checkpoint the "
                "restore gave them (--trusted-checkpoint)."
            )


def _complete(summary: dict[str, Any]) -> int:
    """0 for a complete log; a restored one is never complete (IncompleteLogError)."""
    restores = [r["seq"] for r in summary.get("restores") or []]
    restores += summary.get("restored_before") or []
    if restores:
        seqs = ", ".join(str(seq) for seq in sorted(restores))
        raise IncompleteLogError(
            f"the audit log verifies, but it was restored from a backup (seq {seqs}): what "
            "happened between the backup and the restore cannot be proved"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} already exists; refusing to overwrite it")
    since = _parse_since(args.since)
    with remote(args) as client:
        if client is not None:
            found = client.export_to(  # the client writes what it asked for
                out,
                format=args.format,
                since_seq=since if isinstance(since, int) else None,
                since_checkpoint=(
                    since.to_file_bytes().decode() if isinstance(since, Checkpoint) else None
                ),
            )
            events, first, last = found["events"], found["first"], found["last"]
        else:
            with (
                signed_in(args, "audit.read") as (log, actor),
                byte_progress("Exporting") as progress,
                atomic_writer(out, mode=0o600) as sink,
            ):
                result = write_export(
                    log, sink, actor, fmt=args.format, since=since, progress=progress
                )
            events, first, last = result.events, result.first_seq, result.last_seq
    print(
        f"Exported {events} events (seq {first}-{last}) to {out}; signed checkpoint at seq {last}."
    )
    return 0


def run_verify_export(args: argparse.Namespace) -> int:
    key = PublicKey.parse(args.pubkey)
    trusted = _read_checkpoint(args.trusted_checkpoint)
    with byte_progress(f"Verifying {args.export.name}") as progress:
        try:
            result = verify_export(args.export, key, trusted, progress=progress)
        except TamperError as exc:
            _print_failure(args.json, exc)
            raise
    summary = result.report.as_json()
    # A restore the trusted checkpoint does not vouch for is never trusted implicitly:
    # the file given with --trusted-checkpoint moves on only past confirmed restores.
    unconfirmed = any(not restore["confirmed"] for restore in summary["restores"])
    save = args.save_checkpoint or (None if unconfirmed else args.trusted_checkpoint)
    if save is not None:
        with atomic_writer(save, mode=0o644) as handle:
            handle.write(result.checkpoint.to_file_bytes())
    if args.json:
        print(json.dumps({**summary, "saved_checkpoint": str(save) if save else None}))
        return _complete(summary)
    extends = (
        f"; extends the trusted checkpoint at seq {summary['trusted_seq']}"
        if trusted
        else "; no trusted checkpoint given, so a deleted tail cannot be ruled out"
    )
    print(f"Export verified: {_summary(summary)}{extends}.")
    if save is not None:
        print(f"Trust next time: {save} ({result.checkpoint.describe()}).")
    elif unconfirmed and args.trusted_checkpoint:
        print(
            f"{args.trusted_checkpoint} was left as it was: confirm the restore's new key, "
            "then save the export's checkpoint with --save-checkpoint."
        )
    _print_restores(summary)
    return _complete(summary)


def run_show(args: argparse.Namespace) -> int:
    if args.decrypt and not args.identity:
        raise UsageError("--decrypt needs the officer's --identity")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    since = _parse_time(args.since) if args.since else None
    permission = "audit.content" if args.decrypt else "audit.read"
    with remote(args) as client:
        if client is not None:
            _show_remote(client, args, since)
            return 0
    with signed_in(args, permission) as (log, _):
        keys = openers(args.identity, args.passphrase_file) if args.decrypt else []
        opener = log.content_opener(keys) if keys else None
        limit = None if args.document else args.limit
        rows = log.events(since_us=since, user=args.actor, action=args.action, limit=limit)
        shown = 0
        for row in rows:
            event = json.loads(row["leaf"])
            if args.document and not _concerns(event, args.document):
                continue
            if args.limit is not None and shown == args.limit:
                break
            shown += 1
            seq, blob = row["seq"], row["content"]
            state = "sealed" if blob is not None else "pruned" if "content_sha256" in event else "-"
            content = opener.open(blob, seq) if opener and blob is not None else None
            _print_event(seq, event, state, content, args.json)
    return 0


def _show_remote(client: Client, args: argparse.Namespace, since: int | None) -> None:
    """Page through the service's events; sealed content is opened here, never there."""
    keys = openers(args.identity, args.passphrase_file) if args.decrypt else []
    opener: ContentOpener | None = None
    after, left = 0, args.limit
    while True:
        page = client.call(
            "audit",
            call="show",
            since_us=since,
            user=args.actor,
            action=args.action,
            limit=min(left, 500) if left and not args.document else None,
            after=after,
            decrypt=args.decrypt or None,
        )
        if args.decrypt and opener is None:
            sealed = {_unb64(k): _unb64(v) for k, v in page.get("keys", {}).items()}
            opener = ContentOpener(sealed, keys)
        for row in page["events"]:
            event = json.loads(row["leaf"])
            seq = row["seq"]
            after = seq
            if args.document and not _concerns(event, args.document):
                continue
            blob = _unb64(row["content"]) if row.get("content") else None
            pruned = "content_sha256" in event
            state = "sealed" if row.get("sealed") else "pruned" if pruned else "-"
            content = opener.open(blob, seq) if opener and blob is not None else None
            _print_event(seq, event, state, content, args.json)
            if left is not None:
                left -= 1
                if left == 0:
                    return
        if not page["more"]:
            return


def _concerns(event: dict[str, Any], document: str) -> bool:
    """An event about the document (added, removed, reindexed) or an answer given passages
    of it (its `ask`, whose details list every source's document)."""
    if event.get("object") == document:
        return True
    grounded = event.get("details", {}).get("documents")
    sources = grounded.get("sources", []) if isinstance(grounded, dict) else []
    return any(isinstance(s, dict) and s.get("document") == document for s in sources)


def run_prune(args: argparse.Namespace) -> int:
    before = _parse_time(args.before)
    with remote(args) as client:
        if client is not None:
            found = client.call("audit", call="prune", before_us=before, before=args.before)
            through, dropped = found["through"], found["dropped"]
        else:
            with signed_in(args, "audit.prune") as (log, actor):
                through, dropped = log.prune(before, actor, {"before": args.before})
    print(
        f"Dropped the sealed content of {dropped} events up to seq {through}; their metadata "
        "and hashes stay, and the prune is logged."
    )
    return 0


def run_state(args: argparse.Namespace) -> int:
    """Check the home's state, or (an officer) accept a reviewed hand edit of its
    config or policy. Accounts and officer keys change only through the appliance's
    own commands, so a difference there is never accepted: the database is restored."""
    if args.accept and not (args.reason or "").strip():
        raise UsageError("give the --reason for accepting the home's state")
    home = appliance_home()
    permission = "audit.officer-keys" if args.accept else "audit.read"
    with remote(args) as client:
        if client is not None:
            found = client.call(
                "audit", call="state", accept=args.accept or None, reason=args.reason
            )
            if not args.accept:
                print(f"Home state: {found['state']}.")
                return 0
            seq, changed = found["seq"], found["changed"]
            print(
                f"Signed the home's state at seq {seq} ({', '.join(changed) or 'no difference'})."
            )
            return 0
    with signed_in(args, permission) as (log, actor):
        if not args.accept:
            print(f"Home state: {verify_state(home, log)}.")
            return 0
        seq, changed = accept_state(home, log, actor, args.reason.strip())
    what = ", ".join(changed) if changed else "no difference"
    print(f"Signed the home's state at seq {seq} ({what}).")
    return 0


def run_officer(args: argparse.Namespace) -> int:
    """Show the officer keys, or set them from identities the officer opens here.

    A recipient alone proves nothing: anyone can paste one whose identity they
    hold. Opening the identity shows the officer holds the key content will be
    sealed to; only its public half is kept.
    """
    permission = "audit.officer-keys" if args.identity else "audit.read"
    identities = [
        read_identity(path, passphrase_source(args.passphrase_file, f"Passphrase for {path}"))
        for path in args.identity or []
    ]
    with remote(args) as client:
        if client is not None:
            return _officer_remote(client, identities)
    with signed_in(args, permission, existing=False) as (log, actor):
        if args.identity:
            recipients = [identity.recipient for identity in identities]
            log.set_officers(recipients, actor)
            record_state(appliance_home(), log, actor, "key_rotate")
            print(f"Audit content is now sealed to {len(recipients)} officer key(s).")
            return 0
        for recipient in log.officers:
            print(recipient)
    return 0


def _officer_remote(client: Client, identities: list[Identity]) -> int:
    """The service seals a secret to each new key; opening them here proves possession."""
    if not identities:
        for recipient in client.call("audit", call="officers")["recipients"]:
            print(recipient)
        return 0
    recipients = [str(identity.recipient) for identity in identities]
    sealed = client.call("audit", call="officer_challenge", recipients=recipients)
    answers = [
        base64.b64encode(
            open_bytes(_unb64(blob), [identity], "the challenge", expect_content_id=CHALLENGE_ID)
        ).decode()
        for blob, identity in zip(sealed["challenges"], identities, strict=True)
    ]
    client.call("audit", call="officer_set", answers=answers)
    print(f"Audit content is now sealed to {len(identities)} officer key(s).")
    return 0


@contextlib.contextmanager
def remote(args: argparse.Namespace) -> Iterator[Client | None]:
    """A signed-in client of the home's service, or None where the command runs here."""
    service = find_service(appliance_home())
    if service is None:
        yield None
        return
    with signed_in_client(args, service) as client:
        yield client


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# -- helpers ---------------------------------------------------------------------


def _read_checkpoint(path: Path | None) -> Checkpoint | None:
    return Checkpoint.read_file(path) if path is not None else None


def _parse_since(text: str | None) -> Checkpoint | int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    return Checkpoint.read_file(Path(text))


def _parse_time(text: str) -> int:
    """Microseconds since the epoch for an ISO date or date-time (UTC by default)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise UsageError(f"'{text}' is not an ISO date or time (2026-01-31T08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _summary(report: dict[str, Any]) -> str:
    text = (
        f"{report['events']} events (seq {report['first_seq']}-{report['last_seq']}), "
        f"{report['checkpoints']} signed checkpoints"
    )
    if report["pruned"]:
        text += f", {report['pruned']} contents pruned"
    return printable(text)  # the counts of an export come from the file


def _print_failure(as_json: bool, exc: TamperError) -> None:
    if as_json:  # ASCII JSON: nothing in it reaches the terminal raw
        print(json.dumps({"ok": False, "seq": exc.seq, "reason": exc.reason}))


def _print_event(
    seq: int, event: dict[str, Any], state: str, content: dict[str, str] | None, as_json: bool
) -> None:
    """One event; `state` says whether its content is sealed, pruned or absent (-).

    Fields hold what users chose (a model's file name, a prompt, an OS account
    name): in text form each is escaped, so an event is one line and no escape
    sequence reaches the officer's terminal; JSON keeps the exact values.
    """
    when = datetime.fromtimestamp(event["time_us"] / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if as_json:
        record = {"seq": seq, **event, "time": when + "Z", "content_state": state}
        if content is not None:
            record["content"] = content
        print(json_line(record))
        return
    fields = (
        f"{event['user']}/{event['role']}",
        event["action"],
        event.get("object") or "-",
        event["outcome"],
        event.get("label") or "-",
    )
    shown = "  ".join(printable(str(field)) for field in fields)
    print(f"{seq:>6}  {when}  {shown}  content:{state}")
    for name, text in (content or {}).items():
        print(f"        {printable(name)}: {printable(text)}")
