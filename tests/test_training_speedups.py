"""Opt-in training speed-ups (clarify.training_speedups): Liger falls back on CPU, padding-free trains the same."""

import logging

import pytest

from clarify.config import validate_config
from clarify.dpo import dpo_config
from clarify.errors import InputError
from clarify.prompts import answer_completion, answer_prompt
from clarify.training import train_phase
from clarify.training_speedups import liger_unavailable, padding_free_unavailable, resolve_liger, use_padding_free

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


def test_the_defaults_follow_the_h200_measurements(config):
    """benchmarks/README.md: Phase A 32 x 1 with Liger, no checkpointing; B 64 x 1 (since the steady-rate
    runs) with Liger (since the cuDNN-off run), checkpointing on a GPU; C keeps its settings, no Liger."""
    a, b, c = config["phase_a"], config["phase_b"], config["phase_c"]
    assert (a["batch_size"], a["grad_accum"], a["gradient_checkpointing"], a["use_liger_kernel"]) == (32, 1, False, True)
    assert (b["batch_size"], b["grad_accum"], b["gradient_checkpointing"], b["use_liger_kernel"]) == (64, 1, "auto", True)
    assert (c["batch_size"], c["grad_accum"], c["gradient_checkpointing"], c["use_liger_kernel"]) == (2, 1, "auto", False)
    assert a["padding_free"] is False and b["padding_free"] is False and "padding_free" not in c


def machine(monkeypatch, *, cuda: bool, liger: bool):
    """Pretend this machine has (or lacks) a CUDA GPU and the liger-kernel package."""
    import torch
    import transformers.utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(transformers.utils, "is_liger_kernel_available", lambda: liger)


def liger_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "use_liger_kernel" in r.getMessage()]


def test_liger_missing_on_a_gpu_turns_gradient_checkpointing_on_in_one_line(config, monkeypatch, caplog):
    machine(monkeypatch, cuda=True, liger=False)
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        settings = resolve_liger(config["phase_a"], "phase_a")
    assert settings["use_liger_kernel"] is False and settings["gradient_checkpointing"] is True
    assert config["phase_a"]["use_liger_kernel"] is True  # the config itself is left alone
    [line] = liger_lines(caplog)
    assert line.startswith("phase_a.use_liger_kernel: the liger-kernel package") and "WITH gradient checkpointing" in line


@pytest.mark.parametrize("checkpointing", ["auto", True])
def test_liger_missing_on_a_gpu_keeps_a_checkpointing_setting_that_is_not_off(config, monkeypatch, caplog,
                                                                               checkpointing):
    machine(monkeypatch, cuda=True, liger=False)
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        settings = resolve_liger({**config["phase_a"], "gradient_checkpointing": checkpointing}, "phase_a")
    assert settings["use_liger_kernel"] is False and settings["gradient_checkpointing"] == checkpointing
    [line] = liger_lines(caplog)
    assert "checkpointing" not in line


def test_liger_on_cpu_changes_nothing_but_liger(config, monkeypatch, caplog):
    machine(monkeypatch, cuda=False, liger=True)
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        settings = resolve_liger(config["phase_a"], "phase_a")
    assert settings == {**config["phase_a"], "use_liger_kernel": False}
    [line] = liger_lines(caplog)
    assert line == "phase_a.use_liger_kernel: Liger's Triton kernels need a CUDA GPU; training without Liger kernels"


@pytest.mark.parametrize("liger", [True, False])
def test_settings_are_kept_where_liger_runs_or_is_not_asked_for(config, monkeypatch, caplog, liger):
    machine(monkeypatch, cuda=True, liger=True)
    settings = {**config["phase_a"], "use_liger_kernel": liger}
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        assert resolve_liger(settings, "phase_a") == settings
    assert not liger_lines(caplog)


