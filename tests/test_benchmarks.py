"""benchmarks/train_eval_benchmark.py on CPU (--tiny): every row's code path runs or says why not."""

import importlib.util
import json
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_eval_benchmark", REPO / "benchmarks/train_eval_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rows_are_picked_by_name_phase_letter_or_eval(bench):
    rows, evals = bench.select_rows(["A-seed", "C", "eval"])
    assert [r.name for r in rows] == ["A-seed"] + [r.name for r in bench.ROWS if r.phase == "phase_c"]
    assert evals == list(bench.EVAL_ROWS)
    rows, evals = bench.select_rows(None)
    assert len(rows) == len(bench.ROWS) and evals == list(bench.EVAL_ROWS)
    assert len({r.name for r in bench.ROWS}) == len(bench.ROWS)
    with pytest.raises(SystemExit, match="--rows: unknown A-nope"):
        bench.select_rows(["A-nope"])


def test_pairs_flip_only_the_answer(bench):
    row = {"qid": "q1", "prompt": "Question: Is it?\nReasoning:\n", "completion": "1. Step.\nAnswer: Yes",
           "answer": True}
    pair = bench.preference_pairs([row])[0]
    assert pair == {"prompt": row["prompt"], "chosen": "1. Step.\nAnswer: Yes", "rejected": "1. Step.\nAnswer: No"}


def test_module_patches_are_undone_after_a_row(bench, tiny_model_dir):
    from transformers.models.llama import modeling_llama

    original = modeling_llama.apply_rotary_pos_emb
    with bench.module_patches_undone(str(tiny_model_dir)):
        modeling_llama.apply_rotary_pos_emb = lambda *a, **k: None  # what Liger does to the module
        modeling_llama.ADDED_BY_A_PATCH = True
    assert modeling_llama.apply_rotary_pos_emb is original and not hasattr(modeling_llama, "ADDED_BY_A_PATCH")


def test_tiny_run_reports_every_row_with_numbers_or_a_reason(bench, shared_data, tmp_path):
    out = tmp_path / "bench.json"
    rows = ["A-seed", "A-16x2", "A-16x2-liger", "A-padfree", "B-ungrouped", "B-liger-padfree-nockpt", "C-default",
            "C-liger", "eval-scoring"]
    bench.main(["--tiny", "--strategyqa", str(shared_data), "--rows", *rows, "--examples", "8", "--dpo-examples", "6",
                "--seed-examples", "2", "--warmup-examples", "4", "--max-questions", "8", "--out", str(out)])
    report = json.loads(out.read_text())
    entries = {e["row"]: e for e in report["training"] + report["eval"]}
    assert list(entries) == rows
    for name, entry in entries.items():
        assert entry["status"] == "ok" or entry["status"].startswith("skipped: "), (name, entry["status"])
        if entry["status"] == "ok" and name.startswith(("A", "B", "C")):
            assert entry["examples_per_s"] > 0 and entry["seconds"] > 0
    assert entries["A-seed"]["examples"] == 2 and entries["A-seed"]["padding"] == "to 2048"
    assert entries["A-16x2"]["examples"] == 8
    # 8 examples in steps of 16 x 2: one optimizer step, so no steady state after it
    assert entries["A-16x2"]["steady_examples_per_s"] is None and entries["C-default"]["seconds"] > 0
    assert entries["C-default"]["examples"] == 6 and entries["C-default"]["unit"] == "pairs"
    assert entries["A-padfree"]["status"] == "ok" and entries["A-padfree"]["padding_free"] is True
    assert entries["B-ungrouped"]["padding"] == "longest in batch, random order"
    assert entries["A-16x2-liger"]["status"].startswith("skipped: ")  # no Triton GPU here
    assert entries["eval-scoring"]["questions_per_s"] > 0
    assert report["versions"]["trl"] and report["elapsed_s"] > 0


