"""The host installer against a hostile environment and a tampered prefix.

Bundles are signed here with the real metadata code and installed with the
real installer; their wheels are tiny stand-ins (an `appliance` whose doctor
always passes, and one dependency) so that pip runs in seconds.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from appliance.audit import Actor
from appliance.bundle import repository
from appliance.bundle.archive import write_bundle
from appliance.bundle.host import Host, install_wheels
from appliance.engine.tools import NODUMP_PRELOAD, SHIPPED_FILES
from appliance.errors import BundleError, ConfigError
from appliance.seal import Identity, write_identity
from tests.conftest import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parent.parent
PASS = "signing-pass-1"
WEIGHTS = b"sealed weights " * 400
STUB = {  # the stand-in appliance: its doctor passes, its verifier says what it imports
    "appliance/__init__": (
        "import json\n\n\ndef main():\n    print(json.dumps({'ok': True, 'checks': []}))\n"
    ),
    "appliance/__main__": "import tinydep\n\nprint(f'verifier with tinydep {tinydep.VERSION}')\n",
}


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    modules: dict[str, str],
    *,
    requires: tuple[str, ...] = (),
    scripts: dict[str, str] | None = None,
) -> Path:
    """A pure-Python wheel, as a build backend would write it."""
    info = f"{name}-{version}.dist-info"
    files = {f"{module}.py": text for module, text in modules.items()}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    )
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
    files[f"{info}/WHEEL"] += "Tag: py3-none-any\n"
    if scripts:
        lines = "".join(f"{script} = {target}\n" for script, target in scripts.items())
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}"
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}\n")
    files[f"{info}/RECORD"] = "".join(record) + f"{info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    repository.init(tmp_path / "keys", PASS)
    return tmp_path / "keys"


@pytest.fixture
def wheels(tmp_path: Path) -> list[Path]:
    """The signed wheelhouse: the stand-in appliance and the one dependency it needs."""
    directory = tmp_path / "wheelhouse"
    return [
        make_wheel(
            directory,
            "appliance",
            "0.1.0",
            STUB,
            requires=("tinydep",),
            scripts={"appliance": "appliance:main"},
        ),
        make_wheel(directory, "tinydep", "1.0", {"tinydep": 'VERSION = "1.0"\n'}),
    ]


def signed_bundle(
    keys: Path,
    out: Path,
    manifest: dict[str, object],
    wheels: list[Path] | None = None,
    binaries: dict[str, bytes] | None = None,
) -> Path:
    """A bundle signed with the real metadata code: manifest, model, wheels, and
    `binaries` (name -> bytes) as libexec/NAME, named in the manifest as `bundle build`
    names them."""
    staged = out.with_suffix(".files")
    staged.mkdir()
    (staged / "m.sealed").write_bytes(WEIGHTS)
    files = {"bundle.json": staged / "bundle.json", "model/m.sealed": staged / "m.sealed"}
    files.update({f"wheels/{wheel.name}": wheel for wheel in wheels or []})
    if binaries:
        (staged / "libexec").mkdir()
        entries = {}
        for name, data in binaries.items():
            files[f"libexec/{name}"] = staged / "libexec" / name
            files[f"libexec/{name}"].write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            entries[name] = {"file": f"libexec/{name}", "sha256": digest, "bytes": len(data)}
        manifest = manifest | {"binaries": {"files": entries}}
    (staged / "bundle.json").write_text(json.dumps(manifest))
    signed = repository.sign_release(keys, PASS, files, timestamp_days=30)
    write_bundle(out, signed.members(), files)
    return out


def manifest(release: str = "2.0.0", **model: object) -> dict[str, object]:
    fields = {
        "file": "model/m.sealed",
        "content_id": "m@1",
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
    }
    return {"release": release, "model": fields | model}


def install(prefix: Path, bundle: Path, keys: Path) -> None:
    identity = keys / "site.key"  # a private file, copied into the home; never unsealed with
    if not identity.exists():
        write_identity(identity, Identity.generate(), None)
    Host(prefix, Actor("it", "installer")).install(
        bundle,
        upgrade=False,
        trust_root=keys / "root.json",
        identity=identity,
        stage=lambda _description: contextlib.nullcontext(),
    )


def distributions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", code], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(result.stdout)
    return found


# -- pip ---------------------------------------------------------------------------------------


def hostile_pip_environment(tmp_path: Path) -> dict[str, str]:
    """PIP_* variables and pip.conf files that offer a higher version of the dependency."""
    evil = tmp_path / "evil"
    make_wheel(evil, "tinydep", "9.9", {"tinydep": 'VERSION = "9.9"\n'})
    user = tmp_path / "user"
    (user / ".config" / "pip").mkdir(parents=True)
    conf = f"[global]\nfind-links = {evil}\n[install]\nupgrade = true\n"
    (user / ".config" / "pip" / "pip.conf").write_text(conf)
    (user / "pip.conf").write_text(conf)
    return {
        "HOME": str(user),
        "PIP_CONFIG_FILE": str(user / "pip.conf"),
        "PIP_FIND_LINKS": str(evil),
        "PIP_UPGRADE": "1",
    }


def test_install_time_pip_ignores_pip_variables_and_pip_conf(
    tmp_path: Path, keys: Path, wheels: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release's venv gets the signed version of the dependency, and nothing else."""
    for name, value in hostile_pip_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest(), wheels)

    prefix = tmp_path / "prefix"
    install(prefix, bundle, keys)

    venv = prefix / "releases" / "2.0.0" / "venv"
    found = distributions(venv)
    assert found["tinydep"] == "1.0"
    assert found["appliance"] == "0.1.0"
    assert set(found) <= {"appliance", "tinydep", "pip", "setuptools"}
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", "import tinydep; print(tinydep.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.0"


def test_the_bootstrap_installs_only_the_bundles_wheels(
    tmp_path: Path, keys: Path, wheels: list[Path]
) -> None:
    """install.sh's throwaway venv (the first verifier) obeys no PIP_* or pip.conf either."""
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest(), wheels)
    env = {**os.environ, **hostile_pip_environment(tmp_path)}
    result = subprocess.run(
        [
            str(ROOT / "installer" / "install.sh"),
            str(bundle),
            *("--prefix", str(tmp_path / "prefix")),
            *("--trust", str(keys / "root.json"), "--identity", str(keys / "root.json")),
            "--no-service",  # as root it would create a system user and enable a unit here
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verifier with tinydep 1.0" in result.stdout


def test_a_venv_holding_anything_unsigned_is_refused(tmp_path: Path, wheels: list[Path]) -> None:
    """Whatever pip did, every distribution left in the venv must be a signed wheel."""
    venv = tmp_path / "venv"
    planted = make_wheel(tmp_path / "planted", "planted", "1.0", {"planted": ""})
    # A venv holding `planted`, installed by pip: this interpreter's pip, into the venv's
    # prefix (the venv needs no pip of its own for that; install_wheels gives it one).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--isolated", "--no-index"),
            *("--disable-pip-version-check", "--prefix", str(venv), str(planted)),
        ],
        check=True,
    )
    assert ("planted", "1.0") in {(n.lower(), v) for n, v in distributions(venv).items()}
    signed = {wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest() for wheel in wheels}
    with pytest.raises(BundleError, match=r"does not sign \(planted 1\.0\)"):
        install_wheels(venv, wheels[0].parent, signed)


