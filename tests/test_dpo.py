"""Phase C trainer on the tiny model: the reference is Phase B, the schedule is followed, margins rise."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from clarify.config import schema_defaults
from clarify.dpo import build_trainer, train_dpo
from clarify.dpo_losses import cal_paper_losses
from clarify.dpo_schedule import check_schedule
from clarify.errors import InputError
from clarify.models import load_model
from clarify.prompts import reasoning_completion, reasoning_prompt

from conftest import REPO

QUESTIONS = [f"Is thing {i} bigger than a {w}?" for i, w in enumerate(["cat", "bus", "pen", "hat", "cup", "car"])]


@pytest.fixture(scope="module")
def settings():
    defaults = schema_defaults(REPO / "workflow/schemas/config.schema.yaml")["phase_c"]
    return {**defaults, "learning_rate": 3e-2, "batch_size": 3, "schedule": [{"beta": 0.5, "loss": "sigmoid"}] * 4}


@pytest.fixture(scope="module")
def pairs():
    rows = []
    for i, question in enumerate(QUESTIONS):
        gold = i % 2 == 0
        steps = ["Compare the sizes.", "The first is larger." if gold else "The second is larger."]
        rows.append({"qid": f"q{i}", "prompt": reasoning_prompt(question), "gold": gold,
                     "chosen": reasoning_completion(steps, gold), "rejected": reasoning_completion(steps, not gold)})
    return rows


@pytest.fixture(scope="module")
def phase_b(tiny_model_dir, tmp_path_factory):
    """A 'Phase B' adapter with non-zero weights, so the policy differs from the bare base model."""
    torch.manual_seed(1)
    model = load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"})
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("phase-b")
    peft_model.save_pretrained(out)
    return out


def summed_completion_logps(model, batch):
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    target = labels[:, 1:]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logps * (target != -100)).sum(-1)


def test_reference_log_probs_are_phase_bs(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    manifest = {"path": str(tiny_model_dir)}
    trainer = build_trainer(manifest=manifest, student={"dtype": "float32"}, quantization={"load_in_4bit": False},
                            settings=settings, pairs=pairs, init_adapter=str(phase_b), work_dir=tmp_path / "w",
                            progress=False)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    with torch.no_grad():
        phase_b_model = load_model(manifest, {"dtype": "float32"}, adapter=str(phase_b))
        expected = summed_completion_logps(phase_b_model, batch)
        base = summed_completion_logps(load_model(manifest, {"dtype": "float32"}), batch)
    got = torch.cat([ref_chosen, ref_rejected])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - base).abs().max() > 1e-2, "the reference must not be the bare base model"


def test_training_raises_the_margin_and_saves_only_the_policy(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    log = train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                    quantization={"load_in_4bit": False}, settings=settings, pairs=pairs, init_adapter=str(phase_b),
                    output_dir=tmp_path / "round1", work_dir=tmp_path / "work", progress=False)
    margins = [s["margin"] for s in log["steps"]]
    assert len(margins) == 8 and margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 1
    assert margins[-1] > 0.05 and log["steps"][-1]["implicit_accuracy"] > 0.5
    # the pre-clip gradient norm of every step is logged (diagnoses a step that overflowed)
    assert all(s["grad_norm"] is not None and 0 < s["grad_norm"] < 1e6 for s in log["steps"])
    assert (tmp_path / "round1" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "round1" / "ref").exists()
    assert json.loads((tmp_path / "round1" / "dpo_log.json").read_text())["pairs"] == len(pairs)
    assert not (tmp_path / "work").exists()


def test_schedule_changes_beta_and_loss_per_epoch(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    schedule = [{"beta": 0.05, "loss": "sigmoid"}, {"beta": 0.1, "loss": "cal_batch_mean"},
                {"beta": 0.1, "loss": "dr_drop_top"}]
    log = train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                    quantization={"load_in_4bit": False}, settings={**settings, "schedule": schedule,
                                                                    "drop_fraction": 0.34},
                    pairs=pairs, init_adapter=str(phase_b), output_dir=tmp_path / "r", work_dir=tmp_path / "w",
                    progress=False)
    assert [s["beta"] for s in log["steps"]] == [0.05, 0.05, 0.1, 0.1, 0.1, 0.1]
    assert sum(s["dropped_pairs"] for s in log["steps"][:4]) == 0  # only the Dr epoch drops pairs
    assert all(s["micro_batch_pairs"] == 3 for s in log["steps"])


@pytest.mark.parametrize("schedule, message", [
    ([{"beta": 0.1, "loss": "hinge"}], "phase_c.schedule[0].loss: unknown loss 'hinge'"),
    ([{"beta": 0.1, "loss": "sigmoid"}, {"beta": -0.1, "loss": "sigmoid"}], "phase_c.schedule[1].beta: must be a number > 0"),
    ([], "phase_c.schedule: the schedule needs at least one epoch"),
])
def test_bad_schedules_are_one_line_errors(schedule, message):
    with pytest.raises(InputError) as info:
        check_schedule(schedule)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_cal_paper_pulls_log_ratios_to_plus_minus_half_over_beta():
    """Toy problem: free per-pair log-ratios optimised under cal_paper settle near +-1/(2 beta)."""
    for beta in (0.5, 1.0):
        h_w = torch.zeros(4, requires_grad=True)
        h_l = torch.zeros(4, requires_grad=True)
        optimiser = torch.optim.SGD([h_w, h_l], lr=0.1)
        for _ in range(2000):
            optimiser.zero_grad()
            cal_paper_losses(h_w, h_l, beta).mean().backward()
            optimiser.step()
        target = 1 / (2 * beta)
        # the DPO term pushes a little past the targets; the penalties hold them close
        assert h_w.detach().mean().item() == pytest.approx(target, abs=0.35)
        assert h_l.detach().mean().item() == pytest.approx(-target, abs=0.35)
        assert torch.isfinite(h_w.grad).all() and torch.isfinite(h_l.grad).all()


def test_warmup_ratio_ramps_the_learning_rate(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    def rates(warmup_ratio):
        log = train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                        quantization={"load_in_4bit": False}, settings={**settings, "warmup_ratio": warmup_ratio},
                        pairs=pairs, init_adapter=str(phase_b), output_dir=tmp_path / f"r{warmup_ratio}",
                        work_dir=tmp_path / "w", progress=False)
        return [s["learning_rate"] for s in log["steps"]]

    flat, warm = rates(0.0), rates(0.5)  # 8 steps: 4 of warm-up
    assert flat[0] == pytest.approx(settings["learning_rate"])
    assert warm[0] < warm[1] < warm[2] < warm[3] <= settings["learning_rate"] and warm[0] < flat[0] / 2