def test_rows_past_the_time_limit_are_recorded_as_skipped(bench, shared_data, tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--strategyqa", str(shared_data), "--rows", "A-16x2", "eval-scoring", "--examples", "4",
                "--warmup-examples", "4", "--max-questions", "4", "--time-limit", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    skipped = "skipped: time limit (--time-limit 0 s)"
    assert [(e["row"], e["status"]) for e in report["training"] + report["eval"]] == [
        ("A-16x2", skipped), ("eval-scoring", skipped)]


def test_a_row_that_runs_out_of_memory_or_fails_is_recorded_not_raised(bench):
    import torch

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken():
        raise ValueError("bad shape\nmore detail")

    row = bench.ROWS[0]
    assert bench.run_training_row(row, out_of_memory)["status"] == "out of memory"
    entry = bench.run_training_row(row, broken)
    assert entry["status"] == "failed: ValueError: bad shape" and entry["row"] == row.name


def test_a_failing_liger_warm_up_is_recorded_and_retried_without_liger(bench, shared_data, tmp_path, monkeypatch):
    calls = []

    def fake_epoch(manifest, cfg, row, rows, workdir, save_adapter=None, profile=None):
        calls.append((row.name, row.liger))
        if row.name == "warm-up" and row.liger:
            raise RuntimeError("triton compilation failed")
        return {"examples": len(rows), "seconds": 1.0, "examples_per_s": float(len(rows)), "tokens_per_s": 1.0,
                "peak_gib": None}

    monkeypatch.setattr(bench, "liger_unavailable", lambda: None)  # as on a GPU with liger-kernel
    monkeypatch.setattr(bench, "sft_epoch", fake_epoch)
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--strategyqa", str(shared_data), "--rows", "A-16x2-liger", "--examples", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [(w["use_liger_kernel"], w["status"]) for w in report["warm_up"]] == [
        (True, "failed: RuntimeError: triton compilation failed"), (False, "ok")]
    assert calls == [("warm-up", True), ("warm-up", False), ("A-16x2-liger", True)]
    assert report["training"][0]["status"] == "ok"


def test_new_batch_rows_are_selectable_by_name(bench):
    names = ["A-ckpt-64x1", "B-32x1", "B-liger-32x1", "B-64x1", "B-32x1-cudnn"]
    rows, _ = bench.select_rows(names)
    assert [r.name for r in rows] == names
    settings = {r.name: bench.row_settings(bench.schema_defaults(bench.ROOT / "workflow/schemas/config.schema.yaml"), r)
                for r in rows}
    assert [(s["batch_size"], s["grad_accum"], s["gradient_checkpointing"], s["use_liger_kernel"])
            for s in settings.values()] == [(64, 1, True, False), (32, 1, True, False), (32, 1, True, True),
                                             (64, 1, True, False), (32, 1, True, False)]
    assert [r.cudnn for r in rows] == [False, False, False, False, True]


def test_profile_adds_the_top_ops_and_totals_of_a_few_untimed_steps(bench, shared_data, tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--strategyqa", str(shared_data), "--rows", "A-16x2", "B-32x1", "--examples", "8",
                "--warmup-examples", "4", "--profile", "B-32x1", "--profile-steps", "2", "--out", str(out)])
    entries = {e["row"]: e for e in json.loads(out.read_text())["training"]}
    assert "profile" not in entries["A-16x2"]  # only the rows --profile names
    entry = entries["B-32x1"]
    assert entry["status"] == "ok" and entry["examples"] == 8 and entry["seconds"] > 0
    profile = entry["profile"]
    assert profile["steps"] == 2 and profile["sorted_by"] == "self_cpu_ms" and profile["device_ms"] is None
    assert profile["wall_ms"] > 0 and profile["cpu_ms"] > 0
    ops = profile["ops"]
    assert 0 < len(ops) <= 25 and set(ops[0]) == {"name", "calls", "self_device_ms", "self_cpu_ms", "kind"}
    times = [op["self_cpu_ms"] for op in ops]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert any(op["name"] == "aten::mm" for op in ops)  # the LoRA matmuls were traced


