"""LoRA adapters in the signed bundle: validated against the shipped model, sealed to
the site, signed, listed in the manifest and the SBOM; served from an installed release.

One bundle is built once for the module with the CLI: the default model, a real
adapter for it, a stand-in wheel and stand-in binaries (`--wheelhouse`, `--tools`),
so no pip and no `make setup` cache are needed. The manifest's checks use small
bundles signed here with the real metadata code.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from appliance import adapters, catalog, seal
from appliance.adapters import AdapterRecord, adapter_records, listed
from appliance.bundle import repository
from appliance.bundle.archive import write_bundle
from appliance.bundle.manifest import parse_manifest
from appliance.bundle.verify import verify_bundle
from appliance.cli.bundle import adapter_spec
from appliance.engine import read_gguf, sha256_file
from appliance.engine.adapter import read_adapter
from appliance.engine.tools import SHIPPED_FILES
from appliance.errors import BundleError, ConfigError, UsageError
from tests.conftest import assert_one_line_error, run_cli
from tests.ggufs import lora_adapter

ROOT = Path(__file__).resolve().parent.parent
PASS = "adapter-signing-pass"
RELEASE = "1.0.0"
DEFAULT = catalog.load_catalog().default_entry  # the bundle ships it: catalogued content id


# -- building ---------------------------------------------------------------------------


def stand_ins(base: Path) -> tuple[Path, Path]:
    """A wheelhouse with a stand-in appliance wheel and stand-in shipped binaries."""
    wheels, tools = base / "wheels", base / "tools"
    wheels.mkdir(exist_ok=True)
    (wheels / "appliance-0.1.0-py3-none-any.whl").write_bytes(b"not used")
    tools.mkdir(exist_ok=True)
    for name in SHIPPED_FILES:
        (tools / name).write_bytes(f"stand-in {name}\n".encode())
    return wheels, tools


def build_args(base: Path, model: Path, recipient: seal.Recipient, *adapter: str) -> list[str]:
    wheels, tools = stand_ins(base)
    pass_file = base / "pass"
    pass_file.write_text(PASS + "\n")
    pass_file.chmod(0o600)
    if not (base / "keys" / "root.json").exists():
        repository.init(base / "keys", PASS)
    return [
        *("bundle", "build", "--model", str(model)),
        *("--policy", str(ROOT / "policies/default.toml")),
        *("--recipient", str(recipient)),
        *("--signing-key", str(base / "keys" / "release.key")),
        *("--version", RELEASE, "--out", str(base / "out.bundle")),
        *("--wheelhouse", str(wheels), "--tools", str(tools)),
        *("--passphrase-file", str(pass_file)),
        *(item for text in adapter for item in ("--adapter", text)),
    ]


@pytest.fixture(scope="module")
def site() -> seal.Identity:
    return seal.Identity.generate()


@pytest.fixture(scope="module")
def adapter_file(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA adapter for the default model, with non-zero weights."""
    folder = tmp_path_factory.mktemp("adapter")
    return lora_adapter(model_path, folder / "legal_v2.gguf", scale_b=0.05, seed=3)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    model_path: Path,
    adapter_file: Path,
    site: seal.Identity,
) -> Path:
    """The bundle built once by the CLI with `--adapter`; its folder holds out.bundle, keys/."""
    base = tmp_path_factory.mktemp("built")
    args = build_args(base, model_path, site.recipient, f"{adapter_file}:legal")
    result = run_cli(*args, home=base)
    assert result.returncode == 0, result.stderr
    assert "adapter: legal (rank 4, sealed)" in result.stdout
    return base


