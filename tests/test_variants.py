"""The variant grid: merging, validation and which artifacts each variant owns."""

import pytest

from clarify.errors import InputError
from clarify.variants import MAIN_DRAFTS, MAIN_PAIRS, MAIN_PHASE_B, merge, resolve_variants

BASE = {
    "drafts": {"max_new_tokens": 64, "include_guess": True},
    "corpus": {"balance": "upsample"},
    "pairs": {"source": "own_samples", "samples": 4},
    "phase_b": {"epochs": 2, "mix_answer_only": False},
    "phase_c": {"schedule": [{"beta": 0.1, "loss": "rpo"}], "learning_rate": 5e-6},
    "eval": {"split": "test"},
}


def variants(*entries, validate=None):
    return resolve_variants({**BASE, "variants": list(entries)}, validate=validate)


def test_merge_replaces_lists_and_merges_dicts_without_touching_the_base():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = merge(base, {"a": {"y": [3]}, "c": 4})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}


def test_a_phase_c_variant_trains_from_the_main_phase_b_and_owns_its_pairs():
    v = variants({"name": "seed", "pairs": {"source": "teacher_vs_draft"}, "phase_c": {"schedule": "seed"}})["seed"]
    assert v.until == "phase_c" and v.own_phase_c and not v.own_phase_b
    assert v.phase_b_adapter == MAIN_PHASE_B
    assert v.adapter == "models/variants/seed/phase_c"
    assert v.pairs_file == "data/variants/seed/pairs.jsonl"
    assert v.config["pairs"] == {"source": "teacher_vs_draft", "samples": 4}
    assert v.config["phase_c"]["learning_rate"] == 5e-6


def test_a_phase_c_only_variant_shares_the_main_pairs():
    v = variants({"name": "lr", "phase_c": {"learning_rate": 1e-5}})["lr"]
    assert v.pairs_file == MAIN_PAIRS and v.own_phase_c


def test_a_phase_b_variant_is_scored_as_its_own_phase_b():
    v = variants({"name": "multitask", "phase_b": {"mix_answer_only": True}})["multitask"]
    assert v.until == "phase_b" and v.own_phase_b and not v.own_phase_c
    assert v.adapter == "models/variants/multitask/phase_b" == v.phase_b_adapter
    assert v.drafts_file == MAIN_DRAFTS


def test_a_phase_b_variant_carried_on_to_phase_c_builds_pairs_from_its_own_phase_b():
    v = variants({"name": "st", "until": "phase_c", "phase_b": {"self_train_rounds": 1}})["st"]
    assert v.own_phase_b and v.own_phase_c and v.own_pairs
    assert v.phase_b_adapter == "models/variants/st/phase_b"


def test_a_drafts_only_variant_rescoring_the_main_phase_b():
    v = variants({"name": "no_guess", "drafts": {"include_guess": False}})["no_guess"]
    assert v.own_drafts and not v.own_phase_b and v.adapter == MAIN_PHASE_B
    assert v.drafts_file == "data/variants/no_guess/student_drafts.jsonl"
    assert v.config["drafts"] == {"max_new_tokens": 64, "include_guess": False}


@pytest.mark.parametrize("entry, message", [
    ({"name": "Bad-Name", "phase_b": {"epochs": 1}}, "variants[0].name"),
    ({"name": "base", "phase_b": {"epochs": 1}}, "main model's name"),
    ({"name": "x"}, "overrides nothing"),
    ({"name": "x", "phase_b": {}}, "non-empty mapping"),
    ({"name": "x", "lora": {"r": 4}}, "variants[0].lora: unknown key"),
    ({"name": "x", "until": "phase_b", "phase_c": {"learning_rate": 1e-5}}, "used only by Phase C"),
    ({"name": "x", "until": "phase_d", "phase_b": {"epochs": 1}}, "until: 'phase_d'"),
    ("x", "must be a mapping"),
])
def test_bad_variants_are_one_line_errors(entry, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        variants(entry)
    assert "\n" not in str(info.value)


def test_two_variants_with_one_name_are_refused():
    with pytest.raises(InputError, match="names two variants"):
        variants({"name": "a", "phase_b": {"epochs": 1}}, {"name": "a", "phase_b": {"epochs": 3}})


def test_the_validator_sees_the_merged_config_and_its_error_names_the_variant():
    seen = []

    def validate(config):
        seen.append(config)
        if config["phase_b"]["epochs"] > 10:
            raise InputError("config key phase_b.epochs: 99 is greater than the maximum of 10")

    variants({"name": "ok", "phase_b": {"epochs": 3}}, validate=validate)
    assert seen[0]["phase_b"]["epochs"] == 3 and "variants" not in seen[0]
    with pytest.raises(InputError, match=r"^config key variants\[0\]: phase_b.epochs: 99 is greater"):
        variants({"name": "bad", "phase_b": {"epochs": 99}}, validate=validate)
