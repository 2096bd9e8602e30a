"""Atomic writes: the old file or the whole new one, never a torn or stray file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.fsutil import atomic_writer


def test_a_write_replaces_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    with atomic_writer(target) as out:
        out.write(b"new contents")
        assert target.read_bytes() == b"old"  # not visible until the block ends
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["file"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def interrupted_write() -> None:
        with atomic_writer(target) as out:
            out.write(b"half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    with pytest.raises(ConfigError, match="No space left"), atomic_writer(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == []


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="cannot write in"),
        atomic_writer(tmp_path / "missing" / "file"),
    ):
        pass