def members_of(bundle: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(bundle) as tar:
        return {member.name: member for member in tar}


def member_bytes(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def test_the_adapter_is_a_signed_target_listed_in_the_manifest(
    built: Path, adapter_file: Path, model_path: Path
) -> None:
    root = (built / "keys" / "root.json").read_bytes()
    with verify_bundle(built / "out.bundle", None, root) as verified:
        assert verified.adapters == ["legal"]
        target = verified.targets["adapters/legal.sealed"]
        signed = target.hashes["sha256"]
    info = read_adapter(adapter_file, read_gguf(model_path))
    manifest = json.loads(member_bytes(built / "out.bundle", "targets/bundle.json"))
    assert manifest["adapters"] == [
        {
            "name": "legal",
            "file": "adapters/legal.sealed",
            "sha256": sha256_file(adapter_file),
            "bytes": adapter_file.stat().st_size,
            "rank": 4,
            "alpha": 8.0,
            "targets": len(info.targets),
            "base": DEFAULT.content_id,
        }
    ]
    assert manifest["model"]["content_id"] == DEFAULT.content_id
    sealed = member_bytes(built / "out.bundle", "targets/adapters/legal.sealed")
    assert len(sealed) == target.length
    assert hashlib.sha256(sealed).hexdigest() == signed
    # The SBOM describes it, with the sealed file's (signed) hash, depending on the model.
    sbom = json.loads(member_bytes(built / "out.bundle", "targets/sbom.cdx.json"))
    component = next(c for c in sbom["components"] if c["bom-ref"] == "adapters/legal.sealed")
    assert component["name"] == "legal"
    assert component["type"] == "machine-learning-model"
    assert component["hashes"] == [{"alg": "SHA-256", "content": signed}]
    properties = {item["name"]: item["value"] for item in component["properties"]}
    assert properties == {
        "appliance:base_model": DEFAULT.content_id,
        "appliance:plaintext_sha256": sha256_file(adapter_file),
        "appliance:plaintext_bytes": str(adapter_file.stat().st_size),
        "appliance:installed_as": "releases/V/adapters/legal.sealed",
    }
    depends = {d["ref"]: d.get("dependsOn", []) for d in sbom["dependencies"]}
    assert depends["adapters/legal.sealed"] == [manifest["model"]["file"]]


def test_the_bundle_holds_the_adapter_sealed_never_in_plaintext(
    built: Path, adapter_file: Path, model_path: Path, site: seal.Identity, tmp_path: Path
) -> None:
    plain = adapter_file.read_bytes()
    start = read_gguf(adapter_file).data_offset
    samples = [plain[offset : offset + 48] for offset in range(start, len(plain) - 48, 40_000)]
    assert len(samples) >= 5
    assert all(sample.strip(b"\0") for sample in samples)
    with (
        (built / "out.bundle").open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as whole,
    ):
        for sample in samples:
            assert whole.find(sample) == -1
    # Sealed to the site, under its own content id: it opens to exactly those bytes.
    sealed = tmp_path / "legal.sealed"
    sealed.write_bytes(member_bytes(built / "out.bundle", "targets/adapters/legal.sealed"))
    assert seal.inspect_file(sealed).header.content_id == adapters.content_id("legal")
    seal.unseal_file(
        sealed, tmp_path / "legal.gguf", [site], expect_content_id=adapters.content_id("legal")
    )
    assert (tmp_path / "legal.gguf").read_bytes() == plain


def test_bundle_verify_names_the_adapters(built: Path) -> None:
    result = run_cli(
        *("bundle", "verify", str(built / "out.bundle")),
        *("--trust", str(built / "keys" / "root.json"), "--json"),
        home=built,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["adapters"] == ["legal"]


def test_a_tampered_adapter_is_refused_at_verify(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered.bundle"
    shutil.copyfile(built / "out.bundle", copy)
    member = members_of(copy)["targets/adapters/legal.sealed"]
    with copy.open("r+b") as handle:
        handle.seek(member.offset_data + member.size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))
    result = run_cli(
        *("bundle", "verify", str(copy), "--trust", str(built / "keys" / "root.json")),
        home=tmp_path,
    )
    assert_one_line_error(result, 16, "'adapters/legal.sealed' does not match its signed hash")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"arch": "llama"}, "it is for architecture 'llama', the model is 'gemma3'"),
        ({"break_shape": True}, "which do not fit its shape"),
    ],
    ids=["wrong-architecture", "wrong-shape"],
)
def test_an_adapter_for_another_model_fails_the_build_before_anything_is_written(
    tmp_path: Path, model_path: Path, site: seal.Identity, change: dict[str, Any], why: str
) -> None:
    wrong = lora_adapter(model_path, tmp_path / "wrong.gguf", scale_b=0.05, **change)
    args = build_args(tmp_path, model_path, site.recipient, str(wrong))
    before = set(tmp_path.iterdir())
    result = run_cli(*args, home=tmp_path)
    assert_one_line_error(result, 4, f"{wrong} is not a valid LoRA adapter")
    assert why in result.stderr
    assert not (tmp_path / "out.bundle").exists()
    assert set(tmp_path.iterdir()) == before  # no work folder left, nothing sealed


