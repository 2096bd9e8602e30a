#!/bin/sh
# Install a signed offline bundle of the appliance on a host with no network.
#
#   install.sh NAME.bundle [--prefix DIR] [--trust root.json] [--identity FILE]
#              [--expect-sha256 HEX] [--service-user NAME|UID:GID] [--no-service]
#
# Needs Python 3.11 or newer and nothing else. On a host where the appliance
# is installed, the installed release verifies the new bundle and upgrades.
# On a first install, the verifier comes from the bundle's own wheels: they
# are unpacked into a private temporary folder, installed there with pip
# --no-index, and that verifier checks the whole bundle, itself included,
# against the pinned root before anything is written under the prefix. Give
# --expect-sha256 (the sha256 the build station printed) so that the verifier
# itself is the one that was signed. pip and the verifier run isolated: no
# PIP_* or PYTHON* variable and no pip.conf can add other wheels or code.
#
# Run as root, it also sets up the service: it creates the system user and
# group (--service-user, default appliance) if missing, has the install give
# PREFIX/home to that user and write PREFIX/appliance.service and
# /etc/appliance/service.toml, then (where systemd runs) copies the unit to
# /etc/systemd/system/ and enables it; after an upgrade it restarts a running
# service. --no-service skips all of that.
set -eu

PYTHON=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ]; then
    echo "install.sh: Python 3.11 or newer is required" >&2
    exit 2
fi

exec "$PYTHON" - "$@" <<'BOOTSTRAP'
"""Bootstrap: standard library only. Checks the tar's members, never extracts it whole."""

import argparse
import hashlib
import hmac
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def fail(message: str, code: int = 16) -> None:
    print(f"install.sh: {message}", file=sys.stderr)
    sys.exit(code)


parser = argparse.ArgumentParser(prog="install.sh")
parser.add_argument("bundle", type=Path)
parser.add_argument("--prefix", type=Path, default=Path(os.environ.get("APPLIANCE_PREFIX", "/opt/appliance")))
parser.add_argument("--trust", type=Path)
parser.add_argument("--identity", type=Path)
parser.add_argument("--expect-sha256")
parser.add_argument("--service-user", default="appliance")
parser.add_argument("--service-marker", type=Path)  # elsewhere than /etc/appliance (tests)
parser.add_argument("--no-service", action="store_true")
args = parser.parse_args()
SERVICE = os.geteuid() == 0 and not args.no_service
UNIT = Path("/etc/systemd/system/appliance.service")


def service_user() -> list[str]:
    """As root: the system user the service runs as, created if missing."""
    if not SERVICE:
        return []
    name = args.service_user
    if not name.partition(":")[0].isdigit():  # numeric UID:GID needs no passwd entry
        import pwd

        try:
            pwd.getpwnam(name.partition(":")[0])
        except KeyError:
            shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)),
                         "/bin/false")
            made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                   "--home-dir", str(args.prefix / "home"), "--shell", shell,
                                   "--comment", "Sovereign AI appliance service",
                                   name.partition(":")[0]])
            if made.returncode != 0:
                fail(f"cannot create the service user {name}", 2)
            print(f"install.sh: created the system user {name}", file=sys.stderr)
    marker = ["--service-marker", str(args.service_marker)] if args.service_marker else []
    return ["--service-user", name, *marker]


def enable_service(upgrade: bool) -> None:
    """Where systemd runs: install the unit the installer rendered, enable it."""
    if not SERVICE:
        return
    rendered = args.prefix / "appliance.service"
    if not os.path.isdir("/run/systemd/system"):
        print(f"install.sh: systemd is not running; install {rendered} yourself",
              file=sys.stderr)
        return
    staged = UNIT.with_name(f".{UNIT.name}.new")
    shutil.copyfile(rendered, staged)
    os.chmod(staged, 0o644)
    os.replace(staged, UNIT)
    for command in (["daemon-reload"], ["enable", UNIT.name]) + (
            (["try-restart", UNIT.name],) if upgrade else ()):
        if subprocess.run(["systemctl", *command]).returncode != 0:
            fail(f"'systemctl {' '.join(command)}' failed", 2)
    if not upgrade:
        print(f"install.sh: {UNIT} is enabled; start it with 'systemctl start {UNIT.name}'",
              file=sys.stderr)


if not args.bundle.is_file():
    fail(f"{args.bundle} does not exist", 2)
digest = hashlib.sha256()
with args.bundle.open("rb") as handle:
    while block := handle.read(1 << 20):
        digest.update(block)
print(f"bundle sha256 {digest.hexdigest()}", file=sys.stderr)
if args.expect_sha256 and not hmac.compare_digest(digest.hexdigest(), args.expect_sha256.lower()):
    fail("the bundle's sha256 differs from the one expected; do not install it")

installed = args.prefix / "bin" / "appliance"
if installed.exists():  # the installed, already trusted release verifies the new one
    command = [str(installed), "upgrade", str(args.bundle), "--prefix", str(args.prefix),
               *service_user()]
    code = subprocess.run(command).returncode
    if code == 0:
        enable_service(upgrade=True)
    sys.exit(128 - code if code < 0 else code)  # killed by a signal: as a shell says it

if args.trust is None or args.identity is None:
    fail("a first install needs --trust root.json and --identity FILE", 2)

with tempfile.TemporaryDirectory(prefix="appliance-bootstrap-") as temp:
    wheels = Path(temp) / "wheels"
    wheels.mkdir()
    try:
        with tarfile.open(args.bundle, mode="r:") as tar:
            for member in tar:
                name = member.name
                if (name.startswith("/") or ".." in name.split("/")
                        or posixpath.normpath(name) != name):
                    fail(f"{args.bundle} was refused: the member '{name}' leaves its folder")
                if not member.isreg():
                    fail(f"{args.bundle} was refused: the member '{name}' is not a plain file")
                if not name.startswith(("metadata/", "targets/")):
                    fail(f"{args.bundle} was refused: the member '{name}' is outside the bundle")
                folder, _, wheel = name.rpartition("/")
                if folder == "targets/wheels" and wheel.endswith(".whl") and "/" not in wheel:
                    source = tar.extractfile(member)
                    with source, open(wheels / wheel, "xb") as sink:
                        shutil.copyfileobj(source, sink)
    except tarfile.TarError as exc:
        fail(f"{args.bundle} is not a bundle: {exc}")
    venv = Path(temp) / "venv"
    # pip sees the bundle's wheels and nothing else: isolated (-I, --isolated), an
    # empty HOME, and PIP_CONFIG_FILE=/dev/null, which makes pip read no pip.conf.
    clean = {"PATH": os.defpath, "HOME": temp, "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([sys.executable, "-I", "-m", "venv", str(venv)], check=True, env=clean)
    python = str(venv / "bin" / "python")
    pip = [python, "-I", "-m", "pip", "install", "--isolated", "--quiet", "--no-index",
           "--no-cache-dir", "--no-compile", "--disable-pip-version-check", "--no-input",
           "--only-binary", ":all:", "--find-links", str(wheels), "appliance"]  # throwaway
    if subprocess.run(pip, env=clean).returncode != 0:
        fail("the bundle's wheels do not install on this host (see docs/formats/bundle.md)", 2)
    command = [python, "-I", "-m", "appliance", "install", str(args.bundle),
               "--prefix", str(args.prefix), "--trust", str(args.trust),
               "--identity", str(args.identity), *service_user()]
    code = subprocess.run(command).returncode
if code == 0:
    enable_service(upgrade=False)
sys.exit(128 - code if code < 0 else code)
BOOTSTRAP