def test_a_wheel_that_does_not_match_its_signed_hash_is_not_installed(
    tmp_path: Path, wheels: list[Path]
) -> None:
    signed = {wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest() for wheel in wheels}
    make_wheel(wheels[1].parent, "tinydep", "1.0", {"tinydep": 'VERSION = "swapped"\n'})
    with pytest.raises(BundleError, match="failed"):
        install_wheels(tmp_path / "venv", wheels[0].parent, signed)


# -- the shipped binaries ----------------------------------------------------------------------


def from_release(release: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """This checkout's appliance, run by the release's own Python, as the installed
    appliance runs: its sys.prefix is the release's venv (whose stand-in wheel can do
    nothing more)."""
    paths = sysconfig.get_paths()
    found = os.pathsep.join([str(ROOT), paths["purelib"], paths["platlib"]])
    env = {**os.environ, "APPLIANCE_HOME": str(home), "PYTHONPATH": found}
    env.pop("APPLIANCE_DEBUG", None)
    python = str(release / "venv" / "bin" / "python")
    return subprocess.run(
        [python, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


LOOKUP = """
import json
from appliance.engine.tools import SHIPPED_FILES, llama_tool, shipped_file
from appliance.errors import ConfigError
found = {}
for name in SHIPPED_FILES:
    try:
        found[name] = str(shipped_file(name))
    except ConfigError as exc:
        found[name] = str(exc)
found["llama_tool"] = str(llama_tool("llama-server"))
print(json.dumps(found))
"""


def binaries_check(release: Path, home: Path) -> dict[str, object]:
    """`appliance doctor`'s check of the shipped binaries, run from the release."""
    doctor = from_release(release, "-m", "appliance", "doctor", "--json", home=home)
    assert doctor.stdout, doctor.stderr
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    found: dict[str, object] = checks["binaries"]
    return found


def test_a_release_lays_out_its_binaries_runs_them_and_doctor_checks_them(
    tmp_path: Path, keys: Path, wheels: list[Path]
) -> None:
    binaries = {name: f"#!/bin/sh\necho {name}\n".encode() for name in SHIPPED_FILES}
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest(), wheels, binaries)
    prefix = tmp_path / "prefix"
    umask = os.umask(0o077)  # whatever the umask, the release is readable and runnable by all
    try:
        install(prefix, bundle, keys)
    finally:
        os.umask(umask)
    release, home = (prefix / "releases" / "2.0.0").resolve(), prefix / "home"
    libexec = release / "libexec"
    assert stat.S_IMODE(libexec.stat().st_mode) == 0o755
    for name, data in binaries.items():
        info = (libexec / name).lstat()
        assert stat.S_ISREG(info.st_mode), name
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o755), name
        assert (libexec / name).read_bytes() == data

    # The release's own copies, never the build cache (which this checkout has too).
    lookup = from_release(release, "-c", LOOKUP, home=home)
    assert lookup.returncode == 0, lookup.stderr
    expected = {name: str(libexec / name) for name in SHIPPED_FILES}
    assert json.loads(lookup.stdout) == expected | {"llama_tool": str(libexec / "llama-server")}
    check = binaries_check(release, home)
    assert check["ok"] is True, check
    assert (
        check["detail"]
        == f"{len(SHIPPED_FILES)} files in {libexec} match release 2.0.0's signed manifest"
    )

    (libexec / "llama-server").write_bytes(b"#!/bin/sh\necho swapped\n")
    (libexec / NODUMP_PRELOAD).unlink()
    check = binaries_check(release, home)
    assert check["ok"] is False
    assert check["detail"] == (
        "llama-server: modified: its sha256 is not the one the release's manifest signs; "
        f"{NODUMP_PRELOAD}: missing"
    )
    lookup = from_release(release, "-c", LOOKUP, home=home)
    assert json.loads(lookup.stdout)[NODUMP_PRELOAD] == (
        f"{NODUMP_PRELOAD} is missing from the installed release (expected "
        f"{libexec / NODUMP_PRELOAD}); reinstall the release"
    )


# -- the prefix --------------------------------------------------------------------------------


def test_an_existing_release_folder_is_rebuilt_not_reused(
    tmp_path: Path, keys: Path, wheels: list[Path]
) -> None:
    """A releases/V marked complete, but not what the signed bundle holds, is replaced."""
    prefix = tmp_path / "prefix"
    planted = prefix / "releases" / "2.0.0"
    (planted / "model").mkdir(parents=True)
    (planted / "model" / "m.sealed").write_bytes(b"other weights")
    (planted / "venv" / "bin").mkdir(parents=True)
    (planted / "venv" / "bin" / "appliance").write_text("#!/bin/sh\necho planted\n")
    (planted / ".complete").write_text('{"release": "2.0.0"}')
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest(), wheels)

    install(prefix, bundle, keys)

    assert (planted / "model" / "m.sealed").read_bytes() == WEIGHTS
    assert "planted" not in (planted / "venv" / "bin" / "appliance").read_text()
    assert distributions(planted / "venv")["appliance"] == "0.1.0"


