"""Phase C trainer on the tiny model: the reference is Phase B, the schedule is followed, margins rise."""

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from clarify import dpo
from clarify.config import load_schema, schema_defaults
from clarify.dpo import ScheduledDPOConfig, build_trainer, train_dpo
from clarify.dpo_losses import cal_paper_losses
from clarify.dpo_schedule import check_schedule, resolve_schedule
from clarify.errors import InputError
from clarify.evaluation import evaluate
from clarify.models import load_model, load_tokenizer
from clarify.prompts import reasoning_completion, reasoning_prompt
from clarify.stats import accuracy

from conftest import REPO

QUESTIONS = [f"Is thing {i} bigger than a {w}?" for i, w in enumerate(["cat", "bus", "pen", "hat", "cup", "car"])]


@pytest.fixture(scope="module")
def settings():
    defaults = schema_defaults(REPO / "workflow/schemas/config.schema.yaml")["phase_c"]
    # greedy cot dev checks (the default samples, cot_sc: its own test below)
    return {**defaults, "dev_mode": "cot", "learning_rate": 3e-2, "batch_size": 3,
            "schedule": [{"beta": 0.5, "loss": "sigmoid"}] * 4}


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


# --- one log-prob path, rpo through the trainer, presets -------------------------------------

DEV = [{"qid": f"d{i}", "question": f"Is item {i} heavier than a {w}?", "answer": i % 2 == 0}
       for i, w in enumerate(["dog", "van", "key", "cap", "mug", "box", "pin", "log"])]


def test_policy_and_reference_log_probs_are_equal_at_step_0(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    trainer = build_trainer(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                            quantization={"load_in_4bit": False}, settings=settings, pairs=pairs,
                            init_adapter=str(phase_b), work_dir=tmp_path / "w", progress=False)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        policy = torch.cat(trainer.completion_log_probs(trainer.model, batch, "default"))
    reference = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    torch.testing.assert_close(policy, reference, atol=0.0, rtol=0.0)
    assert trainer.model.active_adapter == "default"  # the reference pass switches back
    with torch.no_grad():  # and both are the independent computation's
        torch.testing.assert_close(policy, summed_completion_logps(trainer.model, batch), atol=1e-4, rtol=1e-4)


def test_rpo_adds_alpha_times_the_chosen_length_normalised_nll(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    rpo = {**settings, "schedule": [{"beta": 0.5, "loss": "rpo"}], "rpo_alpha": 0.5, "batch_size": len(pairs)}
    trainer = build_trainer(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                            quantization={"load_in_4bit": False}, settings=rpo, pairs=pairs,
                            init_adapter=str(phase_b), work_dir=tmp_path / "w", progress=False)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        chosen = summed_completion_logps(trainer.model, batch).chunk(2)[0]
    tokens = batch["completion_mask"][:, 1:].sum(dim=1).chunk(2)[0].float()
    nll = (-chosen / tokens).mean()
    # at step 0 the policy is the reference: margin 0, DPO term log 2
    assert float(loss) == pytest.approx(math.log(2) + 0.5 * float(nll), rel=1e-4)
    assert trainer._metrics["train"]["nll/chosen"][-1] == pytest.approx(float(nll), rel=1e-4)


def test_schedule_presets_and_the_config_dataclass():
    assert resolve_schedule("seed") == [{"beta": 0.05, "loss": "sigmoid"}, {"beta": 0.1, "loss": "cal_batch_mean"},
                                        {"beta": 0.1, "loss": "cal_batch_mean"}, {"beta": 0.1, "loss": "dr_drop_top"}]
    assert resolve_schedule("rpo") == [{"beta": 0.1, "loss": "rpo"}] * 2
    defaults = schema_defaults(REPO / "workflow/schemas/config.schema.yaml")["phase_c"]
    # run6's dev pick (docs/results/qwen1.5b/run6): rpo at 2e-5, epochs chosen by self-consistency
    assert (defaults["schedule"], defaults["learning_rate"], defaults["dev_mode"]) == ("rpo", 2e-5, "cot_sc")
    assert ScheduledDPOConfig.dev_mode == defaults["dev_mode"]
    with pytest.raises(InputError, match=r"^phase_c.schedule: unknown preset 'seeds' \(known: sigmoid, "
                                         r"cal_batch_mean, cal_paper, dr_drop_top, dr_paper, rpo, seed\)$"):
        resolve_schedule("seeds")
    # one preset per loss form: that loss in two epochs at beta 0.1 (a loss-form variant of the grid)
    assert resolve_schedule("dr_paper") == [{"beta": 0.1, "loss": "dr_paper"}] * 2
    assert resolve_schedule("cal_paper") == [{"beta": 0.1, "loss": "cal_paper"}] * 2
    config = ScheduledDPOConfig(output_dir="unused", schedule="seed", use_cpu=True, report_to=[])
    assert config.num_train_epochs == 4 and config.beta == 0.05 and config.schedule[3]["loss"] == "dr_drop_top"
    with pytest.raises(InputError, match="phase_c.guard.yes_share_band"):
        ScheduledDPOConfig(output_dir="unused", use_cpu=True, report_to=[], yes_share_band=[0.8, 0.2])


# --- dev selection and the collapse guard ------------------------------------------------------

def scripted_dev(monkeypatch, results: list[tuple[float, float]]):
    """``dpo.evaluate`` replaced: call k returns a 100-question frame with results[k] = (accuracy, yes share)."""
    calls = []

    def fake(model, tokenizer, records, mode, eval_settings, progress=True):
        accuracy_, yes = results[len(calls)]
        calls.append(mode)
        n = 100
        return pd.DataFrame({"correct": [i < round(accuracy_ * n) for i in range(n)],
                             "pred": [i < round(yes * n) for i in range(n)]})

    monkeypatch.setattr(dpo, "evaluate", fake)
    return calls


def run(tiny_model_dir, phase_b, settings, pairs, tmp_path, eval_settings=None, **overrides):
    return train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                     quantization={"load_in_4bit": False}, settings={**settings, **overrides}, pairs=pairs,
                     init_adapter=str(phase_b), output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                     dev_records=DEV, eval_settings=eval_settings or {"cot_max_new_tokens": 8}, progress=False)


def same_weights(adapter_dir, other_dir) -> bool:
    mine, other = (load_file(Path(d) / "adapter_model.safetensors") for d in (adapter_dir, other_dir))
    return mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)


