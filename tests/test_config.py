from pathlib import Path

import pytest
import yaml

from clarify.config import config_reference, describe_error, schema_defaults, validate_config
from clarify.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def load(name):
    return yaml.safe_load((REPO / name).read_text())


def test_shipped_configs_are_valid_and_defaults_are_filled():
    config = validate_config(load("config.yaml"), SCHEMA)
    assert config["data"]["test_fraction"] == 0.3
    assert config["eval"]["split"] == "test"
    demo = load("config.yaml")
    for section, values in load("config/demo.yaml").items():
        demo.setdefault(section, {}).update(values)
    assert validate_config(demo, SCHEMA)["student"]["model"].startswith("pypi:")


def test_missing_sections_take_schema_defaults():
    config = validate_config({"data": {"source": "x.json"}}, SCHEMA)
    assert config["data"]["split_seed"] == 42 and config["data"]["train_samples"] == 200
    assert config["eval"] == {"split": "test", "batch_size": 16, "max_questions": None,
                              "modes": ["direct", "draft", "cot"], "cot_max_new_tokens": 160,
                              "sc_samples": 8, "sc_temperature": 0.7, "sc_seed": 0}
    assert config["teacher"]["backend"] == "gold" and config["teacher"]["samples"] == 3
    assert config["phase_a"]["learning_rate"] == 2e-4 and config["phase_b"]["learning_rate"] == 1e-4
    assert config["phase_b"]["class_weights"] is None and "class_weights" not in config["phase_a"]
    assert config["lora"]["target_modules"] == "all-linear"


@pytest.mark.parametrize("override, message", [
    ({"eval": {"batch_size": "eight"}}, "config key eval.batch_size: 'eight' is not of type 'integer'"),
    ({"eval": {"batch_size": 0}}, "config key eval.batch_size: 0 is less than the minimum of 1"),
    ({"data": {"test_fraction": 1.5}}, "config key data.test_fraction: 1.5 is greater than or equal to the maximum of 1"),
    ({"eval": {"bogus": 1}}, "config key eval.bogus: unknown key"),
    ({"evaluation": {}}, "config key evaluation: unknown key"),
    ({"data": {"train_samples": "some"}}, "config key data.train_samples: 'some' is not one of"),
    ({"eval": {"split": "train"}}, "config key eval.split: 'train' is not one of ['dev', 'test']"),
    ({"lora": {"target_modules": []}}, "config key lora.target_modules"),
    ({"teacher": {"backend": "gpt"}}, "config key teacher.backend: 'gpt' is not one of ['gold', 'openai', 'hf']"),
    ({"phase_b": {"class_weights": {"yes_weight": 2}}}, "config key phase_b.class_weights: 'no_weight' is a required"),
    ({"eval": {"modes": ["direct", "guess"]}}, "config key eval.modes.1: 'guess' is not one of"),
])
def test_bad_config_is_refused_naming_the_key(override, message):
    config = load("config.yaml")
    for section, values in override.items():
        config.setdefault(section, {}).update(values)
    with pytest.raises(InputError) as info:
        validate_config(config, SCHEMA)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("compare_losses", [["cal_paper", "dr_paper"], []])
def test_removed_compare_losses_is_refused_with_the_variant_to_write_instead(compare_losses):
    config = load("config.yaml")
    config.setdefault("phase_c", {})["compare_losses"] = compare_losses
    with pytest.raises(InputError) as info:
        validate_config(config, SCHEMA)
    assert str(info.value) == ("config key phase_c.compare_losses: removed; write one variant per loss form "
                               "instead: variants: [{name: dr_paper, phase_c: {schedule: dr_paper}}]")


def test_the_suggested_loss_form_variant_is_valid():
    from clarify.variants import resolve_variants

    config = validate_config(load("config.yaml"), SCHEMA)
    config["variants"] = [{"name": "dr_paper", "phase_c": {"schedule": "dr_paper"}},
                          {"name": "cal_paper", "phase_c": {"schedule": [{"beta": 0.1, "loss": "cal_paper"}]}}]
    grid = resolve_variants(config, validate=lambda merged: validate_config(merged, SCHEMA))
    assert grid["dr_paper"].config["phase_c"]["schedule"] == "dr_paper" and grid["dr_paper"].own_phase_c
    assert grid["dr_paper"].pairs_file == "data/pairs.jsonl"  # the main pairs, from the main Phase B
    assert grid["cal_paper"].config["phase_c"]["learning_rate"] == config["phase_c"]["learning_rate"]


@pytest.mark.parametrize("phase_c, message", [
    ({"schedule": "dr_papr"}, "config key variants[0]: phase_c.schedule: 'dr_papr' is not one of"),
    ({"schedule": [{"beta": 0.1, "loss": "dr_papr"}]}, "config key variants[0]: phase_c.schedule.0.loss: 'dr_papr'"),
    ({"compare_losses": ["dr_paper"]}, "config key variants[0]: phase_c.compare_losses: removed; write one variant"),
])
def test_a_loss_form_variant_with_a_typo_is_one_line_naming_the_variant(phase_c, message):
    from clarify.variants import resolve_variants

    config = validate_config(load("config.yaml"), SCHEMA)
    config["variants"] = [{"name": "dr", "phase_c": phase_c}]
    with pytest.raises(InputError) as info:
        resolve_variants(config, validate=lambda merged: validate_config(merged, SCHEMA))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_valid_config_has_no_error():
    assert describe_error(load("config.yaml"), yaml.safe_load(SCHEMA.read_text())) is None


