"""Chaos (issue 16): kill -9 the DAG three times, resume each time, end where an uninterrupted run ends.

On the tiny model, with the teacher behind a fault-injecting OpenAI-compatible server on
127.0.0.1: a reduced DAG (harvest, Phase A/B SFT, Phase C DPO, their scores, ablations,
attribution of Phase C, the report) runs once uninterrupted, then again in a fresh directory
where the whole Snakemake process group is killed with SIGKILL at three seeded random points:
once during the harvest, once during SFT (Phase A or B) and once during DPO. After each kill
the README's recovery command resumes it (``snakemake --unlock``, then the same command with
``--rerun-incomplete``). Then:

* the adapters' tensors are bit-identical to the uninterrupted run's, and so are their training
  logs but for ``wall_time_s`` and ``resumed_from`` (how long it took, whether it resumed);
* every parquet and CSV under results/ is equal, and so is results/report.md but for its wall
  times (the per-job wall-time section and the "wall time" cells of the training tables): the
  only things in it that two uninterrupted runs do not share either;
* no paid request was repeated: the fake server paid each distinct request at most once over the
  whole chaos run (see tests/chaos_helpers.py for why that is exactly the promise), and it paid
  the same requests as the uninterrupted run.

The seed (``CHAOS_SEED``, default 16) and the kill points are printed; so is the wall time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from chaos_helpers import (GatedOpenAIServer, KillableRun, cached_teacher_requests, complete_checkpoint,
                           run_snakemake)

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CHAOS_SEED", "16"))
TARGET = "results/report.md"
ADAPTERS = ["models/baseline_phaseA", "models/cot_phaseB", "models/dpo_phaseC/round1"]
UNEQUAL_LOG_KEYS = {"wall_time_s", "resumed_from"}
SFT = {"phase_a": "models/baseline_phaseA", "phase_b": "models/cot_phaseB"}


def write_config(workdir: Path, model_dir: Path, data_file: Path, base_url: str) -> None:
    """The tiny DAG of tests/test_workflow.py, reduced: one eval mode, one Phase C round, no judge."""
    config = {
        "data": {"source": str(data_file), "max_questions": 40, "train_samples": 10},
        "student": {"model": str(model_dir), "dtype": "float32"},
        "quantization": {"load_in_4bit": False},
        "eval": {"batch_size": 4, "cot_max_new_tokens": 16, "modes": ["draft"]},
        "report": {"primary_modes": {"phaseA": "draft", "phaseB": "draft", "phaseC": "draft"}},
        "drafts": {"max_new_tokens": 16, "batch_size": 8},
        "teacher": {"backend": "openai", "model": "gpt-4.1-nano-2025-04-14", "base_url": base_url,
                    "timeout_s": 5, "max_retries": 10, "concurrency": 2},
        # three epochs each, so that a kill a random moment after the first checkpoint lands in the job
        "phase_a": {"epochs": 3, "early_stopping_patience": 2, "batch_size": 4, "learning_rate": 1e-3},
        "phase_b": {"epochs": 3, "early_stopping_patience": 2, "batch_size": 4, "grad_accum": 1,
                    "learning_rate": 1e-3},
        "pairs": {"source": "teacher_vs_draft"},  # the random tiny model cannot make own-sample pairs
        "phase_c": {"schedule": [{"beta": 0.1, "loss": "sigmoid"}, {"beta": 0.1, "loss": "dr_drop_top"},
                                 {"beta": 0.1, "loss": "sigmoid"}],
                    "learning_rate": 1e-3, "batch_size": 4, "rounds": 1,
                    "guard": {"max_dev_drop_pp": 100.0, "yes_share_band": [0.0, 1.0]}},
        "attribution": {"models": ["phaseC"], "max_questions": 2, "steps": 8},
        "judge": {"backend": "none"},
        "resources": {"threads": 1, "mem_mb": 2000},
    }
    (workdir / "test.yaml").write_text(yaml.safe_dump(config))


# --- the three kills ---------------------------------------------------------------------------

def kill_during_harvest(run: KillableRun, server: GatedOpenAIServer, rng: random.Random) -> str:
    """After a random delay from the first teacher request: stop paying, let paid replies land, kill."""
    run.wait_until(lambda: len(server.snapshot()) > 0, "the first teacher request")
    delay = rng.uniform(0.1, 0.8)
    time.sleep(delay)
    server.hold()
    cache = run.workdir / "cache" / "teacher.sqlite"
    run.wait_until(lambda: server.in_flight() == 0 and cached_teacher_requests(cache) == len(server.paid()),
                   "the paid replies to reach the cache")
    during = not (run.workdir / "data" / "teacher_outputs.jsonl").exists()
    paid = len(server.paid())
    run.kill()
    server.release()
    assert during, "the harvest had finished before the kill: it is too short for the delay"
    return f"harvest: {delay:.2f} s after its first request, {paid} replies paid and cached"


def kill_after_checkpoint(run: KillableRun, work_dir: str, output: str, rng: random.Random,
                          what: str) -> tuple[str, bool]:
    """Once ``work_dir`` holds a complete epoch checkpoint, wait a random delay and kill.

    Returns the description and whether the job was still running (its output not yet there).
    """
    run.wait_until(lambda: complete_checkpoint(run.workdir / work_dir), f"a {what} checkpoint")
    delay = rng.uniform(0.0, 0.5)
    time.sleep(delay)
    checkpoints = sorted(p.name for p in (run.workdir / work_dir).glob("checkpoint-*"))
    during = not (run.workdir / output).exists()
    run.kill()
    return (f"{what}: {delay:.2f} s after its first complete checkpoint (then {', '.join(checkpoints) or 'none'}; "
            f"{'job still running' if during else 'job had finished'})"), during


def recover(workdir: Path) -> None:
    """The README's recovery command, part one (part two is the rerun with --rerun-incomplete)."""
    run_snakemake(workdir, "--unlock")
    assert not any((workdir / ".snakemake" / "locks").glob("*")), "the lock survived --unlock"