def test_guard_stops_a_run_whose_dev_accuracy_drops_and_keeps_epoch_0(tiny_model_dir, phase_b, settings, pairs,
                                                                      tmp_path, monkeypatch):
    calls = scripted_dev(monkeypatch, [(0.6, 0.5), (0.5, 0.5)])  # epoch 1 falls 10 pp
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path)
    assert calls == ["cot", "cot"]  # epoch 0 and epoch 1, then stopped (4 epochs scheduled)
    assert log["epochs_run"] == 1 and log["kept_epoch"] == 0 and len(log["steps"]) == 2
    assert "10.0 pp below the best so far" in log["stop_reason"] and "max_dev_drop_pp" in log["stop_reason"]
    assert [h["dev_accuracy"] for h in log["dev_history"]] == [0.6, 0.5]
    assert log["dev_history"][1]["guard"] == log["stop_reason"] and log["dev_history"][0]["guard"] is None
    assert same_weights(tmp_path / "out", phase_b)  # the kept adapter is Phase B's
    assert json.loads((tmp_path / "out" / "dpo_log.json").read_text())["kept_epoch"] == 0
    assert not (tmp_path / "work").exists()


def test_guard_stops_when_the_yes_share_leaves_its_band_and_never_keeps_that_epoch(
        tiny_model_dir, phase_b, settings, pairs, tmp_path, monkeypatch):
    scripted_dev(monkeypatch, [(0.6, 0.5), (0.7, 0.9)])  # better on dev, but answers "yes" to 90%
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path)
    assert log["epochs_run"] == 1 and log["kept_epoch"] == 0
    assert "predicted-yes share on dev 90.0% left the band [25%, 75%]" in log["stop_reason"]
    assert same_weights(tmp_path / "out", phase_b)


def test_best_dev_epoch_is_kept_ties_to_the_earlier(tiny_model_dir, phase_b, settings, pairs, tmp_path, monkeypatch):
    scripted_dev(monkeypatch, [(0.5, 0.5), (0.7, 0.5), (0.7, 0.45), (0.68, 0.5), (0.69, 0.55)])
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path)
    assert log["epochs_run"] == 4 and log["stop_reason"] is None and log["kept_epoch"] == 1
    assert not same_weights(tmp_path / "out", phase_b)