def test_adapter_names_are_checked_before_any_work(
    tmp_path: Path, model_path: Path, adapter_file: Path, site: seal.Identity
) -> None:
    args = build_args(tmp_path, model_path, site.recipient)
    twice = run_cli(
        *args,
        "--adapter",
        f"{adapter_file}:legal",
        "--adapter",
        f"{adapter_file}:legal",
        home=tmp_path,
    )
    assert_one_line_error(twice, 2, "two adapters are named legal")
    bad = run_cli(*args, "--adapter", f"{adapter_file}:Legal_1", home=tmp_path)
    assert_one_line_error(bad, 2, "adapter name 'Legal_1' must be lower-case")
    assert not (tmp_path / "out.bundle").exists()


def test_adapter_spec_names() -> None:
    assert adapter_spec("/x/legal_v2.gguf") == (Path("/x/legal_v2.gguf"), "legal-v2")
    assert adapter_spec("/x/a.gguf:hr") == (Path("/x/a.gguf"), "hr")
    assert adapter_spec("/x:y/Legal.gguf") == (Path("/x:y/Legal.gguf"), "legal")
    with pytest.raises(UsageError, match=r"give the adapter 9\.gguf a name"):
        adapter_spec("/x/9.gguf")


# -- the manifest's adapters, checked at verify -----------------------------------------


SEALED = b"sealed adapter bytes " * 40
GOOD: dict[str, Any] = {
    "name": "legal",
    "file": "adapters/legal.sealed",
    "sha256": "ab" * 32,
    "bytes": 4096,
    "rank": 8,
    "alpha": 16.0,
    "targets": 36,
    "base": "m@1",
}


def signed_bundle(keys: Path, out: Path, entries: object, files: dict[str, bytes]) -> Path:
    """A small signed bundle whose manifest lists `entries` as its adapters."""
    folder = out.with_suffix(".files")
    folder.mkdir()
    document = {
        "release": RELEASE,
        "created": "2025-01-02T03:04:05Z",
        "model": {"file": "model/m.sealed", "content_id": "m@1", "sha256": "cd" * 32},
        "adapters": entries,
    }
    paths = {}
    contents = {"bundle.json": json.dumps(document).encode(), "model/m.sealed": b"m" * 900}
    for number, (name, data) in enumerate({**contents, **files}.items()):
        paths[name] = folder / f"file-{number}"
        paths[name].write_bytes(data)
    signed = repository.sign_release(keys, PASS, paths, timestamp_days=30)
    write_bundle(out, signed.members(), paths)
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys") / "keys"
    repository.init(folder, PASS)
    return folder


def test_a_small_bundle_with_a_good_adapter_verifies(keys: Path, tmp_path: Path) -> None:
    bundle = signed_bundle(keys, tmp_path / "ok.bundle", [GOOD], {GOOD["file"]: SEALED})
    with verify_bundle(bundle, None, (keys / "root.json").read_bytes()) as verified:
        assert verified.adapters == ["legal"]


