"""The installed layout as the service user sees it, and the unit that runs it.

A stand-in bundle (tiny wheels, as in test_bundle_hardening) is installed as
root with `--service-user UID:GID` for a uid that has no passwd entry; then,
as that uid (setpriv), the release must run, the home must be writable, and
the releases must not be. The rendered unit must name the same paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import seal
from appliance.audit import Actor
from appliance.bundle import repository
from appliance.bundle.archive import write_bundle
from appliance.bundle.host import (
    SERVICE_MARKER,
    TEMPLATE_PREFIX,
    Host,
    ServiceUser,
    chown_tree,
    render_unit,
    unit_settings,
)
from appliance.errors import UsageError
from tests.conftest import run_cli
from tests.test_bundle_hardening import PASS, WEIGHTS, make_wheel

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "installer" / "appliance.service"
UID = GID = 61234  # no passwd entry needed
STUB = {  # the stand-in appliance: --version, and a doctor that passes
    "appliance/__init__": (
        "import json, sys\n\n\ndef main():\n"
        "    if sys.argv[1:] == ['--version']:\n"
        "        print('appliance 0.1.0')\n"
        "    else:\n"
        "        print(json.dumps({'ok': True, 'checks': []}))\n"
    ),
    "appliance/__main__": "import sys\n\nprint('verifier', *sys.argv[1:])\n",  # install.sh's
}

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it changes owners")


def as_service(*command: str) -> subprocess.CompletedProcess[str]:
    """Run `command` as the service's uid and gid, with no supplementary groups."""
    return subprocess.run(
        ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stand_in_bundle(base: Path) -> tuple[Path, Path]:
    """A signed bundle: the stand-in appliance wheel, a model, the real unit template."""
    keys = base / "keys"
    repository.init(keys, PASS)
    wheel = make_wheel(
        base / "wheels", "appliance", "0.1.0", STUB, scripts={"appliance": "appliance:main"}
    )
    staged = base / "files"
    staged.mkdir()
    manifest = {
        "release": "1.0.0",
        "model": {
            "file": "model/m.sealed",
            "content_id": "m@1",
            "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
        },
    }
    (staged / "bundle.json").write_text(json.dumps(manifest))
    (staged / "m.sealed").write_bytes(WEIGHTS)
    files = {
        "bundle.json": staged / "bundle.json",
        "model/m.sealed": staged / "m.sealed",
        "installer/appliance.service": TEMPLATE,
        f"wheels/{wheel.name}": wheel,
    }
    signed = repository.sign_release(keys, PASS, files, timestamp_days=30)
    bundle = base / "r.bundle"
    write_bundle(bundle, signed.members(), files)
    return bundle, keys


def stand_in_identity(base: Path) -> Path:
    """A site identity file, private (0600) as `appliance keys generate` writes it: the
    installer copies it into the home (the stand-in release never unseals with it)."""
    path = base / "site.key"
    seal.write_identity(path, seal.Identity.generate(), None)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Installed once, as root, for the service uid; under a folder that uid may enter
    (pytest's own temporary folders are root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it changes owners")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    base = tmp_path_factory.mktemp("service")
    bundle, keys = stand_in_bundle(base)
    identity = stand_in_identity(base)
    open_folder = Path(tempfile.mkdtemp(prefix="appliance-layout-"))
    try:
        open_folder.chmod(0o755)
        prefix = open_folder / "prefix"
        marker = base / "etc" / "appliance" / "service.toml"
        with contextlib.ExitStack() as umask:  # a hardened host's umask: nothing for others
            old = os.umask(0o077)
            umask.callback(os.umask, old)
            result = run_cli(
                "install",
                str(bundle),
                *("--prefix", str(prefix), "--trust", str(keys / "root.json")),
                *("--identity", str(identity)),
                *("--service-user", f"{UID}:{GID}", "--service-marker", str(marker)),
                home=base / "admin",
            )
        assert result.returncode == 0, result.stderr
        assert f"service: {prefix / 'home'} belongs to {UID}:{GID}" in result.stdout
        yield {"prefix": prefix, "marker": marker, "base": base, "identity": identity}
    finally:
        shutil.rmtree(open_folder)


def test_the_service_user_runs_the_release_and_writes_only_its_home(installed) -> None:
    prefix = installed["prefix"]
    probe = as_service(sys._base_executable, "-I", "-c", "pass")  # type: ignore[attr-defined]
    if probe.returncode != 0:
        pytest.skip(f"uid {UID} cannot run this machine's Python: {probe.stderr.strip()}")

    version = as_service(str(prefix / "current" / "venv" / "bin" / "appliance"), "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "appliance 0.1.0"

    home = prefix / "home"
    writes = as_service(
        "sh",
        "-c",
        f"cd {shlex.quote(str(home))} && echo x > probe && cat probe config.toml"
        " && touch audit/probe && rm probe audit/probe",
    )
    assert writes.returncode == 0, writes.stderr
    assert writes.stdout.startswith("x\n")

    release = prefix / "releases" / "1.0.0"
    for forbidden in (
        f"touch {prefix}/releases/planted",
        f"touch {release}/planted",
        f"touch {prefix}/current/venv/planted",
        f"touch {prefix}/current/venv/bin/planted",
        f": >> {prefix}/current/venv/bin/appliance",
        f"rm -rf {release}/venv/bin",
        f"ln -sfn releases/other {prefix}/current",
        f"mkdir {prefix}/planted",
        f"touch {prefix}/appliance.service",
    ):
        refused = as_service("sh", "-c", forbidden)
        assert refused.returncode != 0, forbidden
    assert (release / "venv" / "bin" / "appliance").exists()
    assert not list(prefix.rglob("planted"))


def test_the_layout_has_the_documented_owners_and_modes(installed) -> None:
    prefix = installed["prefix"]

    def owner_mode(path: Path) -> tuple[int, int, int]:
        info = path.lstat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    for folder in ("", "releases", "releases/1.0.0", "bin", "releases/1.0.0/venv"):
        assert owner_mode(prefix / folder) == (0, 0, 0o755), folder
    assert owner_mode(prefix / "appliance.service") == (0, 0, 0o644)
    # Installed under umask 077, the release is still readable by all and writable by root.
    for path in (prefix / "releases" / "1.0.0").rglob("*"):
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode):
            assert info.st_uid == 0, path
            assert stat.S_IMODE(info.st_mode) in (0o755, 0o644), path
    home = prefix / "home"
    assert owner_mode(home) == (UID, GID, 0o700)
    for path in home.rglob("*"):
        assert (path.lstat().st_uid, path.lstat().st_gid) == (UID, GID), path
    assert home.joinpath("policy.toml").is_symlink()
    # The service's own private copy of the site identity, which its config names.
    site_key = home / "keys" / "site.key"
    assert owner_mode(site_key) == (UID, GID, 0o600)
    assert site_key.read_bytes() == installed["identity"].read_bytes()
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["model"]["identity"] == ["keys/site.key"]

    marker = installed["marker"]
    assert owner_mode(marker) == (0, 0, 0o644)
    assert not marker.parent.stat().st_mode & 0o022  # clients refuse a marker others may swap
    values = tomllib.loads(marker.read_text())
    assert values == {"socket": "/run/appliance/appliance.sock", "home": str(home)}


def test_the_rendered_unit_agrees_with_the_layout(installed) -> None:
    prefix = installed["prefix"]
    unit = (prefix / "appliance.service").read_text()
    settings = unit_settings(unit)
    marker = tomllib.loads(installed["marker"].read_text())

    program, *arguments = settings["ExecStart"][0].split()
    assert program == str(prefix / "current" / "venv" / "bin" / "appliance")
    assert os.access(program, os.X_OK)
    assert arguments == ["serve", "--socket", marker["socket"]]
    assert settings["User"] == [str(UID)]
    assert settings["Group"] == [str(GID)]
    assert settings["Environment"] == [f"APPLIANCE_HOME={prefix / 'home'}"]
    assert marker["home"] == str(prefix / "home")
    assert settings["ReadWritePaths"] == [str(prefix / "home")]  # the home only
    # The socket is made in the runtime folder systemd makes for the service.
    assert Path(marker["socket"]).parent == Path("/run") / settings["RuntimeDirectory"][0]
    assert settings["RuntimeDirectoryMode"] == ["0750"]  # the group reaches the socket
    assert settings["Documentation"] == [f"file://{prefix}/current/docs/architecture.md"]
    assert TEMPLATE_PREFIX not in "".join(v for vs in settings.values() for v in vs)
    # Only the settings changed: the comments are the template's.
    template = TEMPLATE.read_text().splitlines()
    comments = [line for line in unit.splitlines() if line.startswith("#")]
    assert comments == [line for line in template if line.startswith("#")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_rendered_unit(installed, tmp_path: Path) -> None:
    unit = tmp_path / "appliance.service"
    shutil.copyfile(installed["prefix"] / "appliance.service", unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert problems == [], result.stderr


@as_root
@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="it would enable the unit")
def test_install_sh_as_root_sets_up_the_service(tmp_path: Path) -> None:
    """The first install and an upgrade get --service-user; a numeric one needs no
    useradd; where systemd does not run, the unit is left for IT staff to install."""
    bundle, keys = stand_in_bundle(tmp_path)
    identity = stand_in_identity(tmp_path)
    marker = tmp_path / "service.toml"
    common = [
        *("--service-user", f"{UID}:{GID}", "--service-marker", str(marker)),
        *("--trust", str(keys / "root.json"), "--identity", str(identity)),
    ]
    prefix = tmp_path / "prefix"
    install_sh = str(ROOT / "installer" / "install.sh")
    first = subprocess.run(
        [install_sh, str(bundle), "--prefix", str(prefix), *common],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert f"verifier install {bundle} --prefix {prefix}" in first.stdout
    assert f"--service-user {UID}:{GID} --service-marker {marker}" in first.stdout
    assert "created the system user" not in first.stderr
    assert f"systemd is not running; install {prefix / 'appliance.service'}" in first.stderr

    launcher = prefix / "bin" / "appliance"  # an installed release: it upgrades
    launcher.parent.mkdir(parents=True)
    launcher.write_text('#!/bin/sh\necho "installed $*"\n')
    launcher.chmod(0o755)
    upgrade = subprocess.run(
        [install_sh, str(bundle), "--prefix", str(prefix), *common[:4]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.strip() == (
        f"installed upgrade {bundle} --prefix {prefix} --service-user {UID}:{GID} "
        f"--service-marker {marker}"
    )
    skipped = subprocess.run(
        [install_sh, str(bundle), "--prefix", str(prefix), "--no-service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert skipped.stdout.strip() == f"installed upgrade {bundle} --prefix {prefix}"
    assert "systemd" not in skipped.stderr


def test_each_setting_of_the_unit_says_why() -> None:
    """One comment per setting, on the line above; the design notes say how it grows."""
    lines = TEMPLATE.read_text().splitlines()
    settings = 0
    for number, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert "=" in line, line
            settings += 1
            assert number > 0
            assert lines[number - 1].startswith("# "), f"no comment above {line}"
    assert settings >= 30
    keys = unit_settings(TEMPLATE.read_text())
    assert "ExecReload" not in keys  # a restart applies changes
    assert "StateDirectory" not in keys  # the home is PREFIX/home
    assert keys["ReadWritePaths"] == [f"{TEMPLATE_PREFIX}/home"]
    text = TEMPLATE.read_text()
    assert "appliance.service.d/*.conf" in text
    assert "systemctl restart" in text


def test_the_template_is_rendered_for_any_plain_prefix() -> None:
    user = ServiceUser("appliance", "appliance", 990, 990)
    unit = render_unit(TEMPLATE.read_text(), Path("/srv/ai"), user)
    settings = unit_settings(unit)
    assert settings["ExecStart"][0].startswith("/srv/ai/current/venv/bin/appliance serve")
    assert settings["User"] == ["appliance"]
    assert settings["ReadWritePaths"] == ["/srv/ai/home"]
    with pytest.raises(UsageError, match="cannot be named in a systemd unit"):
        render_unit(TEMPLATE.read_text(), Path("/srv/my ai"), user)
    with pytest.raises(UsageError, match="cannot be named in a systemd unit"):
        render_unit(TEMPLATE.read_text(), Path("/srv/100%"), user)


def test_service_user_specs() -> None:
    assert ServiceUser.parse(f"{UID}:{GID}") == ServiceUser(str(UID), str(GID), UID, GID)
    for spec, why in [
        (str(UID), "give the service user's group too"),
        ("root", "must not run as root"),
        ("0:0", "must not run as root"),
        (f"{UID}:0", "must not run as root"),
        ("no-such-appliance-user", "does not exist"),
        (f"{UID}:no-such-appliance-group", "does not exist"),
    ]:
        with pytest.raises(UsageError, match=why):
            ServiceUser.parse(spec)


def test_a_service_user_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    host = Host(tmp_path / "prefix", Actor("it", "installer"), service_marker=tmp_path / "m")
    with pytest.raises(UsageError, match="needs root"):
        host.install(
            tmp_path / "r.bundle",
            upgrade=False,
            trust_root=None,
            identity=None,
            stage=lambda _description: contextlib.nullcontext(),
            service_user=ServiceUser("x", "x", UID, GID),
        )
    assert not (tmp_path / "prefix").exists()
    assert Path("/etc/appliance/service.toml") == SERVICE_MARKER


@as_root
def test_what_root_adds_to_the_home_later_stays_the_services(tmp_path: Path) -> None:
    """An upgrade, rollback or uninstall (run as root) hands the home back to its owner,
    never following a link or a hard link out of it."""
    prefix = tmp_path / "prefix"
    home = prefix / "home"
    (home / "audit").mkdir(parents=True)
    outside = tmp_path / "root-file"
    outside.write_text("root's")
    chown_tree(home, UID, GID)
    (home / "audit" / "new-event").write_text("written by root")
    (home / "link").symlink_to(outside)
    os.link(outside, home / "hard")

    Host(prefix, Actor("it", "installer"))._hand_over(None)

    assert (home / "audit" / "new-event").stat().st_uid == UID
    assert (home / "link").lstat().st_uid == UID
    assert outside.stat().st_uid == 0  # through neither the link nor the hard link
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
