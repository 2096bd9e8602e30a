"""The fuzz harnesses stay alive: seeds and past crashes replay, and each fuzzer runs briefly.

`make fuzz` runs each harness for minutes (tests/fuzz/run.py); here every
seed and every regression input goes through its harness deterministically,
and atheris runs each target for a few seconds so that a harness that no
longer starts, or a seed that no longer parses, fails the suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.audit.export import verify_export
from appliance.bundle.archive import BundleArchive
from appliance.bundle.manifest import model_pin, parse_manifest
from appliance.bundle.verify import verify_bundle
from appliance.config import load_home_config
from appliance.documents import sandbox
from appliance.documents.formats import sniff_family
from appliance.errors import BundleError, ConfigError, DocumentError, IntegrityError, PolicyError
from appliance.policy import check_input, load_policy, scan
from tests.fuzz.harnesses import (
    AUDIT_KEY,
    BUNDLE_ROOT,
    CORPUS,
    REGRESSIONS,
    TARGETS,
    resigned,
)
from tests.fuzz.targets import HARNESS, INSTRUMENT, not_instrumented

ROOT = Path(__file__).resolve().parent.parent
SMOKE_SECONDS = 2
SMOKE_RUNS = 2_000


def inputs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*") if path.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("target", list(TARGETS))
def test_seeds_and_regressions_replay(target: str) -> None:
    seeds = inputs(CORPUS / target)
    assert seeds, f"no seed corpus for {target}"
    for path in [*seeds, *inputs(REGRESSIONS / target)]:
        try:
            TARGETS[target](path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{path.relative_to(ROOT)}: {exc!r}") from exc


def test_every_regression_folder_names_a_target() -> None:
    assert {path.name for path in REGRESSIONS.iterdir() if path.is_dir()} <= set(TARGETS)
    assert INSTRUMENT.keys() == TARGETS.keys() == HARNESS.keys()


def test_a_fuzzer_instruments_only_the_modules_its_target_names() -> None:
    """atheris instruments whole top-level packages; run.py excludes the rest of them."""
    excluded = set(not_instrumented(("appliance.engine.gguf", "appliance.policy", "tarfile")))
    others = {"appliance", "appliance.engine", "appliance.engine.tools", "appliance.audit.export"}
    assert others <= excluded
    kept = {"appliance.engine.gguf", "appliance.policy", "appliance.policy.dlp.scan", "tarfile"}
    assert not kept & excluded


def test_each_fuzzer_runs(tmp_path: Path) -> None:
    """Every target under atheris for a few seconds, two at a time: exit 0, inputs executed."""

    def fuzz(target: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        # A fixed seed and a bounded number of runs: the same mutations every time, so
        # the suite never fails on luck; finding new bugs is `make fuzz`'s job.
        command = [sys.executable, "-m", "tests.fuzz.run", "--work", str(tmp_path / target)]
        command += [target, str(SMOKE_SECONDS), "--", "-seed=1", f"-runs={SMOKE_RUNS}"]
        return target, subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(fuzz, TARGETS))
    for target, result in results:
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        log = tmp_path / target / "fuzz.log"
        details = log.read_text(errors="replace")[-3000:] if log.exists() else result.stderr
        assert result.returncode == 0, f"{summary}\n{details}"
        assert summary.startswith(f"fuzz {target}: "), summary
        assert "nothing found" in summary, summary
        assert " 0 executions" not in summary, summary
        # Coverage comes from the target's own parser alone (targets.INSTRUMENT).
        output = log.read_text(errors="replace")
        instrumented = re.findall(r"^INFO: Instrumenting (\S+)$", output, re.MULTILINE)
        assert instrumented, f"{target}: nothing instrumented"
        for module in instrumented:
            assert any(module == n or module.startswith(f"{n}.") for n in INSTRUMENT[target]), (
                f"{target} instrumented {module}"
            )


# -- what the fuzzers found: each input is refused with the module's own error ----------


def regression(target: str, name: str) -> Path:
    return REGRESSIONS / target / name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("nested-arrays.toml", "nested too deeply"),  # was RecursionError in tomllib
        ("regex-repeat-overflow.toml", "not a valid regular expression"),  # was OverflowError
        ("regex-nested-groups.toml", "not a valid regular expression"),  # was RecursionError
    ],
)
def test_policy_files_that_crashed_the_loader(name: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        load_policy(regression("policy", name))


def test_a_custom_pattern_that_matches_nothing_somewhere_finds_nothing_there() -> None:
    """`\\b` passes the empty-string check but matched empty at every word boundary
    (an IndexError at the end of normalised text, else empty findings)."""
    policy = load_policy(regression("policy", "regex-empty-match.toml"))
    for text in ("작전명 한빛.", "plain words", "\uff33\uff25\uff23\uff32\uff25\uff34\u200b."):
        assert all(f.end > f.start for f in scan(text, policy))
        assert check_input(policy, text, policy.lowest).blocked is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("negative-size.bundle", "negative size"),  # was OSError: tarfile seeked before 0
        ("pax-header-negative-size.bundle", "negative size"),  # was OverflowError in tarfile
        ("pax-header-32-tib.bundle", "extended tar header claims"),  # was MemoryError
        ("sparse-member.bundle", "is a sparse file"),  # was IndexError in tarfile
        ("pax-sparse-map.bundle", "invalid literal"),  # was ValueError in tarfile
    ],
)
def test_tar_headers_that_crashed_the_bundle_reader(name: str, fragment: str) -> None:
    path = regression("bundle_archive", name)
    with pytest.raises(BundleError, match=fragment):
        BundleArchive(path)
    with pytest.raises(BundleError, match=fragment):
        verify_bundle(path, None, BUNDLE_ROOT.read_bytes())


def test_a_deeply_nested_home_config_is_a_config_error(tmp_path: Path) -> None:
    shutil.copy(regression("config", "nested-inline-tables.toml"), tmp_path / "config.toml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_home_config(tmp_path)


def test_a_deeply_nested_bundle_manifest_is_refused(tmp_path: Path) -> None:
    data = regression("bundle_manifest", "nested-arrays.json").read_bytes()
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_manifest(data)
    (tmp_path / "bundle.json").write_bytes(data)
    with pytest.raises(ConfigError, match="nested too deeply"):
        model_pin(tmp_path / "bundle.json")


@pytest.mark.parametrize(
    ("name", "resign", "fragment"),
    [
        ("csv-carriage-return.csv", False, "wrong number of columns"),  # was csv.Error
        ("nested-arrays-last-line.jsonl", False, "not a JSON object"),  # was RecursionError
        # Signed by the device key (as a compromised or buggy device could):
        ("checkpoint-before-base.jsonl", True, "not after its base seq"),  # was KeyError
        ("base-seq-overflow.jsonl", True, "malformed header"),  # was OverflowError
        ("event-seq-overflow.jsonl", True, "is malformed"),  # was OverflowError
        ("checkpoint-seq-overflow.jsonl", True, "malformed checkpoint"),  # was OverflowError
    ],
)
def test_audit_exports_that_crashed_the_verifier(
    tmp_path: Path, name: str, resign: bool, fragment: str
) -> None:
    data = regression("audit_export", name).read_bytes()
    signed = resigned(data) if resign else data
    assert signed is not None
    (tmp_path / name).write_bytes(signed)
    with pytest.raises(IntegrityError, match=fragment):
        verify_export(tmp_path / name, AUDIT_KEY.public)


@pytest.mark.parametrize("name", ["lone-surrogate-title.json", "lone-surrogate-text.json"])
def test_a_childs_answer_the_service_could_not_store_is_refused(name: str) -> None:
    """JSON escapes make lone surrogates, which the parent took (a UnicodeEncodeError
    in the chunker, or in the store, later)."""
    with pytest.raises(DocumentError, match="the parser gave an invalid answer"):
        sandbox._decode(regression("doc_answer", name).read_bytes())


def test_a_run_of_xml_comments_is_sniffed_at_once() -> None:
    """The HWPML check (run in the service, on the file's first bytes) let each comment
    end at any later "-->", and tried every way to split a run of them: 2^n."""
    data = regression("doc_sniff", "hwpml-comment-splits.xml").read_bytes()
    started = time.monotonic()
    assert sniff_family(data) == "text"
    assert time.monotonic() - started < 1.0  # was half a minute for these 26 comments
