"""Opt-in training speed-ups (clarify.training_speedups): Liger falls back on CPU, padding-free trains the same."""

import logging

import pytest

from clarify.config import validate_config
from clarify.dpo import dpo_config
from clarify.errors import InputError
from clarify.prompts import answer_completion, answer_prompt
from clarify.training import train_phase
from clarify.training_speedups import liger_unavailable, padding_free_unavailable, use_padding_free

from conftest import REPO

QUESTIONS = [f"Is item number {i} heavier than a {word}?" for i, word in
             enumerate(["cat", "dog", "car", "pen", "cup", "hat", "box", "key"] * 2)]


@pytest.fixture(scope="module")
def config():
    return validate_config({"quantization": {"load_in_4bit": False}}, REPO / "workflow/schemas/config.schema.yaml")


@pytest.fixture(scope="module")
def rows():
    return [{"qid": f"q{i:02d}", "prompt": answer_prompt(q), "completion": answer_completion(i % 3 == 0),
             "answer": i % 3 == 0} for i, q in enumerate(QUESTIONS)]


def train(tiny_model_dir, config, rows, tmp, **overrides):
    settings = {**config["phase_a"], "epochs": 1, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-2,
                **overrides}
    records = [{"qid": r["qid"], "question": q, "answer": r["answer"]} for r, q in zip(rows, QUESTIONS)]
    return train_phase(phase="phase_a", manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                       quantization=config["quantization"], lora={**config["lora"], "dropout": 0.0},
                       settings=settings, eval_settings={"batch_size": 8, "cot_max_new_tokens": 4,
                                                         "drafts": config["drafts"]},
                       train_rows=rows, dev_records=records[:4], output_dir=tmp / "out", checkpoint_dir=tmp / "ckpt",
                       progress=False)


def test_the_speedups_are_off_by_default(config):
    assert config["phase_a"]["use_liger_kernel"] is False and config["phase_a"]["padding_free"] is False
    assert config["phase_b"]["use_liger_kernel"] is False and config["phase_b"]["padding_free"] is False
    assert config["phase_c"]["use_liger_kernel"] is False and "padding_free" not in config["phase_c"]


def test_liger_on_cpu_logs_one_line_and_trains_without_it(tiny_model_dir, config, rows, tmp_path, caplog):
    assert liger_unavailable()  # no Triton GPU here (and usually no liger-kernel package)
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        log = train(tiny_model_dir, config, rows, tmp_path, use_liger_kernel=True)
    lines = [r.getMessage() for r in caplog.records if "use_liger_kernel" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("phase_a.use_liger_kernel: ")
    assert log["use_liger_kernel"] is False and log["steps"] == 2


def test_dpo_config_falls_back_from_liger_on_cpu(config, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        args = dpo_config({**config["phase_c"], "use_liger_kernel": True}, tmp_path, 4, bf16=False, cuda=False,
                          progress=False)
    assert args.use_liger_kernel is False
    assert any(r.getMessage().startswith("phase_c.use_liger_kernel: ") for r in caplog.records)


def test_padding_free_trains_to_the_same_losses_as_padded_batches(tiny_model_dir, config, rows, tmp_path):
    padded = train(tiny_model_dir, config, rows, tmp_path / "padded")
    packed = train(tiny_model_dir, config, rows, tmp_path / "packed", padding_free=True)
    assert padded["padding_free"] is False and packed["padding_free"] is True
    assert [h["loss"] for h in packed["loss_history"]] == pytest.approx(
        [h["loss"] for h in padded["loss_history"]], rel=1e-4)


def test_padding_free_with_class_weights_is_a_one_line_error(tiny_model_dir, config, rows, tmp_path):
    with pytest.raises(InputError, match="phase_a.padding_free: class_weights need one row per example"):
        train(tiny_model_dir, config, rows, tmp_path, padding_free=True,
              class_weights={"yes_weight": 2.0, "no_weight": 1.0})


def test_padding_free_falls_back_where_the_attention_cannot_separate_examples(caplog, monkeypatch):
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    assert padding_free_unavailable("sdpa") is None and padding_free_unavailable(None) is None
    assert "flash-attn" in padding_free_unavailable("flash_attention_2")

    class Model:
        class config:
            _attn_implementation = "flash_attention_2"

    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        assert use_padding_free(True, Model(), "phase_b") is False
    assert caplog.records[-1].getMessage().startswith("phase_b.padding_free: attention flash_attention_2 needs")