def gpu_without_liger_and_stop_at(monkeypatch, module, builder: str) -> dict:
    """A GPU machine without liger-kernel, and ``module.builder`` replaced by one that records its
    ``gradient_checkpointing`` argument and stops before any weights load."""
    import inspect

    import torch

    machine(monkeypatch, cuda=True, liger=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    built = {}
    signature = inspect.signature(getattr(module, builder))

    def stop(*args, **kwargs):
        built["gradient_checkpointing"] = signature.bind(*args, **kwargs).arguments["gradient_checkpointing"]
        raise RuntimeError("stop before loading weights")

    monkeypatch.setattr(module, builder, stop)
    return built


def test_train_phase_builds_the_model_with_checkpointing_when_liger_falls_back_on_a_gpu(
        tiny_model_dir, config, rows, tmp_path, monkeypatch, caplog):
    import clarify.training

    built = gpu_without_liger_and_stop_at(monkeypatch, clarify.training, "build_peft_model")
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"), \
            pytest.raises(RuntimeError, match="stop before loading weights"):
        train(tiny_model_dir, config, rows, tmp_path, batch_size=32)
    assert built == {"gradient_checkpointing": True}
    assert len(liger_lines(caplog)) == 1


def test_liger_on_cpu_logs_one_line_and_trains_without_it(tiny_model_dir, config, rows, tmp_path, caplog):
    assert liger_unavailable()  # no Triton GPU here (and usually no liger-kernel package)
    with caplog.at_level(logging.WARNING, logger="clarify.training_speedups"):
        log = train(tiny_model_dir, config, rows, tmp_path, use_liger_kernel=True)
    lines = [r.getMessage() for r in caplog.records if "use_liger_kernel" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("phase_a.use_liger_kernel: ")
    assert log["use_liger_kernel"] is False and log["steps"] == 2
    assert log["kbit_upcast"] is False and log["device_name"] == "cpu"  # the settings the run had (the default)
    assert log["peak_gpu_gib"] is None  # no GPU memory to count here


def test_peak_gpu_memory_is_counted_from_the_reset_in_gib(monkeypatch):
    import torch

    from clarify.models import peak_gpu_gib, reset_peak_gpu_memory

    resets = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # a fresh rule process: nothing to reset
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: resets.append(True))
    reset_peak_gpu_memory()
    assert resets == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: int(4.713 * 2**30))
    reset_peak_gpu_memory()
    assert resets == [True] and peak_gpu_gib() == 4.71


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


def test_phase_c_builds_the_model_with_checkpointing_when_liger_falls_back_on_a_gpu(
        tiny_model_dir, config, tmp_path, monkeypatch):
    import clarify.dpo

    built = gpu_without_liger_and_stop_at(monkeypatch, clarify.dpo, "load_for_training")
    settings = {**config["phase_c"], "use_liger_kernel": True, "gradient_checkpointing": False}
    with pytest.raises(RuntimeError, match="stop before loading weights"):
        clarify.dpo.build_trainer(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                                  quantization=config["quantization"], settings=settings,
                                  pairs=[{"prompt": "Q", "chosen": "A", "rejected": "B"}], init_adapter="unused",
                                  work_dir=tmp_path / "work")
    assert built == {"gradient_checkpointing": True}


@pytest.mark.parametrize("load_in_4bit, kbit_upcast, prepared", [
    (True, True, True),     # QLoRA as PEFT prepares it: the weights that are not 4-bit cast to fp32
    (True, False, False),   # kbit_upcast: false: prepared like an unquantized model, in its own dtype
    (False, True, False),   # no 4-bit: the switch does nothing
])
def test_kbit_upcast_decides_whether_peft_casts_the_other_weights_to_fp32(monkeypatch, tiny_model_dir, load_in_4bit,
                                                                          kbit_upcast, prepared):
    import peft
    import torch

    from clarify import training

    model = training.load_model({"path": str(tiny_model_dir)}, {"dtype": "bfloat16"}, {"load_in_4bit": False})
    monkeypatch.setattr(training, "load_model", lambda *a, **k: model)
    calls = []

    def prepare(m, use_gradient_checkpointing):
        calls.append(use_gradient_checkpointing)
        for p in m.parameters():
            p.data = p.data.to(torch.float32)
        return m

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    out = training.load_for_training({"path": str(tiny_model_dir)}, {}, {"load_in_4bit": load_in_4bit},
                                     gradient_checkpointing=True, kbit_upcast=kbit_upcast)
    assert calls == ([True] if prepared else [])
    assert {p.dtype for p in out.parameters()} == {torch.float32 if prepared else torch.bfloat16}
    if not prepared:  # checkpointing still on, as for any unquantized model
        assert out.is_gradient_checkpointing


def test_kbit_upcast_is_off_by_default_where_it_was_measured(config):
    """docs/results/qwen1.5b/kbit_upcast/: Phases A and B keep the other weights in bf16; Phase C, not measured,
    keeps PEFT's fp32 cast."""
    assert [config[phase]["kbit_upcast"] for phase in ("phase_a", "phase_b", "phase_c")] == [False, False, True]


def test_training_out_of_memory_is_one_line_naming_the_settings_that_fix_it(tiny_model_dir, config, rows, tmp_path,
                                                                           monkeypatch):
    import torch

    import clarify.training
    from clarify.errors import InputError

    class OutOfMemory:
        def train(self, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(clarify.training, "build_sft_trainer", lambda **kwargs: OutOfMemory())
    with pytest.raises(InputError) as raised:
        train(tiny_model_dir, config, rows, tmp_path, batch_size=64, grad_accum=1)
    assert str(raised.value) == ("phase_a: the GPU ran out of memory training micro-batches of 64; e.g. "
                                 "phase_a.batch_size: 32 with phase_a.grad_accum: 2 keeps the effective batch of 64")
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(InputError, match="micro-batches of 1; set phase_a.gradient_checkpointing: true"):
        train(tiny_model_dir, config, rows, tmp_path, batch_size=1, grad_accum=1)