def test_dev_check_scores_every_epoch_with_evaluate(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    """A real dev check (cot, the default mode): epoch 0 is Phase B's score, the kept adapter scores as logged."""
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path,
              schedule=[{"beta": 0.5, "loss": "sigmoid"}] * 2,
              guard={"max_dev_drop_pp": 100.0, "yes_share_band": [0.0, 1.0]})
    history = log["dev_history"]
    assert [h["epoch"] for h in history] == [0, 1, 2] and log["dev_mode"] == "cot"
    manifest, tokenizer = {"path": str(tiny_model_dir)}, load_tokenizer(str(tiny_model_dir))

    def dev_score(adapter):
        frame = evaluate(load_model(manifest, {"dtype": "float32"}, adapter=str(adapter)), tokenizer, DEV, "cot",
                         {"batch_size": 16, "cot_max_new_tokens": 8}, progress=False)
        return accuracy(frame["correct"]).accuracy, float(frame["pred"].mean())

    assert dev_score(phase_b) == pytest.approx((history[0]["dev_accuracy"], history[0]["dev_pred_yes"]))
    best = max(h["dev_accuracy"] for h in history)
    assert log["kept_epoch"] == next(h["epoch"] for h in history if h["dev_accuracy"] == best)
    assert dev_score(tmp_path / "out") == pytest.approx((best, history[log["kept_epoch"]]["dev_pred_yes"]))


# --- resuming a killed run (issue 16) ------------------------------------------------------------

class Killed(Exception):
    """Stands in for a kill: raised from a callback at a chosen point of training."""


def kill_at(monkeypatch, event: str, step: int):
    """``train_dpo``'s trainer gets a callback that raises ``Killed`` at ``event`` once global_step is ``step``."""
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        pass

    def fire(self, args, state, control, **kwargs):
        if state.global_step == step:
            raise Killed(f"{event} at step {step}")

    setattr(Kill, event, fire)
    original = dpo.build_trainer

    def build(**kwargs):
        trainer = original(**kwargs)
        trainer.add_callback(Kill())
        return trainer

    monkeypatch.setattr(dpo, "build_trainer", build)
    return original


RESUME_SETTINGS = {"schedule": [{"beta": 0.5, "loss": "sigmoid"}, {"beta": 0.5, "loss": "dr_drop_top"},
                                {"beta": 0.5, "loss": "sigmoid"}],
                   "drop_fraction": 0.34, "guard": {"max_dev_drop_pp": 100.0, "yes_share_band": [0.0, 1.0]}}
UNEQUAL_ON_RESUME = {"wall_time_s", "resumed_from"}  # how long it took, and whether it was resumed


def comparable(log: dict) -> dict:
    return {k: v for k, v in log.items() if k not in UNEQUAL_ON_RESUME}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, phase_b, settings, pairs, tmp_path_factory):
    """An uninterrupted Phase C run with a Dr epoch and a real dev check: (adapter dir, log, initial adapter).

    Nothing in it is random but the data order (seeded per epoch); TRL turns dropout off for DPO.
    The optimizer's moments, the scheduler's position, the Dr threshold and the dev history are
    what a resumed run must get back.
    """
    tmp = tmp_path_factory.mktemp("dpo-uninterrupted")
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp, **RESUME_SETTINGS)
    assert log["resumed_from"] is None and log["epochs_run"] == 3
    return tmp / "out", log, phase_b


@pytest.mark.parametrize("event, step", [("on_save", 2),        # epoch 1 checkpointed, then killed
                                         ("on_step_end", 3),    # killed during epoch 2
                                         ("on_save", 6)])       # every epoch done, output not written
def test_a_killed_run_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_one(
        tiny_model_dir, settings, pairs, tmp_path, monkeypatch, uninterrupted, event, step):
    reference_dir, reference_log, adapter = uninterrupted
    kill_at(monkeypatch, event, step)
    with pytest.raises(Killed):
        run(tiny_model_dir, adapter, settings, pairs, tmp_path, **RESUME_SETTINGS)
    assert not (tmp_path / "out").exists()
    monkeypatch.undo()
    log = run(tiny_model_dir, adapter, settings, pairs, tmp_path, **RESUME_SETTINGS)
    expected_checkpoint = {2: "checkpoint-2", 3: "checkpoint-2", 6: "checkpoint-6"}[step]
    assert log["resumed_from"] == str(tmp_path / "work" / expected_checkpoint)
    assert comparable(log) == comparable(reference_log)
    assert comparable(json.loads((tmp_path / "out" / "dpo_log.json").read_text())) == comparable(reference_log)
    assert same_weights(tmp_path / "out", reference_dir)
    assert not (tmp_path / "work").exists()


