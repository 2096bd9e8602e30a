"""Lightweighting: quantize (with an importance matrix), the report against the source,
its agreement with llama.cpp's own llama-perplexity, and where the report is shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from appliance.engine import read_gguf
from appliance.engine.compare import compare, evaluation_text, shares_text
from appliance.engine.imatrix import read_imatrix
from appliance.engine.report import Report, read_report, sidecar
from appliance.engine.tools import llama_perplexity
from appliance.errors import ModelFormatError
from tests.conftest import assert_one_line_error, run_cli

CONTEXT = 128  # short windows keep the real-model tests quick


@pytest.fixture(scope="module")
def short_text(tmp_path_factory) -> Path:
    """About 700 tokens of the shipped English text: five windows of 128."""
    path = tmp_path_factory.mktemp("text") / "short.txt"
    path.write_text(evaluation_text("en-admin").text[:3500])
    return path


@pytest.fixture(scope="module")
def twin(model_path: Path, tmp_path_factory) -> Path:
    """A byte-identical copy of the embedded model under another name."""
    copy = tmp_path_factory.mktemp("twin") / "twin.gguf"
    shutil.copyfile(model_path, copy)
    return copy


@pytest.mark.model
def test_a_model_against_its_own_bytes_loses_nothing(model_path, twin, short_text) -> None:
    report = compare(
        model_path, twin, [evaluation_text(str(short_text))], context=CONTEXT, threads=1
    )
    (text,) = report.texts
    assert text.chunks == text.tokens // CONTEXT
    assert text.scored_tokens == text.chunks * (CONTEXT - 1 - CONTEXT // 2)
    assert text.base_perplexity == pytest.approx(text.quantized_perplexity, rel=1e-9)
    assert text.kld_mean == pytest.approx(0, abs=1e-9)
    assert text.top_token_agreement == 1.0
    assert report.size_ratio == 1.0
    assert report.settings.context == report.settings.batch == CONTEXT
    assert report.settings.flash_attention is False
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@pytest.mark.model
def test_our_perplexity_agrees_with_llama_perplexity(model_path, twin, short_text) -> None:
    ours = compare(model_path, twin, [evaluation_text(str(short_text))], context=CONTEXT, threads=1)
    theirs = llama_perplexity(model_path, short_text, CONTEXT, threads=1)
    assert ours.texts[0].base_perplexity / theirs == pytest.approx(1, abs=0.005)


@pytest.mark.model
def test_compare_cli_saves_the_report_that_inspect_and_doctor_show(
    model_path, twin, short_text, tmp_path
) -> None:
    args = ["--text", str(short_text), "--context", str(CONTEXT), "--threads", "1"]
    table = run_cli("models", "compare", str(model_path), str(twin), *args, home=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "dPPL" in table.stdout
    assert "short.txt" in table.stdout
    assert table.stderr == ""  # no progress bar in a pipe
    report = read_report(sidecar(twin))
    assert report.quantized.sha256 == report.base.sha256

    inspect = run_cli("models", "inspect", str(twin), "--json", home=tmp_path)
    assert json.loads(inspect.stdout)["report"]["texts"][0]["name"] == "short.txt"
    plain = run_cli("models", "inspect", str(twin), home=tmp_path)
    assert "report          Q4_K_M vs Q4_K_M: size 1.00x; short.txt PPL +0.0%" in plain.stdout

    doctor = run_cli("doctor", "--model", str(twin), "--json", home=tmp_path)
    model = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["model"]
    assert model["ok"] is True
    assert model["report"]["quantized"]["sha256"] == report.quantized.sha256

    # A report of other bytes is never shown for this file.
    data = report.to_dict()
    data["quantized"]["sha256"] = "0" * 64
    sidecar(twin).write_text(json.dumps(data))
    inspect = run_cli("models", "inspect", str(twin), "--json", home=tmp_path)
    assert json.loads(inspect.stdout)["report"] is None


@pytest.mark.model
def test_compare_refuses_what_it_cannot_measure(model_path, twin, tmp_path) -> None:
    short = tmp_path / "tiny.txt"
    short.write_text("Too short to fill two windows.")
    result = run_cli("models", "compare", str(model_path), str(twin), "--text", str(short),
                     home=tmp_path)  # fmt: skip
    assert_one_line_error(result, 2, "a context of 512 needs at least 1024")
    same = run_cli("models", "compare", str(model_path), str(model_path), home=tmp_path)
    assert_one_line_error(same, 2, "the same file")


def _imatrix(model: Path, out: Path, datasets: list[str]) -> Path:
    """An importance matrix in llama-imatrix's GGUF layout for every 2-D block weight."""
    writer = GGUFWriter(str(out), "imatrix")
    writer.add_string("general.type", "imatrix")
    writer.add_array("imatrix.datasets", datasets)
    writer.add_uint32("imatrix.chunk_count", 2)
    writer.add_uint32("imatrix.chunk_size", 512)
    for tensor in read_gguf(model).tensors:
        if tensor.name.startswith("blk.") and len(tensor.shape) == 2:
            columns = tensor.shape[0]
            writer.add_tensor(f"{tensor.name}.in_sum2", np.full((1, columns), 8, np.float32))
            writer.add_tensor(f"{tensor.name}.counts", np.full((1, 1), 4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_an_importance_matrix_is_normalised_as_llama_cpp_does(model_path, tmp_path) -> None:
    matrix = read_imatrix(_imatrix(model_path, tmp_path / "m.gguf", ["domain.txt"]))
    assert matrix.datasets == ["domain.txt"]
    assert matrix.chunks == 2
    values = next(iter(matrix.entries.values()))
    assert values.dtype == np.float32
    assert np.all(values == 2.0)
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(ModelFormatError):
        read_imatrix(tmp_path / "junk.gguf")


@pytest.mark.model
def test_quantize_cli_takes_an_importance_matrix(model_path, tmp_path) -> None:
    matrix = _imatrix(model_path, tmp_path / "m.gguf", ["domain.txt"])
    out = tmp_path / "q.gguf"
    result = run_cli("models", "quantize", str(model_path), str(out), "--type", "Q4_K_S",
                     "--imatrix", str(matrix), home=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "importance matrix m.gguf" in result.stdout
    assert read_gguf(out).get("general.file_type") == 14  # MOSTLY_Q4_K_S

    flattering = _imatrix(model_path, tmp_path / "f.gguf", ["/data/en-admin.txt"])
    refused = run_cli("models", "quantize", str(model_path), str(tmp_path / "r.gguf"), "--type",
                      "Q4_K_S", "--imatrix", str(flattering), home=tmp_path)  # fmt: skip
    assert_one_line_error(refused, 2, "computed on the evaluation text en-admin.txt")


def test_calibration_text_must_not_share_the_evaluation_text(tmp_path) -> None:
    english = evaluation_text("en-admin").text
    assert shares_text("intro\n" + english.splitlines()[4] + "\n", english)
    assert not shares_text("Completely different domain text about logistics.", english)
    calibration = tmp_path / "cal.txt"
    calibration.write_text(english[:2000])
    result = run_cli("models", "imatrix", "m.gguf", "--text", str(calibration), home=tmp_path)
    assert_one_line_error(result, 2, "shares lines with the evaluation text en-admin")


def test_the_shipped_texts_are_long_enough_for_the_default_context() -> None:
    for name in ("ko-admin", "en-admin"):
        text = evaluation_text(name).text
        assert 8_000 < len(text.encode()) < 16_000