# --- comparisons -------------------------------------------------------------------------------

def comparable_report(text: str) -> str:
    """The report without its wall times: the per-job section, and the 'N s' cells of the training tables."""
    text = re.sub(r"^## Wall time per job$.*?(?=^## |\Z)", "## Wall time per job\n\n(masked)\n\n", text,
                  flags=re.S | re.M)
    return re.sub(r"(?<=\| )\d+ s(?= \|)", "<wall time>", text)


def comparable_log(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in UNEQUAL_LOG_KEYS}


def assert_same_adapter(chaos: Path, reference: Path) -> None:
    mine, theirs = load_file(chaos / "adapter_model.safetensors"), load_file(reference / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys(), chaos
    different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert not different, f"{chaos}: {len(different)} tensors differ from the uninterrupted run's, e.g. {different[0]}"
    for log in ["training_log.json", "dpo_log.json"]:
        if (reference / log).exists():
            assert comparable_log(chaos / log) == comparable_log(reference / log), chaos / log


def assert_same_results(chaos: Path, reference: Path) -> int:
    files = sorted(p.relative_to(reference) for p in (reference / "results").rglob("*")
                   if p.suffix in {".parquet", ".csv"})
    assert files and sorted(p.relative_to(chaos) for p in (chaos / "results").rglob("*")
                            if p.suffix in {".parquet", ".csv"}) == files
    for name in files:
        read = pd.read_parquet if name.suffix == ".parquet" else pd.read_csv
        pd.testing.assert_frame_equal(read(chaos / name), read(reference / name), check_exact=True, obj=str(name))
    return len(files)


def test_kill_9_three_times_then_resume_ends_as_an_uninterrupted_run(tmp_path, tiny_model_dir, shared_data,
                                                                     monkeypatch):
    started = time.time()
    rng = random.Random(SEED)
    print(f"\nchaos seed {SEED} (set CHAOS_SEED to change it)")
    key = "sk-test-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with GatedOpenAIServer(api_key=key, seed=3, rate_429=0.05, rate_5xx=0.1, rate_malformed=0.05,
                           delay_s=0.05) as server:
        reference, chaos = tmp_path / "reference", tmp_path / "chaos"
        for workdir in (reference, chaos):
            workdir.mkdir()
            write_config(workdir, tiny_model_dir, shared_data, server.base_url)

        run_snakemake(reference, "--cores", "2", TARGET)
        reference_paid = server.paid_counts()
        reference_s = time.time() - started
        print(f"uninterrupted run: {reference_s:.0f} s, {sum(reference_paid.values())} paid teacher requests")
        server.reset()

        kills = []
        run = KillableRun(chaos, "--cores", "2", TARGET)
        kills.append(kill_during_harvest(run, server, rng))
        recover(chaos)
        run = KillableRun(chaos, "--cores", "2", TARGET, "--rerun-incomplete")
        phase = rng.choice(sorted(SFT))
        text, sft_during = kill_after_checkpoint(run, f"models/checkpoints/{phase}", SFT[phase], rng, phase)
        kills.append(text)
        recover(chaos)
        run = KillableRun(chaos, "--cores", "2", TARGET, "--rerun-incomplete")
        text, dpo_during = kill_after_checkpoint(run, "models/checkpoints/phase_c_round1", "models/dpo_phaseC/round1",
                                                 rng, "phase_c")
        kills.append(text)
        recover(chaos)
        run_snakemake(chaos, "--cores", "2", TARGET, "--rerun-incomplete")
        for number, text in enumerate(kills, 1):
            print(f"kill -9 #{number}: {text}")
        chaos_paid = server.paid_counts()
        dropped = server.dropped

    # resumed where the kills left off (the logs of the rerun jobs say so)
    sft_log = json.loads((chaos / SFT[phase] / "training_log.json").read_text())
    dpo_log = json.loads((chaos / "models/dpo_phaseC/round1/dpo_log.json").read_text())
    print(f"{phase} resumed from {sft_log['resumed_from']}; phase C resumed from {dpo_log['resumed_from']}; "
          f"{dropped} requests held at the gate were dropped unpaid")
    if sft_during:
        assert sft_log["resumed_from"], f"{phase} was killed after a complete checkpoint but did not resume"
    if dpo_during:
        assert dpo_log["resumed_from"], "phase C was killed after a complete checkpoint but did not resume"

    # no paid request repeated, and the same requests paid as without kills
    repeated = {k: n for k, n in chaos_paid.items() if n > 1}
    assert not repeated, f"{len(repeated)} requests were paid more than once"
    assert set(chaos_paid) == set(reference_paid)

    for adapter in ADAPTERS:
        assert_same_adapter(chaos / adapter, reference / adapter)
    compared = assert_same_results(chaos, reference)
    report, expected = ((d / TARGET).read_text() for d in (chaos, reference))
    assert comparable_report(report) == comparable_report(expected)
    assert "<wall time>" in comparable_report(expected)  # the masking found what it masks
    wall = time.time() - started
    print(f"compared {len(ADAPTERS)} adapters, {compared} result tables and the report; "
          f"chaos test wall time {wall:.0f} s (uninterrupted run {reference_s:.0f} s)")
