"""`appliance demo --home DIR`: a demonstration home, for `make run`.

It is what an installed site looks like, made on one machine: the default
model sealed to a site identity, the defense-kr policy, an officer key for
audit content, and a demo operator, officer and admin whose generated
passwords are printed once. Labelled as a demo everywhere: its identities are
stored unwrapped and its policy lets it run on a networked workstation.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from appliance import catalog, seal
from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.cli.progress import byte_progress
from appliance.config import CONFIG_FILE, appliance_home, load_home_config
from appliance.errors import ConfigError, UsageError
from appliance.fsutil import atomic_writer, fsync_directory
from appliance.homestate import record_state
from appliance.identity import Users
from appliance.policy import HOME_POLICY, load_policy, shipped_policy

ACCOUNTS = (  # name, role, clearance (defense-kr level ids)
    ("demo-operator", "operator", "secret-2"),
    ("demo-officer", "officer", "secret-1"),
    ("demo-admin", "admin", "public"),
)
DEMO_POLICY_NAME = "defense-kr-demo"


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="make a demonstration home (sealed model, demo accounts); once"
    )
    demo.add_argument(
        "--home", type=Path, metavar="DIR", help="where (default: the appliance home)"
    )
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    home: Path = args.home or appliance_home()
    if _is_demo(home):
        print(
            f"The demo home {home} is ready; its passwords were printed when it was made "
            "(make demo-reset makes a new one)."
        )
        return 0
    if home.exists() and any(home.iterdir()):
        raise UsageError(f"{home} is not empty and is not a demo home; choose another --home")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=home.parent))
    try:
        passwords = _build(staging)
        if home.exists():
            home.rmdir()  # empty, checked above
        staging.rename(home)  # the home appears whole or not at all
        fsync_directory(home.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"Demo home made in {home}. DEMO ONLY: its keys are stored unprotected.")
    print("Accounts (the passwords are shown this once):")
    for (name, role, clearance), password in zip(ACCOUNTS, passwords, strict=True):
        print(f"  {role:<9} {name:<14} {password}   (cleared to {clearance})")
    if sys.stdin.isatty() and sys.stdout.isatty():  # the UI is about to take the screen
        input("Note them now; press Enter to continue. ")
    return 0


def _is_demo(home: Path) -> bool:
    """A home `appliance demo` made (its config says so); a damaged config is not one."""
    try:
        return load_home_config(home).demo
    except ConfigError:
        return False


def _build(home: Path) -> list[str]:
    """Fill a new home; returns the accounts' passwords in ACCOUNTS order."""
    keys = home / "keys"
    keys.mkdir(mode=0o700)
    site, officer = seal.Identity.generate(), seal.Identity.generate()
    seal.write_identity(keys / "site.key", site, None)
    seal.write_identity(keys / "demo-officer.key", officer, None)

    entry = catalog.load_catalog().default_entry
    with byte_progress(f"Preparing {entry.id}") as progress:
        plain = catalog.prepare(entry, home, progress)
    sealed = catalog.models_dir(home) / f"{entry.id}.sealed"
    with byte_progress(f"Sealing {entry.id} to the demo site") as progress:
        seal.seal_file(plain, sealed, [site.recipient], entry.content_id, progress=progress)
    plain.unlink()  # only the sealed model stays

    policy_text = _demo_policy(shipped_policy("defense-kr").read_text(encoding="utf-8"))
    with atomic_writer(home / HOME_POLICY, mode=0o644) as sink:
        sink.write(policy_text.encode())
    policy = load_policy(home / HOME_POLICY)

    passwords = [secrets.token_urlsafe(12) for _ in ACCOUNTS]
    setup = Actor("demo", "setup")
    with Users(home) as users, AuditLog(audit_dir(home)) as log:
        log.set_officers([officer.recipient], setup)
        for (name, role, clearance), password in zip(ACCOUNTS, passwords, strict=True):
            # Printed once for whoever runs the demo, who is each of these users.
            users.add(
                name, role, clearance, password, policy.min_password_length, must_change=False
            )
            details = {"role": role, "clearance": clearance, "demo": True}
            log.record(Event(setup, "user_add", name, details=details), checkpoint=True)

    config = (
        "# DEMO home, made by `appliance demo`: not for real data.\n"
        "[model]\n"
        f'path = "models/{sealed.name}"\n'
        'identity = ["keys/site.key"]\n'
        "\n[ui]\n"
        "demo = true\n"
    )
    with atomic_writer(home / CONFIG_FILE, mode=0o644) as sink:
        sink.write(config.encode())
    with AuditLog(audit_dir(home)) as log:
        record_state(home, log, setup, "demo")
    return passwords


def _demo_policy(text: str) -> str:
    """defense-kr, renamed, with the air-gap requirement off so a workstation can run it."""
    changes = {
        'name = "defense-kr"': f'name = "{DEMO_POLICY_NAME}"',
        "require_airgap = true": "require_airgap = false          # DEMO: off on a workstation",
    }
    for old, new in changes.items():
        if old not in text:
            raise UsageError(f"the shipped defense-kr policy no longer has '{old}'")
        text = text.replace(old, new, 1)
    return "# DEMO copy of defense-kr, made by `appliance demo`.\n" + text
