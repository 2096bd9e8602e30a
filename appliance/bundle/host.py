"""Releases on a host: install, upgrade, roll back, uninstall, status.

    PREFIX/bin/appliance        runs the current release with APPLIANCE_HOME=PREFIX/home
    PREFIX/releases/V/          one verified release: venv/, model/, policy/, wheels/, docs
    PREFIX/releases/V/libexec/  llama.cpp's tools and the preload, 0755; the release's
                                programs use these (engine/tools.py: beside sys.prefix)
    PREFIX/releases/V/adapters/ the LoRA adapters the release ships, sealed (NAME.sealed);
                                the home serves them while V is current (appliance/adapters.py)
    PREFIX/current -> releases/V   switched atomically (a new link renamed over the old)
    PREFIX/home/                config.toml (-> current/model.sealed), policy.toml (a link
                                into current), audit/, identity/
    PREFIX/trust/               the TUF metadata this host trusts (root pinned at first install)
    PREFIX/state.json           releases in the order they were made current
    PREFIX/appliance.service    (with a service user) the systemd unit, rendered for PREFIX

PREFIX, releases/ and every release are root's, 0755 folders and 0644 (or
0755) files: a service user may run a release but never change it. With a
service user (`--service-user`, as root) the home is that user's, 0700, after
every install, upgrade, rollback and uninstall, and the root-owned marker
/etc/appliance/service.toml tells clients where the service's socket is.

The shipped binaries (engine/tools.py's SHIPPED_FILES: llama.cpp's tools and
the preload) are signed targets `libexec/NAME` like every other file, named
with their sha256 in the signed `bundle.json`, laid out as
`releases/V/libexec/NAME`, 0755. A program run from the release (its
`sys.prefix` is `releases/V/venv`) looks for them there, in `libexec/` beside
its venv, and never in the build cache; `doctor` checks them against the
manifest (bundle/binaries.py).

A bundle is verified in full before anything is written under PREFIX; the
release is built in its own folder; only then do `current` and the trusted
metadata move. An install killed at any point leaves the previous release
serving, and the next run removes the unfinished folder. A release folder is
always built afresh from the verified bundle: one of the same version left by
an earlier install is removed, never reused unchecked.

pip runs isolated (`-I`, `--isolated`, a clean environment with no PIP_* or
PYTHON* variable and no pip.conf), offline, and installs only wheels whose
sha256 the signed metadata pins (`--require-hashes`); afterwards every
distribution in the new venv is checked against those wheels.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit import Actor, AuditLog, Event, audit_dir
from appliance.bundle.manifest import MANIFEST
from appliance.bundle.repository import MAX_METADATA
from appliance.bundle.verify import VerifiedBundle, commit_trust, trusted_versions, verify_bundle
from appliance.config import CONFIG_FILE, ensure_dir
from appliance.engine import sha256_file
from appliance.engine.tools import RELEASE_COMPLETE
from appliance.errors import BundleError, CheckFailedError, ConfigError, UsageError
from appliance.fsutil import atomic_writer, fsync_directory, read_limited, read_private
from appliance.homestate import record_state
from appliance.policy import HOME_POLICY

COMPLETE = RELEASE_COMPLETE  # written last: the release is whole (engine/tools.py reads it)
_ENSUREPIP = {"pip", "setuptools"}  # what `python -m venv` installs from the host's Python
MODEL_LINK = "model.sealed"  # in each release, to its model/<name>.sealed
SITE_KEY = "site.key"  # HOME/keys/site.key: the site identity, the service user's copy
SERVICE_MARKER = Path("/etc/appliance/service.toml")  # read by appliance.service.endpoint
UNIT = "appliance.service"  # PREFIX/appliance.service, rendered from the release's template
UNIT_TEMPLATE = "installer/appliance.service"  # in each release, written for TEMPLATE_PREFIX
TEMPLATE_PREFIX = "/opt/appliance"
_UNIT_PATH = re.compile(r"/[A-Za-z0-9._+/-]*")  # what a unit takes unquoted and unescaped
Stage = Callable[[str], contextlib.AbstractContextManager[Callable[[int, int], None] | None]]


@dataclass(frozen=True)
class Outcome:
    action: str  # install, upgrade, rollback
    release: str
    previous: str | None
    doctor: dict[str, Any]


@dataclass(frozen=True)
class ServiceUser:
    """The system user the service runs as: it owns the home and nothing else."""

    user: str  # as the unit's User= says it: a name, or the numeric uid
    group: str  # as Group= says it
    uid: int
    gid: int

    @classmethod
    def parse(cls, spec: str) -> ServiceUser:
        """NAME, NAME:GROUP or UID:GID (numbers need no passwd entry)."""
        name, _, group = spec.partition(":")
        try:
            if name.isdigit():
                uid, gid = int(name), None
            else:
                entry = pwd.getpwnam(name)
                uid, gid = entry.pw_uid, entry.pw_gid
            if group.isdigit():
                gid = int(group)
            elif group:
                gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UsageError(
                f"the service user '{spec}' does not exist (create it, or give UID:GID)"
            ) from None
        if gid is None:
            raise UsageError(f"give the service user's group too: '{spec}:GID'")
        if uid == 0 or gid == 0:
            raise UsageError("the service must not run as root or in root's group")
        return cls(name, group or _group_name(gid), uid, gid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class Host:
    def __init__(
        self, prefix: Path, actor: Actor, *, service_marker: Path = SERVICE_MARKER
    ) -> None:
        self.prefix = prefix.resolve()
        self.actor = actor
        self.service_marker = service_marker
        self.unit = self.prefix / UNIT
        self.releases = self.prefix / "releases"
        self.current = self.prefix / "current"
        self.home = self.prefix / "home"
        self.trust = self.prefix / "trust"
        self.state_file = self.prefix / "state.json"
        self.launcher = self.prefix / "bin" / "appliance"

    # -- reading --------------------------------------------------------------------------

    def current_release(self) -> str | None:
        try:
            return os.readlink(self.current).rsplit("/", 1)[-1]
        except OSError:
            return None

    def history(self) -> list[str]:
        try:
            return list(json.loads(self.state_file.read_text())["history"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.state_file} is damaged") from None

    def installed(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if (p / COMPLETE).exists())

    def status(self) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "current": self.current_release(),
            "installed": self.installed(),
            "history": self.history(),
            "trusted_metadata": trusted_versions(self.trust) if self.trust.exists() else {},
            "home": str(self.home),
        }

    # -- changing -------------------------------------------------------------------------

    def install(
        self,
        bundle: Path,
        *,
        upgrade: bool,
        trust_root: Path | None,
        identity: Path | None,
        stage: Stage,
        service_user: ServiceUser | None = None,
    ) -> Outcome:
        """Verify `bundle`, lay out its release, switch to it, run the doctor, audit it.

        With `service_user` (root only), the home is handed to that user and the
        unit (PREFIX/appliance.service) and the service marker are written, even
        when the doctor fails: the release is current either way.
        """
        if service_user is not None and os.geteuid() != 0:
            raise UsageError("--service-user needs root: it gives the home to that user")
        try:
            return self._install(bundle, upgrade, trust_root, identity, stage)
        finally:
            self._hand_over(service_user)
            if service_user is not None and self.current_release() is not None:
                self._write_service(service_user)

    def _install(
        self,
        bundle: Path,
        upgrade: bool,
        trust_root: Path | None,
        identity: Path | None,
        stage: Stage,
    ) -> Outcome:
        with self._locked():
            previous = self.current_release()
            if upgrade and previous is None:
                raise UsageError(f"nothing is installed in {self.prefix}; use install")
            if not upgrade and previous is not None:
                raise UsageError(f"{previous} is installed in {self.prefix}; use upgrade")
            pinned = self._pinned_root(trust_root)
            if not upgrade and identity is None:
                raise UsageError(
                    "give the site identity with --identity FILE (appliance keys generate)"
                )
            if identity is not None and not identity.is_file():
                raise UsageError(f"the site identity {identity} does not exist")
            with stage("Verifying the bundle"):
                verified = verify_bundle(
                    bundle, self.trust if self.trust.exists() else None, pinned
                )
            with verified:
                release = verified.release
                if release == previous:
                    raise UsageError(f"release {release} is already the current one")
                self._lay_out(verified, self.releases / release, stage)
                self._configure(identity)
                self._switch(release)
                commit_trust(verified, self.trust)
                self._write_launcher()
                self._open_prefix()
                action = "upgrade" if upgrade else "install"
                self._sign_state(action)  # before the doctor, which checks it
                details = {
                    "previous": previous,
                    "bundle_sha256": sha256_file(bundle),
                    "metadata_version": verified.metadata_version,
                    "model": verified.content_id,
                    "model_sha256": verified.model_sha256,
                    "adapters": verified.adapters,  # served from releases/V/adapters/
                }
        doctor = self._doctor()
        outcome = "ok" if doctor["ok"] else "failed"
        self._record(action, release, outcome, details | {"doctor_ok": outcome == "ok"})
        if outcome != "ok":
            raise CheckFailedError(
                f"release {release} is installed but appliance doctor failed: "
                f"{_failures(doctor)}; 'appliance rollback' returns to {previous or 'nothing'}"
            )
        return Outcome(action, release, previous, doctor)

    def rollback(self) -> Outcome:
        """Make the release that was current before this one current again."""
        try:
            return self._rollback()
        finally:
            self._hand_over(None)

    def _rollback(self) -> Outcome:
        with self._locked():
            current = self.current_release()
            if current is None:
                raise UsageError(f"nothing is installed in {self.prefix}")
            earlier = [r for r in self.history() if r != current and r in self.installed()]
            if not earlier:
                raise UsageError(f"there is no earlier release than {current} to return to")
            release = earlier[-1]
            self._switch(release)
            self._sign_state("rollback")
        self._record("rollback", release, "ok", {"from": current})
        self._restart_service()
        return Outcome("rollback", release, current, {})

    def uninstall(self, release: str) -> None:
        """Remove a release that is not current."""
        try:
            self._uninstall(release)
        finally:
            self._hand_over(None)

    def _uninstall(self, release: str) -> None:
        with self._locked():
            if release == self.current_release():
                raise UsageError(f"{release} is current; roll back or upgrade first")
            target = self.releases / release
            if release not in self.installed() or target.parent != self.releases:
                raise UsageError(f"release {release} is not installed in {self.prefix}")
            shutil.rmtree(target)
            self._save_history([r for r in self.history() if r != release])
        self._record("uninstall", release, "ok", {})

    # -- internals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_dir(self.prefix)
        path = self.prefix / ".lock"
        try:  # never through a link: it could point at any file this user may write
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise ConfigError(f"cannot open the lock file {path}: {why}") from None
        with os.fdopen(fd, "r+b") as lock:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"the lock file {path} is not a regular file")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another install runs in {self.prefix}") from None
            yield

    def _pinned_root(self, trust_root: Path | None) -> bytes | None:
        if trust_root is None:
            return None
        data = read_limited(trust_root, MAX_METADATA, "the root of trust")
        if not self.trust.exists():
            return data
        known = [p.read_bytes() for p in self.trust.glob("*root.json")]
        if data not in known:
            raise BundleError(
                f"this host already trusts another root; {trust_root} is not part of its chain"
            )
        return None

    def _lay_out(self, verified: VerifiedBundle, target: Path, stage: Stage) -> None:
        if target.is_symlink():
            target.unlink()
        elif target.exists():  # unfinished, or an earlier install of this version
            shutil.rmtree(target)
        ensure_dir(self.releases)
        target.mkdir(mode=0o755)
        total = sum(info.length for info in verified.targets.values())
        done = 0
        with stage(f"Installing release {verified.release}") as progress:
            for path, info in sorted(verified.targets.items()):
                verified.extract(path, target / path)
                done += info.length
                if progress:
                    progress(done, total)
        with stage("Creating the Python environment (no index)"):
            install_wheels(target / "venv", target / "wheels", verified.wheel_hashes)
        (target / MODEL_LINK).symlink_to(verified.model_file)
        for binary in verified.binaries:  # libexec/NAME: the release's programs run these
            os.chmod(target / binary, 0o755)
        readable_by_all(target)
        with atomic_writer(target / COMPLETE, mode=0o644) as sink:
            os.fchmod(sink.fileno(), 0o644)  # whatever the umask, like the rest of the release
            sink.write(json.dumps({"release": verified.release}).encode())
        fsync_directory(target)

    def _configure(self, identity: Path | None) -> None:
        """The home follows `current`: its config names `current/model.sealed` and its
        policy is a link to `current/policy/policy.toml`, so one rename switches all."""
        ensure_dir(self.home)
        config_path = self.home / CONFIG_FILE
        if identity is not None:
            # The service reads the site identity as its own user: a private copy in
            # the home (0600, handed over with the home), never root's original.
            key = ensure_dir(self.home / "keys") / SITE_KEY
            with atomic_writer(key, mode=0o600) as sink:
                sink.write(read_private(identity, 64 << 10, "the site identity"))
            text = (
                "# Written by the appliance installer.\n"
                "[model]\n"
                f"path = {json.dumps(str(self.current / MODEL_LINK))}\n"
                f"manifest = {json.dumps(str(self.current / MANIFEST))}\n"  # pins its sha256
                f"identity = {json.dumps([f'keys/{SITE_KEY}'])}\n"
            )
            with atomic_writer(config_path, mode=0o644) as sink:
                sink.write(text.encode())
        elif not config_path.exists():
            raise UsageError(f"{config_path} is missing; reinstall with --identity FILE")
        policy = self.home / HOME_POLICY
        if not policy.is_symlink():
            staged = self.home / f".{HOME_POLICY}.new"
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
            staged.symlink_to(self.current / "policy" / "policy.toml")
            os.replace(staged, policy)

    def _switch(self, release: str) -> None:
        """Point `current` at the release: a new link renamed over the old one."""
        staged = self.prefix / ".current.new"
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        staged.symlink_to(Path("releases") / release)
        os.replace(staged, self.current)
        fsync_directory(self.prefix)
        history = [r for r in self.history() if r != release]
        self._save_history([*history, release])

    def _save_history(self, history: list[str]) -> None:
        with atomic_writer(self.state_file, mode=0o644) as sink:
            sink.write(json.dumps({"history": history}).encode())

    def _write_launcher(self) -> None:
        ensure_dir(self.launcher.parent)
        script = (
            "#!/bin/sh\n"
            "# The current release of the appliance, on this host's home.\n"
            f': "${{APPLIANCE_HOME:={self.home}}}"\n'
            f': "${{APPLIANCE_PREFIX:={self.prefix}}}"\n'
            "export APPLIANCE_HOME APPLIANCE_PREFIX\n"
            f'exec "{self.current}/venv/bin/appliance" "$@"\n'
        )
        with atomic_writer(self.launcher, mode=0o755) as sink:
            sink.write(script.encode())

    def _open_prefix(self) -> None:
        """PREFIX, releases/ and bin/ may be entered by the service user, not changed."""
        for folder in (self.prefix, self.releases, self.launcher.parent):
            os.chmod(folder, 0o755)

    def _hand_over(self, service_user: ServiceUser | None) -> None:
        """Give the home tree to the service user: the one given, else (as root) the
        home's owner when it is not root, so that what root wrote in it (the audit
        events of this run, a new config.toml) stays the service's."""
        if os.geteuid() != 0:
            return
        try:
            info = os.lstat(self.home)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            return
        if service_user is not None:
            uid, gid = service_user.uid, service_user.gid
        elif info.st_uid != 0:
            uid, gid = info.st_uid, info.st_gid
        else:
            return
        chown_tree(self.home, uid, gid)
        os.chmod(self.home, 0o700)  # PREFIX is root's: the home cannot have become a link

    def _write_service(self, service_user: ServiceUser) -> None:
        """The unit rendered for this prefix and user, and the marker clients read."""
        template = self.current / UNIT_TEMPLATE
        try:
            text = template.read_text(encoding="utf-8")
        except OSError as exc:
            why = exc.strerror
            raise ConfigError(f"cannot read the release's unit {template}: {why}") from None
        unit = render_unit(text, self.prefix, service_user)
        with atomic_writer(self.unit, mode=0o644) as sink:
            os.fchmod(sink.fileno(), 0o644)  # whatever the umask
            sink.write(unit.encode())
        marker = (
            "# Written by the appliance installer: where the service listens, and its home.\n"
            f"socket = {json.dumps(str(unit_socket(unit)))}\n"
            f"home = {json.dumps(str(self.home))}\n"
        )
        folder = self.service_marker.parent
        if not folder.is_dir():
            folder.mkdir(mode=0o755, parents=True)
            os.chmod(folder, 0o755)
        elif os.stat(folder).st_mode & 0o011 != 0o011:  # clients must reach the marker
            os.chmod(folder, os.stat(folder).st_mode | 0o011)
        with atomic_writer(self.service_marker, mode=0o644) as sink:
            os.fchmod(sink.fileno(), 0o644)
            os.fchown(sink.fileno(), 0, 0)  # root's alone, or clients refuse it
            sink.write(marker.encode())

    def _doctor(self) -> dict[str, Any]:
        env = {**os.environ, "APPLIANCE_HOME": str(self.home)}
        result = subprocess.run(
            [str(self.launcher), "doctor", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return {"ok": False, "checks": [{"name": "doctor", "ok": False, "detail": last}]}
        return report

    def _restart_service(self) -> None:
        """The release changed under a running service: systemd stops it (it drains: the
        running answer finishes, audited) and starts it on the new release. (An upgrade
        by install.sh restarts it once the new release's unit is in place.)"""
        if os.geteuid() != 0 or not Path("/run/systemd/system").is_dir():
            return
        subprocess.run(["systemctl", "try-restart", UNIT], check=False, capture_output=True)

    def _sign_state(self, reason: str) -> None:
        """The home's config and policy link changed: sign what they are now."""
        with AuditLog(audit_dir(self.home)) as log:
            record_state(self.home, log, self.actor, reason)

    def _record(self, action: str, release: str, outcome: str, details: dict[str, Any]) -> None:
        with AuditLog(audit_dir(self.home)) as log:
            event = Event(self.actor, action, f"release {release}", outcome, details=details)
            log.record(event, checkpoint=True)


def render_unit(template: str, prefix: Path, service_user: ServiceUser) -> str:
    """The unit template (written for /opt/appliance) for `prefix` and `service_user`:
    in every setting, /opt/appliance becomes the prefix; User= and Group= the user's."""
    if not _UNIT_PATH.fullmatch(str(prefix)):
        raise UsageError(
            f"the prefix {prefix} cannot be named in a systemd unit as it is; "
            "use letters, digits and . _ + - / only"
        )
    lines = []
    for line in template.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", ";", "[")):
            if key == "User":
                value = service_user.user
            elif key == "Group":
                value = service_user.group
            else:
                value = re.sub(rf"{re.escape(TEMPLATE_PREFIX)}(?=/|\s|$)", str(prefix), value)
            line = f"{key}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, values in order (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", ";", "[")):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_socket(unit: str) -> Path:
    """The path the unit's ExecStart gives to `serve --socket`."""
    words = " ".join(unit_settings(unit).get("ExecStart", [])).split()
    if "--socket" not in words[:-1]:
        raise ConfigError("the release's unit names no --socket for the service")
    return Path(words[words.index("--socket") + 1])


def readable_by_all(tree: Path) -> None:
    """Folders 0755, files 0644 (0755 if their owner may run them), whatever the umask
    and pip did: anyone may read and run a release; only its owner may change it."""
    for _folder, _folders, files, fd in os.fwalk(tree):
        os.chmod(fd, 0o755)
        for name in files:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):  # links keep theirs (they have none of their own)
                os.chmod(name, 0o755 if info.st_mode & stat.S_IXUSR else 0o644, dir_fd=fd)