def test_profile_names_only_training_rows(bench, shared_data, tmp_path):
    with pytest.raises(SystemExit):
        bench.parse_args(["--strategyqa", str(shared_data), "--profile", "B-nope", "--out", str(tmp_path / "b.json")])
    args = bench.parse_args(["--strategyqa", str(shared_data), "--profile", "--out", str(tmp_path / "b.json")])
    assert args.profile == [] and args.profile_steps == 3


def test_a_failing_profile_is_recorded_and_the_row_keeps_its_numbers(bench):
    from types import SimpleNamespace

    class Broken:
        args = SimpleNamespace(max_steps=-1)
        callbacks = []

        def add_callback(self, callback):
            self.callbacks.append(callback)

        def remove_callback(self, callback):
            self.callbacks.remove(callback)

        def train(self):
            raise RuntimeError("CUPTI unavailable")

    trainer = Broken()
    entry = bench.with_profile({"examples": 4, "examples_per_s": 2.0}, trainer, 3)
    assert entry == {"examples": 4, "examples_per_s": 2.0,
                     "profile": {"status": "failed: RuntimeError: CUPTI unavailable"}}
    assert trainer.args.max_steps == 4 and trainer.callbacks == []
    assert bench.with_profile({"examples": 4}, trainer, None) == {"examples": 4}
    line = bench.summary({"status": "ok", "examples_per_s": 2.0, "tokens_per_s": 9.0, "examples": 4, "seconds": 2.0,
                          "profile": entry["profile"]})
    assert line.endswith("; profile failed: RuntimeError: CUPTI unavailable")


def test_the_cudnn_row_loads_its_model_with_cudnn_attention_allowed(bench, shared_data, tmp_path):
    import torch

    before = torch.backends.cuda.cudnn_sdp_enabled()
    seen = []
    real = bench.build_peft_model

    def spy(manifest, student, *args, **kwargs):
        seen.append(student["cudnn_attention"])
        return real(manifest, student, *args, **kwargs)

    bench.build_peft_model = spy
    try:
        bench.main(["--tiny", "--strategyqa", str(shared_data), "--rows", "B-32x1-cudnn", "B-32x1", "--examples", "4",
                    "--warmup-examples", "4", "--out", str(tmp_path / "b.json")])
    finally:
        bench.build_peft_model = real
        torch.backends.cuda.enable_cudnn_sdp(before)
    assert seen[-2:] == [False, True]  # table order: B-32x1, then B-32x1-cudnn (the warm-up loads first)


def test_steady_rate_leaves_out_the_set_up_and_the_first_step(bench):
    import time
    from types import SimpleNamespace

    class Trainer:
        """Set-up 0.2 s, then three optimizer steps of 0.05 s, each followed by the callbacks' on_step_end."""

        def __init__(self):
            self.callbacks, self.state = [], SimpleNamespace(global_step=0)

        def add_callback(self, callback):
            self.callbacks.append(callback)

        def remove_callback(self, callback):
            self.callbacks.remove(callback)

        def train(self):
            time.sleep(0.2)
            for _ in range(3):
                time.sleep(0.05)
                self.state.global_step += 1
                for callback in self.callbacks:
                    callback.on_step_end(None, self.state, None)

    trainer = Trainer()
    timing = bench.timed_train(trainer)
    assert trainer.callbacks == []
    assert 0.09 <= timing.after_first_step < 0.2 <= 0.25 <= timing.seconds
    # 96 examples in 32-example steps: the steady rate counts the 64 of steps 2 and 3 over their time
    entry = bench.rates(96, 32, 960.0, bench.Timing(seconds=4.0, after_first_step=2.0))
    assert entry == {"seconds": 4.0, "examples_per_s": 24.0, "tokens_per_s": 240.0, "seconds_after_first_step": 2.0,
                     "steady_examples_per_s": 32.0}
    assert bench.rates(8, 32, 80.0, bench.Timing(seconds=1.0, after_first_step=None))["steady_examples_per_s"] is None
    line = bench.summary({"status": "ok", "examples_per_s": 24.0, "steady_examples_per_s": 32.0, "tokens_per_s": 240.0,
                          "examples": 96, "seconds": 4.0})
    assert line.startswith("24.00 examples/s (32.00 after the first step), 240 tokens/s")
