"""Preflight: every configuration error that needs no weights, found before the first job."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clarify import preflight
from clarify.config import validate_config
from clarify.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def config_with(**sections):
    config = {section: dict(values) for section, values in sections.items()}
    return validate_config(config, SCHEMA)


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    return tmp_path


def messages(findings):
    return [finding.message for finding in findings]


def test_openai_teacher_and_judge_without_a_key_are_found_with_one_line_each(no_key, tiny_model_dir):
    config = config_with(student={"model": str(tiny_model_dir)}, teacher={"backend": "openai"},
                         judge={"backend": "openai"})
    found = preflight.check(config)
    assert messages(found) == [
        "teacher.backend is openai but OPENAI_API_KEY is not set (environment or .env); export it, put it in "
        "a git-ignored .env, or use teacher.backend gold (offline)",
        "judge.backend is openai but OPENAI_API_KEY is not set (environment or .env); export it, put it in "
        "a git-ignored .env, or use judge.backend hf (a local model) or none",
    ]
    assert all(finding.fatal for finding in found)
    assert [finding.rules for finding in found] == [{"teacher_harvest"}, {"judge"}]


def test_a_key_in_the_environment_or_dotenv_satisfies_it_and_is_never_shown(no_key, monkeypatch, tiny_model_dir):
    config = config_with(student={"model": str(tiny_model_dir)}, teacher={"backend": "openai"},
                         judge={"backend": "openai"})
    (no_key / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv-123\n")
    assert preflight.check(config) == []
    (no_key / ".env").unlink()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-456")
    assert preflight.check(config) == []


def test_offline_backends_need_no_key(no_key, tiny_model_dir):
    config = config_with(student={"model": str(tiny_model_dir)}, teacher={"backend": "gold"},
                         judge={"backend": "hf", "model": "student"})
    assert preflight.check(config) == []


@pytest.mark.parametrize("spec, message", [
    ("./no/such/model", "student.model: './no/such/model' is neither an existing path nor a hub name (owner/name)"),
    ("owner/name/extra", "student.model: 'owner/name/extra' is neither an existing path nor a hub name"),
    ("owner/bad--name", "student.model: 'owner/bad--name' is neither an existing path nor a hub name"),
    ("missing.gguf", "student.model: GGUF file not found: missing.gguf"),
    ("pypi:no_such_module_xyz", "student.model: cannot import 'no_such_module_xyz'; install its package"),
])
def test_a_student_that_cannot_exist_is_found(no_key, spec, message):
    found = preflight.check(config_with(student={"model": spec}, teacher={"backend": "gold"}))
    assert len(found) == 1 and found[0].fatal and found[0].rules == {"prepare_student"}
    assert found[0].message.startswith(message)


def test_a_folder_without_config_is_not_a_model(no_key, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    found = preflight.check(config_with(student={"model": str(folder)}))
    assert messages(found) == [f"student.model: {folder} is not a transformers model folder (no config.json)"]


def test_a_well_formed_hub_id_passes_without_network(no_key, monkeypatch):
    monkeypatch.setattr(preflight, "hub_reachable", lambda timeout_s=3.0: False)
    assert preflight.check(config_with(student={"model": "someone/some-model"})) == []


def test_listed_lora_targets_of_an_unreachable_hub_model_are_skipped_with_a_warning(no_key, monkeypatch):
    monkeypatch.setattr(preflight, "hub_reachable", lambda timeout_s=3.0: False)
    found = preflight.check(config_with(student={"model": "someone/some-model"},
                                        lora={"target_modules": ["q_proj"]}))
    assert len(found) == 1 and not found[0].fatal
    assert "the hub is not reachable" in found[0].message
    preflight.stop_on_problems(found)  # a warning never stops a run


def test_lora_targets_resolve_against_the_tiny_models_config(no_key, tiny_model_dir):
    good = config_with(student={"model": str(tiny_model_dir)}, lora={"target_modules": ["q_proj", "down_proj"]})
    assert preflight.check(good) == []
    bad = config_with(student={"model": str(tiny_model_dir)}, lora={"target_modules": ["qkv_proj", "v_proj"]})
    found = preflight.check(bad)
    assert len(found) == 1 and found[0].rules == {"train_phase_a", "train_phase_b"}
    assert found[0].message.startswith("lora.target_modules: qkv_proj match no linear module of this model; "
                                       "it has: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")


def test_lora_targets_are_resolved_on_the_meta_device_without_weights(no_key, tiny_model_dir, monkeypatch):
    import clarify.models
    from transformers import AutoConfig, AutoModelForCausalLM

    def no_weights(*args, **kwargs):
        raise AssertionError("preflight loaded weights")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    seen = {}
    resolve = clarify.models.resolve_lora_targets

    def spy(model, targets):
        seen["devices"] = {parameter.device.type for parameter in model.parameters()}
        return resolve(model, targets)

    monkeypatch.setattr(clarify.models, "resolve_lora_targets", spy)
    names = preflight.resolve_lora_targets_from_config(AutoConfig.from_pretrained(tiny_model_dir), ["q_proj"])
    assert names == ["q_proj"] and seen["devices"] == {"meta"}


def test_stop_on_problems_stops_only_for_planned_rules_with_one_line():
    found = [preflight.Finding("judge.backend is openai but OPENAI_API_KEY is not set", rules=frozenset({"judge"})),
             preflight.Finding("the hub is not reachable", fatal=False)]
    preflight.stop_on_problems(found, planned_rules={"prepare_data", "split_data"})
    with pytest.raises(InputError) as info:
        preflight.stop_on_problems(found, planned_rules={"judge", "report"})
    assert str(info.value) == ("preflight: 1 problem(s) above, the first: judge.backend is openai but "
                               "OPENAI_API_KEY is not set; fix them and run again (a dry run, -n, only warns)")
    with pytest.raises(InputError):
        preflight.stop_on_problems(found)


@pytest.mark.e2e
def test_default_judge_without_a_key_warns_in_a_dry_run_and_stops_a_real_run_before_any_job(
        tmp_path, tiny_model_dir, shared_data):
    """The shipped config.yaml asks for the openai judge: with no key, no job may run."""
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "data": {"source": str(shared_data), "max_questions": 40, "train_samples": 10},
        "student": {"model": str(tiny_model_dir), "dtype": "float32"},
        "quantization": {"load_in_4bit": False}, "teacher": {"backend": "gold"},
        "resources": {"threads": 1, "mem_mb": 2000, "gpu": 0}}))
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    base = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "results/report.md",
            "--directory", str(tmp_path), "--configfile", str(REPO / "config.yaml"), str(tmp_path / "test.yaml")]
    dry = subprocess.run([*base, "-n", "--quiet", "rules"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    warning = ("preflight: judge.backend is openai but OPENAI_API_KEY is not set (environment or .env); "
               "export it, put it in a git-ignored .env, or use judge.backend hf (a local model) or none")
    assert warning in dry.stdout + dry.stderr
    real = subprocess.run([*base, "--cores", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert real.returncode != 0
    output = real.stdout + real.stderr
    assert warning in output
    assert "preflight: 1 problem(s) above, the first: judge.backend is openai" in output
    assert "Traceback" not in output
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()
    assert not any((tmp_path / ".snakemake" / "locks").glob("*"))  # the next run is not locked out