def test_a_killed_run_under_other_settings_starts_fresh_with_one_line(
        tiny_model_dir, settings, pairs, tmp_path, monkeypatch, uninterrupted, caplog):
    _, _, adapter = uninterrupted
    kill_at(monkeypatch, "on_save", 2)
    with pytest.raises(Killed):
        run(tiny_model_dir, adapter, settings, pairs, tmp_path, **RESUME_SETTINGS)
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="clarify.resume"):
        log = run(tiny_model_dir, adapter, settings, pairs, tmp_path, **{**RESUME_SETTINGS, "learning_rate": 1e-2})
    assert log["resumed_from"] is None and log["epochs_run"] == 3
    [line] = [m for m in caplog.messages if "starting fresh" in m]
    assert "settings.learning_rate" in line


def test_a_run_the_guard_stopped_is_not_trained_on_after_a_kill(tiny_model_dir, phase_b, settings, pairs, tmp_path,
                                                                monkeypatch):
    calls = scripted_dev(monkeypatch, [(0.6, 0.5), (0.5, 0.5)])  # epoch 1 falls 10 pp: the guard stops
    kill_at(monkeypatch, "on_train_end", 2)  # after training, before the output is written
    with pytest.raises(Killed):
        run(tiny_model_dir, phase_b, settings, pairs, tmp_path)
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path)  # the kill callback fires only at step 2
    assert calls == ["cot", "cot"]  # nothing scored again, nothing trained
    assert log["resumed_from"].endswith("checkpoint-2") and log["epochs_run"] == 1 and log["kept_epoch"] == 0
    assert "pp below the best so far" in log["stop_reason"] and len(log["steps"]) == 2
    assert same_weights(tmp_path / "out", phase_b)


def test_dev_check_in_self_consistency_mode(tiny_model_dir, phase_b, settings, pairs, tmp_path):
    """phase_c.dev_mode: cot_sc selects epochs on the majority of sampled reasonings (seeded, so epoch 0
    equals cot_sc scoring of Phase B's adapter outside training)."""
    sc = {"cot_max_new_tokens": 8, "sc_samples": 3, "sc_temperature": 0.7, "sc_seed": 0}
    log = run(tiny_model_dir, phase_b, settings, pairs, tmp_path, eval_settings=sc, dev_mode="cot_sc",
              schedule=[{"beta": 0.5, "loss": "sigmoid"}], guard={"max_dev_drop_pp": 100.0, "yes_share_band": [0.0, 1.0]})
    assert log["dev_mode"] == "cot_sc" and [h["epoch"] for h in log["dev_history"]] == [0, 1]
    model = load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}, adapter=str(phase_b))
    frame = evaluate(model, load_tokenizer(str(tiny_model_dir)), DEV, "cot_sc",
                     {"batch_size": settings["dev_batch_size"], **sc}, progress=False)
    assert log["dev_history"][0]["dev_accuracy"] == pytest.approx(accuracy(frame["correct"]).accuracy)
    assert log["dev_history"][0]["dev_pred_yes"] == pytest.approx(float(frame["pred"].mean()))
    assert "sc_samples" in frame and int(frame["sc_samples"].iloc[0]) == 3


def test_cot_sc_is_a_dev_mode_of_every_phase():
    schema = load_schema(REPO / "workflow/schemas/config.schema.yaml")
    for phase in ("phase_a", "phase_b", "phase_c"):
        assert "cot_sc" in schema["properties"][phase]["properties"]["dev_mode"]["enum"]


def test_phase_c_out_of_memory_is_one_line_naming_its_settings(tiny_model_dir, phase_b, settings, pairs, tmp_path,
                                                              monkeypatch):
    from trl import DPOTrainer

    from clarify.errors import InputError

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(DPOTrainer, "train", out_of_memory)
    with pytest.raises(InputError, match=r"^phase_c: the GPU ran out of memory training micro-batches of "
                                         rf"{settings['batch_size']}"):
        train_dpo(manifest={"path": str(tiny_model_dir)}, student={"dtype": "float32"},
                  quantization={"load_in_4bit": False}, settings=settings, pairs=pairs, init_adapter=str(phase_b),
                  output_dir=tmp_path / "round1", work_dir=tmp_path / "work", progress=False)
    assert not (tmp_path / "round1").exists()
