"""Phase A/B training on the tiny model: it learns, it continues, it resumes, it refuses GPU-only options."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from clarify.config import validate_config
from clarify.errors import InputError
from clarify.evaluation import evaluate
from clarify.models import load_model, load_tokenizer
from clarify.prompts import answer_completion, answer_prompt, reasoning_completion, reasoning_prompt
from clarify.stats import accuracy
from clarify.training import resume_point, tokenize_rows, train_phase

from conftest import REPO

QUESTIONS = [f"Is item number {i} heavier than a {word}?" for i, word in
             enumerate(["cat", "dog", "car", "pen", "cup", "hat", "box", "key"] * 3)]


@pytest.fixture(scope="module")
def config():
    return validate_config({"quantization": {"load_in_4bit": False}}, REPO / "workflow/schemas/config.schema.yaml")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, config):
    records = [{"qid": f"q{i:02d}", "question": q, "answer": i % 3 == 0} for i, q in enumerate(QUESTIONS)]
    baseline = [{"qid": r["qid"], "prompt": answer_prompt(r["question"]),
                 "completion": answer_completion(r["answer"]), "answer": r["answer"]} for r in records]
    cot = [{"qid": r["qid"], "prompt": reasoning_prompt(r["question"]),
            "completion": reasoning_completion(["Weigh it.", "Compare."], r["answer"]), "answer": r["answer"]}
           for r in records]
    eval_settings = {"batch_size": 8, "cot_max_new_tokens": 6, "drafts": config["drafts"]}
    return {"manifest": {"path": str(tiny_model_dir)}, "records": records, "baseline": baseline, "cot": cot,
            "eval": eval_settings}


def run(setup, config, tmp, phase="phase_a", rows=None, init_adapter=None, callbacks=(), lora=None,
        tensorboard_dir=None, **overrides):
    settings = {**config[phase], "epochs": 3, "batch_size": 8, "grad_accum": 1, "learning_rate": 2e-2,
                "early_stopping_patience": 3, **overrides}
    return train_phase(phase=phase, manifest=setup["manifest"], student={"dtype": "float32"},
                       quantization=config["quantization"], lora={**config["lora"], **(lora or {})}, settings=settings,
                       eval_settings=setup["eval"], train_rows=rows or setup["baseline"],
                       dev_records=setup["records"][:8], output_dir=tmp / phase, checkpoint_dir=tmp / f"ckpt-{phase}",
                       init_adapter=init_adapter, callbacks=callbacks, progress=False, tensorboard_dir=tensorboard_dir)


@pytest.fixture(scope="module")
def phase_a(setup, config, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("phase-a")
    return tmp / "phase_a", run(setup, config, tmp)


def epoch_losses(log):
    by_epoch = {}
    for h in log["loss_history"]:
        by_epoch.setdefault(int(-(-h["epoch"] // 1)), []).append(h["loss"])
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


def test_completion_only_targets_use_the_scorers_token_ids(tiny_model_dir, setup):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    data = tokenize_rows(setup["baseline"][:3], tokenizer, max_length=256)
    for row, ids, mask in zip(setup["baseline"], data["input_ids"], data["completion_mask"]):
        assert ids == tokenizer(row["prompt"] + row["completion"])["input_ids"]
        supervised = [t for t, m in zip(ids, mask) if m]
        assert tokenizer.decode(supervised) == row["completion"]  # only the answer is trained


def test_phase_a_learns_and_changes_only_lora(phase_a):
    out, log = phase_a
    losses = epoch_losses(log)
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.5, losses
    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # LoRA B starts at zero
    assert {"q_proj", "down_proj"} <= set(log["lora_targets"])
    assert 0 < log["parameters"]["trainable"] < log["parameters"]["total"]
    assert log["steps"] == 9 and log["epochs_run"] == 3


def test_adapter_reloads_and_scores_as_during_training(phase_a, setup):
    out, log = phase_a
    tokenizer = load_tokenizer(setup["manifest"]["path"])
    model = load_model(setup["manifest"], {"dtype": "float32"}, adapter=str(out))
    frame = evaluate(model, tokenizer, setup["records"][:8], "direct", setup["eval"], progress=False)
    best = next(h for h in log["dev_history"] if h["epoch"] == log["best_epoch"])
    assert accuracy(frame["correct"]).accuracy == pytest.approx(best["dev_accuracy"])
    base = load_model(setup["manifest"], {"dtype": "float32"})
    base_frame = evaluate(base, tokenizer, setup["records"][:8], "direct", setup["eval"], progress=False)
    assert (frame["margin"] - base_frame["margin"]).abs().max() > 1e-3  # the adapter changed the model


def test_phase_b_continues_the_phase_a_adapter(phase_a, setup, config, tmp_path):
    out_a, log_a = phase_a
    log_b = run(setup, config, tmp_path, phase="phase_b", rows=setup["cot"], init_adapter=str(out_a), epochs=1)
    assert log_b["init_adapter"] == str(out_a) and log_b["dev_mode"] == "cot"
    assert log_b["lora_targets"] == sorted(log_a["lora_targets"])
    assert log_b["parameters"] == log_a["parameters"]
    a = load_file(out_a / "adapter_model.safetensors")
    b = load_file(tmp_path / "phase_b" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)


class Interrupt(Exception):
    pass


class StopAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupt("simulated kill after epoch 1")


def test_interrupted_training_resumes_from_the_last_epoch(setup, config, tmp_path, phase_a):
    _, uninterrupted = phase_a
    with pytest.raises(Interrupt):
        run(setup, config, tmp_path, callbacks=(StopAfterFirstSave(),))
    assert list((tmp_path / "ckpt-phase_a").glob("checkpoint-*")), "the first epoch's checkpoint survives"
    resumed = run(setup, config, tmp_path)
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert resumed["steps"] == uninterrupted["steps"]
    assert [h["epoch"] for h in resumed["dev_history"]] == [1, 2, 3]
    assert not (tmp_path / "ckpt-phase_a").exists()


def test_resume_under_changed_settings_starts_fresh(setup, config, tmp_path, phase_a, caplog):
    """Issue 16, case 1: checkpoints of lr 2e-2 are not resumed as a run with lr 5e-2 (or more epochs)."""
    with pytest.raises(Interrupt):
        run(setup, config, tmp_path, callbacks=(StopAfterFirstSave(),))
    with caplog.at_level("WARNING", logger="clarify.resume"):
        fresh = run(setup, config, tmp_path, learning_rate=5e-2, epochs=4)
    assert fresh["resumed_from"] is None
    assert [h["epoch"] for h in fresh["dev_history"]] == [1, 2, 3, 4] and fresh["steps"] == 12
    assert "starting fresh" in caplog.text and "settings.epochs, settings.learning_rate" in caplog.text


def test_changed_lora_rank_starts_fresh_instead_of_a_size_mismatch(setup, config, tmp_path):
    """Issue 16, case 1: ``lora.r`` 16 -> 4 under an old checkpoint failed with "size mismatch" on every rerun."""
    with pytest.raises(Interrupt):
        run(setup, config, tmp_path, callbacks=(StopAfterFirstSave(),))
    log = run(setup, config, tmp_path, lora={"r": 4}, epochs=1)
    assert log["resumed_from"] is None
    weights = load_file(tmp_path / "phase_a" / "adapter_model.safetensors")
    assert {w.shape[0] for name, w in weights.items() if "lora_A" in name} == {4}


def test_a_half_written_checkpoint_is_skipped_for_the_last_complete_one(setup, config, tmp_path, phase_a):
    """Issue 16, case 2: a kill during a save leaves a checkpoint without trainer_state.json / optimizer.pt."""
    _, uninterrupted = phase_a
    with pytest.raises(Interrupt):
        run(setup, config, tmp_path, callbacks=(StopAfterFirstSave(),))
    work = tmp_path / "ckpt-phase_a"
    shutil.copytree(work / "checkpoint-3", work / "checkpoint-6")
    for name in ("trainer_state.json", "optimizer.pt"):
        (work / "checkpoint-6" / name).unlink()
    resumed = run(setup, config, tmp_path)
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert resumed["steps"] == uninterrupted["steps"]
    assert [h["epoch"] for h in resumed["dev_history"]] == [1, 2, 3]


def half_saved_run(work, best_epoch):
    """Epoch 1 checkpointed (step 3); epoch 2 dev-checked (step 6), then killed during its save."""
    for step, files in [(3, ["trainer_state.json", "optimizer.pt", "adapter_model.safetensors"]),
                        (6, ["adapter_model.safetensors"])]:
        (work / f"checkpoint-{step}").mkdir(parents=True)
        for name in files:
            (work / f"checkpoint-{step}" / name).write_text(json.dumps({"global_step": step}))
    (work / "best").mkdir()
    history = [{"epoch": 1, "step": 3, "dev_accuracy": 0.5}, {"epoch": 2, "step": 6, "dev_accuracy": 0.6}]
    history[best_epoch - 1]["best"] = True
    (work / "dev_history.json").write_text(json.dumps(history))
    return work / "best", work / "dev_history.json"


def test_resume_point_cuts_the_dev_history_back_to_the_last_complete_checkpoint(tmp_path):
    best, history = half_saved_run(tmp_path, best_epoch=1)
    assert resume_point(tmp_path, best, history) == tmp_path / "checkpoint-3"
    assert [h["epoch"] for h in json.loads(history.read_text())] == [1] and best.is_dir()
    assert not (tmp_path / "checkpoint-6").exists()


def test_resume_point_starts_fresh_when_the_kept_adapter_is_newer_than_the_checkpoint(tmp_path):
    best, history = half_saved_run(tmp_path, best_epoch=2)  # epoch 1's kept adapter was overwritten
    assert resume_point(tmp_path, best, history) is None
    assert list(tmp_path.iterdir()) == []


def test_training_curves_are_written_as_tensorboard_events(setup, config, tmp_path):
    pytest.importorskip("tensorboardX", reason="TensorBoard event files need tensorboardX (a project dependency)")
    board = tmp_path / "tensorboard"
    (board / "stale").mkdir(parents=True)  # a previous, not continued attempt's curves go
    run(setup, config, tmp_path, epochs=1, tensorboard_dir=board)
    events = list(board.glob("events.out.tfevents.*"))
    assert events and not (board / "stale").exists()
    data = b"".join(path.read_bytes() for path in events)
    assert b"train/loss" in data and b"train/learning_rate" in data


def test_class_weights_change_the_loss(setup, config, tmp_path):
    plain = run(setup, config, tmp_path / "plain", epochs=1)
    weighted = run(setup, config, tmp_path / "weighted", epochs=1, class_weights={"yes_weight": 5.0, "no_weight": 1.0})
    assert weighted["loss_history"][0]["loss"] != pytest.approx(plain["loss_history"][0]["loss"])


def test_gpu_only_options_are_refused_on_cpu(setup, config, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="phase_a.bf16: bf16 training needs a CUDA GPU"):
        run(setup, config, tmp_path, bf16=True)
    with pytest.raises(InputError, match="quantization.load_in_4bit: .*needs a CUDA GPU"):
        train_phase(phase="phase_a", manifest=setup["manifest"], student={"dtype": "float32"},
                    quantization={**config["quantization"], "load_in_4bit": True}, lora=config["lora"],
                    settings=config["phase_a"], eval_settings=setup["eval"], train_rows=setup["baseline"],
                    dev_records=setup["records"], output_dir=tmp_path / "o", checkpoint_dir=tmp_path / "c")
    assert not (tmp_path / "o").exists()