def chown_tree(tree: Path, uid: int, gid: int) -> None:
    """Give `tree` and everything in it to uid:gid, links themselves included.

    Walked through folder descriptors, never through a link: the tree belongs to
    a less privileged user, who could swap a folder for a link at any moment. A
    file with other hard links is left alone: it could be one of root's files.
    """
    os.chown(tree, uid, gid, follow_symlinks=False)
    for _folder, folders, files, fd in os.fwalk(tree):
        for name in (*folders, *files):
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (info.st_uid, info.st_gid) == (uid, gid):
                    continue
                if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                    continue
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)


def _failures(doctor: dict[str, Any]) -> str:
    checks = doctor.get("checks", [])
    return "; ".join(f"{c['name']}: {c['detail']}" for c in checks if c.get("ok") is False)


def install_wheels(venv: Path, wheels: Path, signed: dict[str, str]) -> None:
    """A new venv with exactly the signed wheels (file name -> sha256) installed.

    Nothing of the caller's environment or pip configuration reaches pip, which
    installs from `wheels` alone and checks each wheel against its signed
    hash; then every distribution in the venv must be one of the signed wheels
    or what `venv` itself brought (pip, setuptools), else BundleError.
    """
    python = str(venv / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="appliance-pip-") as scratch:
        env = _clean_environment(Path(scratch))
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(_pinned_requirements(signed))
        _run([sys.executable, "-I", "-m", "venv", str(venv)], env)
        bundled = {d for d in _distributions(python, env) if d[0] in _ENSUREPIP}
        _run(
            [
                *(python, "-I", "-m", "pip", "install", "--isolated", "--quiet"),
                *("--no-index", "--find-links", str(wheels), "--only-binary", ":all:"),
                *("--require-hashes", "--no-cache-dir", "--disable-pip-version-check"),
                *("--no-input", "--requirement", str(requirements)),
            ],
            env,
        )
        installed = _distributions(python, env)
    allowed = bundled | {_wheel_identity(name) for name in signed}
    unsigned = sorted(f"{name} {version}" for name, version in installed - allowed)
    if unsigned:
        raise BundleError(
            f"the release's Python environment holds what the bundle does not sign "
            f"({', '.join(unsigned[:5])}); refusing it"
        )