@pytest.mark.parametrize(
    ("entries", "files", "why"),
    [
        ({"legal": GOOD}, {}, "its adapters are not a list"),
        ([{**GOOD, "extra": 1}], {}, "does not have exactly the fields"),
        ([{k: v for k, v in GOOD.items() if k != "rank"}], {}, "does not have exactly"),
        ([{**GOOD, "name": "../x"}], {}, "is not named with a-z, 0-9 and -"),
        ([{**GOOD, "file": "adapters/../model/m.sealed"}], {}, "is not adapters/legal.sealed"),
        ([{**GOOD, "file": "model/m.sealed"}], {}, "is not adapters/legal.sealed"),
        ([{**GOOD, "sha256": "AB" * 32}], {}, "has no sha256"),
        ([{**GOOD, "rank": True}], {}, "whole, positive bytes, rank and targets"),
        ([{**GOOD, "bytes": 0}], {}, "whole, positive bytes, rank and targets"),
        ([{**GOOD, "alpha": "16"}], {}, "has no finite alpha of 0 or more"),
        ([{**GOOD, "alpha": float("nan")}], {}, "has no finite alpha of 0 or more"),
        ([{**GOOD, "alpha": -1}], {}, "has no finite alpha of 0 or more"),
        ([{**GOOD, "alpha": 10**400}], {}, "has no finite alpha of 0 or more"),
        ([{**GOOD, "base": "other@1"}], {}, "is not for the release's model m@1"),
        ([GOOD, GOOD], {}, "lists the adapter 'legal' twice"),
        ([GOOD], {}, "disagree on the adapter 'adapters/legal.sealed'"),  # not signed
        ([], {"adapters/legal.sealed": SEALED}, "disagree on the adapter"),  # not listed
        ([GOOD], {"adapters/legal.sealed": SEALED, "adapters/hr.sealed": SEALED}, "'adapters/hr"),
    ],
)
def test_a_malformed_adapters_list_is_refused_in_one_line(
    keys: Path, tmp_path: Path, entries: object, files: dict[str, bytes], why: str
) -> None:
    bundle = signed_bundle(keys, tmp_path / "bad.bundle", entries, files)
    with pytest.raises(BundleError) as refused:
        verify_bundle(bundle, None, (keys / "root.json").read_bytes()).close()
    message = str(refused.value)
    assert why in message
    assert "\n" not in message
    assert message.startswith(f"{bundle} was refused: ")


def test_the_cli_refuses_a_malformed_adapters_list_in_one_line(keys: Path, tmp_path: Path) -> None:
    bundle = signed_bundle(keys, tmp_path / "bad.bundle", [{**GOOD, "base": "x@2"}], {})
    result = run_cli(
        "bundle", "verify", str(bundle), "--trust", str(keys / "root.json"), home=tmp_path
    )
    assert_one_line_error(result, 16, "is not for the release's model m@1")


def test_adapters_need_the_manifest_created_time() -> None:
    document = {
        "release": RELEASE,
        "model": {"file": "model/m.sealed", "content_id": "m@1", "sha256": "cd" * 32},
        "adapters": [GOOD],
    }
    with pytest.raises(ValueError, match="created time"):
        parse_manifest(json.dumps(document).encode())
    assert parse_manifest(json.dumps({**document, "adapters": []}).encode()).adapters == ()


# -- an installed release's adapters ----------------------------------------------------


@pytest.fixture
def installed(built: Path, tmp_path: Path) -> Path:
    """A home whose config names a release laid out by hand from the verified bundle,
    as host.py's _lay_out does (every target under releases/V, `current` a link)."""
    prefix = tmp_path / "prefix"
    release = prefix / "releases" / RELEASE
    root = (built / "keys" / "root.json").read_bytes()
    with verify_bundle(built / "out.bundle", None, root) as verified:
        for path in ("bundle.json", "adapters/legal.sealed"):
            verified.extract(path, release / path)
    (prefix / "current").symlink_to(Path("releases") / RELEASE)
    home = prefix / "home"
    home.mkdir(mode=0o700)
    shutil.copyfile(ROOT / "policies/default.toml", home / "policy.toml")
    (home / "config.toml").write_text(
        f'[model]\nmanifest = "{prefix / "current" / "bundle.json"}"\n'
    )
    return home


