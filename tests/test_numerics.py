"""NaN/inf guards: a non-finite step is skipped, divergence stops the run, NaN models and scores are refused.

The Qwen2.5-1.5B GPU run (issue 8) went NaN at Phase C step 5; the NaN adapter was saved and
scored 53.3% (every answer "No") without a word of warning. These tests would have caught it.
"""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from clarify import dpo
from clarify.models import load_model, load_tokenizer
from clarify.numerics import NonFiniteError, nonfinite_guard, require_finite
from clarify.scoring import score_prompts

from test_dpo import pairs, phase_b, settings  # noqa: F401 (fixtures)
from test_training import config, run, setup  # noqa: F401 (fixtures)


def step_with(guard, model, optimizer, grad_value, step):
    """One optimizer step whose gradients are all ``grad_value``, through the guard."""
    for p in model.parameters():
        p.grad = torch.full_like(p, grad_value)
    state = TrainerState()
    state.global_step = step - 1
    guard.on_pre_optimizer_step(None, state, TrainerControl(), optimizer=optimizer)
    optimizer.step()
    optimizer.zero_grad()


def test_a_nonfinite_step_leaves_weights_and_adam_state_alone():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    guard = nonfinite_guard("phase_a")
    step_with(guard, model, optimizer, 1.0, step=1)
    weights = [p.detach().clone() for p in model.parameters()]
    moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]
    step_with(guard, model, optimizer, float("nan"), step=2)
    assert guard.skipped == [2]
    for p, before, moment in zip(model.parameters(), weights, moments):
        assert torch.equal(p, before) and torch.equal(optimizer.state[p]["exp_avg"], moment)
    step_with(guard, model, optimizer, 1.0, step=3)  # a finite step trains again
    assert not torch.equal(next(model.parameters()), weights[0]) and guard.consecutive == 0


def test_consecutive_nonfinite_steps_stop_the_run_with_a_message():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = nonfinite_guard("phase_c", max_consecutive=3, describe=lambda: "chosen 8/8 NaN/inf")
    step_with(guard, model, optimizer, float("inf"), step=1)
    step_with(guard, model, optimizer, float("nan"), step=2)
    with pytest.raises(NonFiniteError) as info:
        step_with(guard, model, optimizer, float("nan"), step=3)
    message = str(info.value)
    assert "phase_c: training diverged: 3 optimizer steps in a row" in message
    assert "steps 1-3 (chosen 8/8 NaN/inf)" in message and "phase_c.learning_rate" in message
    assert torch.isfinite(model.weight).all()


def test_require_finite_names_what_and_how_many():
    require_finite([0.5, -3.0], "ok")
    with pytest.raises(NonFiniteError, match=r"scoring: 2 of 3 values are NaN/inf"):
        require_finite([float("nan"), 1.0, float("-inf")], "scoring")


def test_dpo_skips_a_nan_step_and_trains_on(tiny_model_dir, phase_b, settings, pairs, tmp_path, monkeypatch):
    real, calls = dpo.preference_loss, []

    def nan_on_second_call(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            result = {**result, "loss": result["loss"] * float("nan")}
        return result

    monkeypatch.setattr(dpo, "preference_loss", nan_on_second_call)
    log = dpo.train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                        quantization={"load_in_4bit": False}, settings=settings, pairs=pairs,
                        init_adapter=str(phase_b), output_dir=tmp_path / "r1", work_dir=tmp_path / "w", progress=False)
    assert log["nonfinite_steps"] == [2]
    margins = [s["margin"] for s in log["steps"]]
    assert all(m == m for m in margins[2:]) and margins[-1] > 0  # finite again after the skip, and learning
    assert json.loads((tmp_path / "r1" / "dpo_log.json").read_text())["nonfinite_steps"] == [2]
    trained = load_file(tmp_path / "r1" / "adapter_model.safetensors")
    initial = load_file(phase_b / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in trained.values())
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)


def test_dpo_that_diverges_fails_and_writes_nothing(tiny_model_dir, phase_b, settings, pairs, tmp_path, monkeypatch):
    real = dpo.preference_loss

    def always_nan(*args, **kwargs):
        result = real(*args, **kwargs)
        return {**result, "loss": result["loss"] * float("nan")}

    monkeypatch.setattr(dpo, "preference_loss", always_nan)
    with pytest.raises(NonFiniteError, match=r"phase_c: training diverged: 5 optimizer steps in a row .*steps 1-5"):
        dpo.train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                      quantization={"load_in_4bit": False}, settings={**settings, "schedule": settings["schedule"] * 2},
                      pairs=pairs, init_adapter=str(phase_b), output_dir=tmp_path / "r1", work_dir=tmp_path / "w",
                      progress=False)
    assert not (tmp_path / "r1").exists()


def test_sft_skips_a_step_whose_backward_is_nan(setup, config, tmp_path):
    from transformers import TrainerCallback

    class NanBackwardAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step + 1 == 3:
                param = next(p for n, p in model.named_parameters() if "lora_B" in n)
                handle = param.register_hook(lambda grad: (handle.remove(), grad * float("nan"))[1])

    log = run(setup, config, tmp_path, callbacks=(NanBackwardAtStep3(),))
    assert log["nonfinite_steps"] == [3]
    model = load_model(setup["manifest"], {"dtype": "float32"}, adapter=str(tmp_path / "phase_a"))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_adapter_is_refused_at_load(tiny_model_dir, tmp_path):
    model = get_peft_model(load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    with pytest.raises(NonFiniteError, match=r"adapter .*nan: 1 adapter tensors hold NaN/inf \(first: .*lora_A"):
        load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}, adapter=str(tmp_path / "nan"))


def test_scores_of_a_nan_model_are_refused(tiny_model_dir):
    model = load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"})
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    with pytest.raises(NonFiniteError, match=r"scoring: answer-slot log-probabilities: 4 of 4 values are NaN/inf"):
        score_prompts(model, tokenizer, ["Question: Is it?\nAnswer:", "Question: Is that?\nAnswer:"], progress=False)
