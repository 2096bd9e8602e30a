"""Private files stay private: the home is made 0700 whatever the umask, and password and
passphrase files others may read are refused, as identity files are."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli.passphrase import read_secret
from appliance.config import ensure_dir
from appliance.errors import InputError
from tests.conftest import assert_one_line_error, run_cli


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a plain mkdir makes 0755 directories."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """The mode of `root` and of every directory under it."""
    found = {".": root.stat().st_mode & 0o777}
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return found


def test_a_new_home_and_its_directories_are_0700(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "new" / "home"  # neither exists yet
    result = run_cli("audit", "key", home=home)
    assert result.returncode == 0, result.stderr
    assert modes(home) == {".": 0o700, "audit": 0o700}
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_ensure_dir_makes_0700_under_any_umask(tmp_path: Path) -> None:
    previous = os.umask(0o277)  # would leave the owner unable to write
    try:
        ensure_dir(tmp_path / "a" / "b")
    finally:
        os.umask(previous)
    assert modes(tmp_path / "a") == {".": 0o700, "b": 0o700}


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    ensure_dir(shared / "inner")
    assert modes(shared) == {".": 0o750, "inner": 0o700}


def secret(path: Path, text: str, mode: int) -> str:
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def signing_in(password_file: str) -> list[str]:
    """A command that reads --password-file first; with no accounts, sign-in then fails."""
    return ["audit", "key", "--user", "kim", "--password-file", password_file]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_password_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret(tmp_path / "kim.pw", "operator-pass-1", mode)
    result = run_cli(*signing_in(path), home=tmp_path / "home")
    assert_one_line_error(result, 3, f"the password file {path} is readable or writable by other")
    assert f"run 'chmod 600 {path}' first" in result.stderr
    os.chmod(path, 0o600)  # then it is read, and sign-in goes on (to find no accounts)
    assert_one_line_error(run_cli(*signing_in(path), home=tmp_path / "home"), 14, "no users")


def test_a_passphrase_file_others_may_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "site.key"
    passphrase = secret(tmp_path / "pass", "correct horse battery", 0o644)
    args = ["keys", "generate", "--out", str(key), "--passphrase-file", passphrase]
    result = run_cli(*args, home=tmp_path)
    assert_one_line_error(result, 3, f"the passphrase file {passphrase} is readable or writable")
    assert not key.exists()
    os.chmod(passphrase, 0o600)
    assert run_cli(*args, home=tmp_path).returncode == 0


def test_a_password_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # opening it for reading would wait for a writer
    result = run_cli(*signing_in(str(fifo)), home=tmp_path / "home", timeout=60)
    assert_one_line_error(result, 3, f"the password file {fifo} is not a regular file")
    result = run_cli(*signing_in(str(tmp_path)), home=tmp_path / "home")
    assert_one_line_error(result, 3, "is not a regular file")


def test_new_passwords_are_read_by_the_same_rule(tmp_path: Path) -> None:
    """--new-password-file (setup, users add, passwd) goes through the same reader."""
    path = Path(secret(tmp_path / "new.pw", "a-new-password", 0o644))
    with pytest.raises(InputError, match=r"the password file .* is readable or writable by other"):
        read_secret(path, "New password for kim", confirm=True)
    path.chmod(0o600)
    assert read_secret(path, "New password for kim", confirm=True) == "a-new-password"


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "check", "{path}"),
        (
            "restore",
            "b.sealed",
            "--identity",
            "k",
            "--trusted-checkpoint",
            "{path}",
            "--admin",
            "root1",
            "--officer",
            "lee",
        ),
        ("models", "inspect", "{path}"),
    ],
)
def test_a_fifo_or_a_device_named_as_a_file_is_refused_at_once(tmp_path: Path, args) -> None:
    """Opening a FIFO for reading waits for a writer, a device never ends: each file a
    user names is opened without waiting and refused unless it is a regular file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for path in (fifo, Path("/dev/zero")):
        result = run_cli(*(a.format(path=path) for a in args), home=tmp_path, timeout=60)
        assert_one_line_error(result, 3, f"{path} is not a regular file")
