"""LoRA adapters on real llama.cpp: loaded unapplied, applied per answer by policy,
sealed in the home, named in the audit log.

The adapters are made here for the default model (tests/ggufs.py: tensors shaped
from its real blk.* weights): a zero adapter (B = 0) must leave greedy output
exactly as the base model's, a strong one must change it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appliance.config import EngineSettings, GenerationParams
from appliance.engine import AdapterFile, AdapterUse, Engine, Message, sha256_file
from appliance.engine.compare import evaluation_text
from appliance.engine.llama_server import LlamaServerEngine
from appliance.errors import EngineError, PolicyError
from appliance.policy import load_policy
from appliance.seal import Identity, write_identity
from tests.conftest import TEST_SETTINGS, assert_one_line_error, run_cli
from tests.ggufs import lora_adapter
from tests.servicing import add_operator, serving
from tests.staff import DEFENSE, as_user, events

pytestmark = pytest.mark.model

PROMPT = [Message("user", "The capital of France is")]
GREEDY = GenerationParams(max_tokens=16, temperature=0.0, ignore_eos=True)
SHORT = {"max_tokens": 16, "temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def made(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "zero": lora_adapter(model_path, folder / "zero.gguf", scale_b=0.0),
        "strong": lora_adapter(model_path, folder / "strong.gguf", scale_b=1.0, seed=7),
        "shape": lora_adapter(model_path, folder / "shape.gguf", scale_b=1.0, break_shape=True),
        "arch": lora_adapter(model_path, folder / "arch.gguf", scale_b=1.0, arch="llama"),
        "truncated": lora_adapter(model_path, folder / "cut.gguf", scale_b=1.0, truncate=True),
    }


def loaded(made: dict[str, Path], *names: str) -> list[AdapterFile]:
    return [AdapterFile(name, made[name], sha256_file(made[name])) for name in names]


def answer(engine, adapter: AdapterUse | None = None) -> str:
    generation = engine.chat(PROMPT, GREEDY, adapter=adapter)
    try:
        return "".join(generation)
    finally:
        generation.close()


@pytest.mark.parametrize("backend", ["local", "llama-server"])
def test_a_zero_adapter_is_the_base_and_a_strong_one_changes_the_answer(
    model_path: Path, made: dict[str, Path], backend: str
) -> None:
    adapters = loaded(made, "zero", "strong")
    if backend == "local":
        engine = Engine(model_path, TEST_SETTINGS, verified=True, adapters=adapters)
    else:
        settings = EngineSettings(
            context_length=1024, threads=TEST_SETTINGS.threads, backend="llama-server"
        )
        engine = LlamaServerEngine(model_path, settings, verified=True, adapters=adapters)
    with engine:
        base = answer(engine)
        zero = answer(engine, AdapterUse("zero"))
        strong = answer(engine, AdapterUse("strong"))
        after = answer(engine)  # the adapter is off again for an answer that names none
        with pytest.raises(EngineError, match="'other' is not loaded"):
            engine.chat(PROMPT, GREEDY, adapter=AdapterUse("other"))
    assert base
    assert zero == base
    assert strong != base
    assert after == base
    assert engine.adapters == {a.name: a.sha256 for a in adapters}


def test_scales_out_of_range_are_refused() -> None:
    for scale in (0.0, -1.0, 4.5, float("nan")):
        with pytest.raises(EngineError, match="scale"):
            AdapterUse("strong", scale)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    key = tmp_path / "site.key"
    write_identity(key, Identity.generate(), None)
    return key


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("shape", "shape"), ("arch", "architecture"), ("truncated", "truncated")],
)
def test_a_bad_adapter_is_refused_before_llama_cpp_and_nothing_is_kept(
    model_path: Path, made: dict[str, Path], site: Path, tmp_path: Path, kind: str, fragment: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli(
        "adapters", "add", str(made[kind]), "--name", "bad",
        "--model", str(model_path), "--identity", str(site), home=home,
    )  # fmt: skip
    assert_one_line_error(result, 4, fragment)
    assert not (home / "adapters" / "bad.sealed").exists()
    listed = run_cli("adapters", "list", "--json", home=home)
    assert listed.returncode == 0
    assert listed.stdout.strip() == "[]"


POLICY_RULE = """
[[adapters]]
name = "defence"
roles = ["operator"]
levels = ["public", "restricted"]
classification = "restricted"
"""


def test_a_sealed_adapter_serves_the_turns_its_rule_names_and_the_audit_says_so(
    staffed: Path, model_path: Path, made: dict[str, Path], site: Path, tmp_path: Path
) -> None:
    home = staffed
    policy = home / "policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8") + POLICY_RULE, encoding="utf-8")
    added = run_cli(
        "adapters", "add", str(made["strong"]), "--name", "defence",
        "--model", str(model_path), "--identity", str(site),
        *as_user(tmp_path, "root1"), home=home,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    # Sealed: no run of the adapter's tensor bytes is anywhere in the home.
    plain = made["strong"].read_bytes()
    sample = plain[-4096:]
    for path in home.rglob("*"):
        if path.is_file():
            assert sample not in path.read_bytes(), path
    listed = run_cli("adapters", "list", home=home)
    assert "defence" in listed.stdout
    assert "rank" in listed.stdout

    add_operator(home, "choi", clearance="public")  # not cleared to the adapter's level
    question = "The capital of France is"
    with serving(home, model_path, "--identity", str(site)) as service:
        cleared = service.client("kim")
        other = service.client("choi")
        with cleared, other:
            served = cleared.ask(question, **SHORT).text()
            base = other.ask(question, **SHORT).text()
    assert served != base

    digest = sha256_file(made["strong"])
    asks = events(home, tmp_path, "--action", "ask")
    answers = events(home, tmp_path, "--action", "answer")
    by_user = {event["user"]: event for event in asks}
    assert by_user["kim"]["details"]["adapter"] == {
        "name": "defence",
        "scale": 1.0,
        "sha256": digest,
    }
    assert by_user["kim"]["label"] == "restricted"  # raised to the adapter's own level
    assert "adapter" not in by_user["choi"]["details"]  # not cleared to it: the base model
    assert by_user["choi"]["label"] == "public"
    kim_answer = next(e for e in answers if e["user"] == "kim")
    assert kim_answer["details"]["adapter"]["name"] == "defence"
    changes = events(home, tmp_path, "--action", "adapter")
    assert [(e["user"], e["details"]["action"]) for e in changes] == [("root1", "add")]
    # doctor unseals and checks it with the model, and says so.
    doctor = run_cli(
        "doctor", "--json", "--model", str(model_path), "--identity", str(site), home=home
    )
    (model,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "model"]
    assert model["ok"] is True
    assert "with the adapters defence" in model["detail"]


def test_models_compare_reports_base_against_base_with_the_adapter(
    model_path: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    # Domain text: the start of the shipped Korean administrative text, a few windows long.
    domain = tmp_path / "domain.txt"
    domain.write_text(evaluation_text("ko-admin").text[:700], encoding="utf-8")

    def compare(name: str) -> dict:
        result = run_cli(
            "models", "compare", str(model_path), "--adapter", str(made[name]),
            "--context", "64", "--text", str(domain), "--json", home=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    zero, strong = compare("zero"), compare("strong")
    assert zero["adapter"]["sha256"] == sha256_file(made["zero"])
    assert zero["adapter"]["scale"] == 1.0
    (same,) = zero["texts"]
    assert same["quantized_perplexity"] == same["base_perplexity"]
    assert same["top_token_agreement"] == 1.0
    (changed,) = strong["texts"]
    assert changed["quantized_perplexity"] != changed["base_perplexity"]
    assert changed["kld_mean"] > 0
    # Saved beside the adapter, for the exact bytes it measured.
    report = json.loads((made["strong"].parent / "strong.gguf.report.json").read_text())
    assert report["adapter"]["sha256"] == sha256_file(made["strong"])


def test_models_compare_refuses_a_bad_adapter_before_llama_cpp(
    model_path: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "models", "compare", str(model_path), "--adapter", str(made["shape"]), home=tmp_path
    )
    assert_one_line_error(result, 4, "shape")
    missing = run_cli("models", "compare", str(model_path), home=tmp_path)
    assert_one_line_error(missing, 2, "--adapter")


def _policy(tmp_path: Path, rules: str):
    path = tmp_path / "policy.toml"
    path.write_text(DEFENSE.read_text(encoding="utf-8") + rules, encoding="utf-8")
    return load_policy(path)


def test_rules_fail_closed_where_they_are_silent(tmp_path: Path) -> None:
    policy = _policy(tmp_path, '\n[[adapters]]\nname = "defence"\nroles = ["operator"]\n')
    (rule,) = policy.adapters
    assert rule.levels == ("public",)  # absent: the lowest level only
    assert rule.classification == policy.levels[-1].id  # absent: the highest level
    assert rule.scale == 1.0
    public, top = policy.level("public"), policy.levels[-1]
    assert policy.adapter_for("operator", public, public, {"defence"}) is None  # not cleared
    assert policy.adapter_for("operator", public, top, {"defence"}) == rule
    assert policy.adapter_for("operator", public, top, set()) is None  # not loaded
    assert policy.adapter_for("admin", public, top, {"defence"}) is None
    restricted = policy.level("restricted")
    assert policy.adapter_for("operator", restricted, top, {"defence"}) is None


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ('name = "defence"', "adapters[0].roles: missing"),
        ('name = "Defence"\nroles = ["operator"]', "adapters[0].name"),
        ('name = "defence"\nroles = []', "adapters[0].roles: must be a non-empty list"),
        ('name = "defence"\nroles = ["pilot"]', "adapters[0].roles"),
        ('name = "defence"\nroles = ["operator"]\nlevels = ["top"]', "adapters[0].levels"),
        ('name = "defence"\nroles = ["operator"]\nscale = 0', "adapters[0].scale"),
        ('name = "defence"\nroles = ["operator"]\nscale = 9.5', "adapters[0].scale"),
        ('name = "defence"\nroles = ["operator"]\nscale = true', "adapters[0].scale"),
        ('name = "defence"\nroles = ["operator"]\nclassification = "x"', "classification"),
        ('name = "defence"\nroles = ["operator"]\nextra = 1', "adapters[0].extra: unknown key"),
    ],
)
def test_invalid_rules_are_refused_naming_the_key(tmp_path: Path, rule: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(fragment)):
        _policy(tmp_path, f"\n[[adapters]]\n{rule}\n")