def _clean_environment(home: Path) -> dict[str, str]:
    """An environment with no PIP_* or PYTHON* variable, an empty HOME (no user
    pip.conf) and PIP_CONFIG_FILE=/dev/null (pip then reads no config file at all)."""
    return {"PATH": os.defpath, "HOME": str(home), "PIP_CONFIG_FILE": os.devnull}


def _pinned_requirements(signed: dict[str, str]) -> str:
    """One `name==version --hash=sha256:...` line per project of the signed wheels."""
    projects: dict[str, tuple[str, list[str]]] = {}
    for filename, digest in sorted(signed.items()):
        name, version = _wheel_identity(filename)
        pinned, digests = projects.setdefault(name, (version, []))
        if pinned != version:
            raise BundleError(f"the bundle's wheels hold two versions of {name}")
        digests.append(digest)
    return "".join(
        f"{name}=={version} {' '.join(f'--hash=sha256:{d}' for d in digests)}\n"
        for name, (version, digests) in sorted(projects.items())
    )


def _wheel_identity(filename: str) -> tuple[str, str]:
    """(canonical project name, version) from a wheel's file name."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6):
        raise BundleError(f"'{filename}' in the bundle is not a wheel's file name")
    return _canonical(parts[0]), parts[1]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def _distributions(python: str, env: dict[str, str]) -> set[tuple[str, str]]:
    """(canonical name, version) of every distribution the venv's Python finds."""
    result = subprocess.run(
        [python, "-I", "-c", _LIST_DISTRIBUTIONS],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        found = json.loads(result.stdout)
        return {(_canonical(str(name)), str(version)) for name, version in found}
    except (ValueError, TypeError):
        raise BundleError("cannot list what the release's Python environment holds") from None


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise BundleError(f"'{' '.join(command[:4])} ...' failed: {last}")