def test_the_lock_is_never_opened_through_a_link(tmp_path: Path, keys: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    victim = tmp_path / "victim"
    (prefix / ".lock").symlink_to(victim)
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest())
    with pytest.raises(ConfigError, match="lock file"):
        install(prefix, bundle, keys)
    assert not victim.exists()
    assert sorted(p.name for p in prefix.iterdir()) == [".lock"]


@pytest.mark.parametrize(
    ("release", "model", "why"),
    [
        ("../x", {}, "is not a version"),
        ("..", {}, "is not a version"),
        ("ABSOLUTE", {}, "is not a version"),
        ("1.0.0/../../x", {}, "is not a version"),
        ("1." + "0" * 80, {}, "is not a version"),
        ("2.0.0", {"file": "../../x.sealed"}, "is not model/NAME.sealed"),
        ("2.0.0", {"file": "model/other.sealed"}, "names a model file it does not sign"),
        ("2.0.0", {"sha256": "0" * 63}, "sha256 is not 64 lowercase hex"),
        ("2.0.0", {"content_id": "../m"}, "content id is malformed"),
    ],
)
def test_a_manifest_that_would_make_a_path_is_refused(
    tmp_path: Path, keys: Path, release: str, model: dict[str, str], why: str
) -> None:
    if release == "ABSOLUTE":
        release = str(tmp_path / "elsewhere")
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest(release, **model))
    prefix = tmp_path / "prefix"
    with pytest.raises(BundleError, match=why):
        install(prefix, bundle, keys)
    assert sorted(p.name for p in prefix.iterdir()) == [".lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "prefix", "r.bundle", "r.files"]


def test_a_manifest_release_path_is_one_line_exit_16(tmp_path: Path, keys: Path) -> None:
    bundle = signed_bundle(keys, tmp_path / "r.bundle", manifest("../x"))
    result = run_cli(
        "install",
        str(bundle),
        "--prefix",
        str(tmp_path / "prefix"),
        "--trust",
        str(keys / "root.json"),
        "--identity",
        str(keys / "root.json"),
        home=tmp_path / "home",
    )
    assert_one_line_error(result, 16, "is not a version")
    assert not (tmp_path / "x").exists()