def test_adapter_records_read_the_release_manifest(installed: Path, adapter_file: Path) -> None:
    manifest = installed.parent / "current" / "bundle.json"
    created = json.loads(manifest.read_text())["created"]
    [record] = adapter_records(manifest)
    assert record == AdapterRecord(
        name="legal",
        base=DEFAULT.content_id,
        sha256=sha256_file(adapter_file),
        file=str(installed.parent / "current" / "adapters" / "legal.sealed"),
        bytes=adapter_file.stat().st_size,
        rank=4,
        alpha=8.0,
        targets=record.targets,
        added=created,
        source=f"release {RELEASE}",
    )
    assert Path(record.file).is_absolute()
    assert Path(record.file).is_file()
    assert record.targets > 0


def test_the_home_lists_and_serves_the_release_adapters(
    installed: Path, adapter_file: Path, site: seal.Identity
) -> None:
    assert [record.name for record in listed(installed)] == ["legal"]
    with adapters.opened(installed, DEFAULT.content_id, [site]) as files:
        [served] = files
        assert served.name == "legal"
        assert served.sha256 == sha256_file(adapter_file)
        assert Path(served.path).read_bytes() == adapter_file.read_bytes()
    with adapters.opened(installed, "another@1", [site]) as files:
        assert files == []  # for another model: left alone
    shown = run_cli("adapters", "list", "--json", home=installed)
    assert shown.returncode == 0, shown.stderr
    assert [(r["name"], r["source"]) for r in json.loads(shown.stdout)] == [
        ("legal", f"release {RELEASE}")
    ]


def test_a_release_adapter_cannot_be_removed(installed: Path) -> None:
    with pytest.raises(UsageError) as refused:
        adapters.remove(installed, "legal")
    assert str(refused.value) == (
        f"the adapter 'legal' is shipped by release {RELEASE}: it goes with that release"
    )
    result = run_cli("adapters", "remove", "legal", home=installed)
    assert_one_line_error(result, 2, "it goes with that release")
    assert [record.name for record in listed(installed)] == ["legal"]


def index_entry(name: str) -> dict[str, Any]:
    return {
        **{key: value for key, value in GOOD.items() if key not in ("name", "file")},
        "name": name,
        "file": f"{name}.sealed",
        "added": "2025-01-01T00:00:00+00:00",
        "source": "added",
    }


def test_added_and_shipped_adapters_are_listed_together(installed: Path) -> None:
    folder = adapters.adapters_dir(installed)
    folder.mkdir(mode=0o700)
    (folder / "index.json").write_text(json.dumps([index_entry("hr")]))
    records = listed(installed)
    assert [(r.name, r.source) for r in records] == [("hr", "added"), ("legal", "release 1.0.0")]


def test_a_name_both_added_and_shipped_is_refused_until_the_added_one_goes(
    installed: Path,
) -> None:
    folder = adapters.adapters_dir(installed)
    folder.mkdir(mode=0o700)
    (folder / "index.json").write_text(json.dumps([index_entry("legal")]))
    with pytest.raises(ConfigError) as clash:
        listed(installed)
    message = str(clash.value)
    assert "both added to the home and shipped by release 1.0.0" in message
    assert "\n" not in message
    result = run_cli("adapters", "list", home=installed)
    assert_one_line_error(result, 7, "both added to the home and shipped")
    removed = adapters.remove(installed, "legal")  # the added one: that resolves it
    assert removed.source == "added"
    assert [(r.name, r.source) for r in listed(installed)] == [("legal", "release 1.0.0")]


def test_a_release_manifest_with_malformed_adapters_is_a_config_error(installed: Path) -> None:
    manifest = installed.parent / "current" / "bundle.json"
    document = json.loads(manifest.read_text())
    document["adapters"][0]["file"] = "../../home/evil.sealed"
    manifest.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as refused:
        listed(installed)
    assert str(refused.value) == (
        f"the release manifest {manifest} is unusable: "
        "its adapter 'legal' is not adapters/legal.sealed"
    )


def test_a_home_without_a_release_lists_only_its_own(tmp_path: Path) -> None:
    assert listed(tmp_path) == []
    (tmp_path / "config.toml").write_text(f'[model]\nmanifest = "{tmp_path / "gone.json"}"\n')
    assert listed(tmp_path) == []