def test_schema_defaults_match_what_snakemake_fills():
    assert schema_defaults(SCHEMA) == validate_config({}, SCHEMA)


def test_validation_fills_exactly_what_snakemakes_validate_fills():
    from snakemake.utils import validate

    for extra in [{}, load("config/demo.yaml"), {"phase_b": {"class_weights": {"yes_weight": 2, "no_weight": 1}}}]:
        config = load("config.yaml")
        for section, values in extra.items():
            config.setdefault(section, {}).update(values)
        theirs = yaml.safe_load(yaml.safe_dump(config))
        validate(theirs, str(SCHEMA), set_default=True)
        assert validate_config(config, SCHEMA) == theirs


def test_filled_configs_share_no_objects_with_each_other_or_the_schema():
    first, second = validate_config({}, SCHEMA), validate_config({}, SCHEMA)
    first["judge"]["pairs"].append(["base", "phaseA"])
    first["eval"]["modes"].append("cot_sc")
    first["data"]["extra"] = 1
    assert second == validate_config({}, SCHEMA) == schema_defaults(SCHEMA)


def leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_config_yaml_holds_only_what_differs_from_the_schema_defaults():
    defaults = dict(leaves(schema_defaults(SCHEMA)))
    shipped = dict(leaves(load("config.yaml")))
    repeated = sorted(key for key, value in shipped.items() if key in defaults and defaults[key] == value)
    assert repeated == [], f"config.yaml repeats schema defaults: {repeated}"
    assert set(shipped) <= set(defaults)


def test_config_reference_is_generated_from_the_schema():
    reference = (REPO / "docs" / "config.md").read_text()
    assert reference == config_reference(SCHEMA), "docs/config.md is stale: python -m clarify.config docs/config.md"
    for key, _ in leaves(schema_defaults(SCHEMA)):
        section, _, rest = key.partition(".")
        if rest and not key.startswith(("teacher.prices.", "judge.prices.")):
            assert f"| `{rest}` |" in reference, key


# Each file in config/ as its header says to layer it.
LAYERINGS = [
    ["config.yaml", "config/demo.yaml"],
    ["config.yaml", "config/gemma270m_full.yaml"],
    ["config.yaml", "config/qwen1.5b_gpu.yaml"],
    ["config.yaml", "config/qwen1.5b_gpu.yaml", "config/qwen1.5b_gpu_run4.yaml"],
    ["config.yaml", "config/qwen1.5b_gpu.yaml", "config/qwen1.5b_gpu_run6.yaml"],
    ["config.yaml", "config/qwen1.5b_gpu.yaml", "config/qwen1.5b_gpu_run7.yaml"],
    KBIT_ON := ["config.yaml", "config/qwen1.5b_gpu.yaml", "config/qwen1.5b_gpu_4bit.yaml"],
    KBIT_OFF := [*KBIT_ON, "config/qwen1.5b_gpu_4bit_nofp32.yaml"],
    [*KBIT_OFF, "config/qwen1.5b_gpu_4bit_b64.yaml"],
]


def layered(layers: list[str]) -> dict:
    """The config files merged in order, later files winning key by key, as Snakemake merges --configfile."""
    from clarify.variants import merge

    config = {}
    for name in layers:
        config = merge(config, load(name))
    return config


@pytest.mark.parametrize("layers", LAYERINGS, ids=lambda layers: layers[-1])
def test_every_shipped_config_layering_validates_with_its_variants(layers):
    """Later files win key by key, as Snakemake merges --configfile; the result is checked against the
    schema, and every variant it declares is merged and checked too."""
    from clarify.variants import resolve_variants

    checked = validate_config(layered(layers), SCHEMA)
    variants = resolve_variants(checked, validate=lambda merged: validate_config(merged, SCHEMA))
    assert list(variants) == [entry["name"] for entry in checked.get("variants") or []]


def test_the_kbit_upcast_arms_differ_only_in_what_they_compare():
    """tools/device/kbit_start.sh's three arms (docs/results/qwen1.5b/kbit_upcast/): 4-bit with the fp32 cast,
    without it, and without it at Phase B micro-batch 64; everything else the same."""
    on, off, b64 = (dict(leaves(validate_config(layered(layers), SCHEMA))) for layers in LAYERINGS[-3:])
    assert on["quantization.load_in_4bit"] is True and on["phase_b.batch_size"] == 32
    assert {key for key in on if on[key] != off[key]} == {"phase_a.kbit_upcast", "phase_b.kbit_upcast"}
    assert (on["phase_a.kbit_upcast"], off["phase_a.kbit_upcast"]) == (True, False)
    assert {key for key in off if off[key] != b64[key]} == {"phase_b.batch_size"} and b64["phase_b.batch_size"] == 64


def test_every_file_in_config_is_in_a_checked_layering():
    layered = {name for layers in LAYERINGS for name in layers}
    assert {f"config/{path.name}" for path in (REPO / "config").glob("*.yaml")} <= layered


def test_a_typo_in_a_layered_variant_is_one_line_naming_it():
    from clarify.variants import merge, resolve_variants

    config = merge(load("config.yaml"), {"variants": [{"name": "lr", "phase_c": {"learning_rat": 1e-5}}]})
    with pytest.raises(InputError, match=r"^config key variants\[0\]: phase_c.learning_rat"):
        resolve_variants(validate_config(config, SCHEMA), validate=lambda merged: validate_config(merged, SCHEMA))
