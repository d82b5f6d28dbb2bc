"""The tables of a grid run's README, from the files in its folder only (no GPU, no DAG).

Each run folder's ``tables.py`` calls :func:`main` on its own folder:

    PYTHONPATH=src python docs/results/qwen1.5b/grid_run3/tables.py > docs/results/qwen1.5b/grid_run3/tables.md

Test accuracy with Wilson 95% intervals and exact McNemar tests paired on the 687 test questions,
through the report's own statistics (clarify.stats); ablations through clarify.ablations;
attribution through clarify.attribution (the executive row's verdict included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clarify.ablations import ablation_table
from clarify.attribution import attribution_verdict, summarize_attribution
from clarify.stats import accuracy, mcnemar

MODES = ("direct", "draft", "cot", "cot_sc")


def load(here: Path, model: str, mode: str) -> pd.DataFrame | None:
    path = here / "scores" / model / f"{mode}.parquet"
    return pd.read_parquet(path).set_index("qid") if path.is_file() else None


def versus(frame: pd.DataFrame, other: pd.DataFrame) -> str:
    other = other.loc[frame.index]
    test = mcnemar(other["correct"], frame["correct"])
    return f"{test['b_only']}/{test['a_only']}, p={test['p_value']:.2g}"


def print_dev_table(here: Path, dev_logs: dict[str, str], phase_a: pd.DataFrame, phase_b: pd.DataFrame) -> None:
    print("\nDev accuracy in each model's primary mode (the only thing a choice may use) and its test result:\n")
    print("| model | dev mode | dev accuracy by epoch (kept) | test accuracy, primary mode | vs Phase A direct | vs Phase B cot |")
    print("|---|---|---|---|---|---|")
    for model, log_name in dev_logs.items():
        log = json.loads((here / "logs" / log_name).read_text())
        history = log["dev_history"]
        kept = log.get("kept_epoch", log.get("best_epoch"))
        mode = log["dev_mode"]
        frame = load(here, model, mode)
        by_epoch = " / ".join(f"{100 * h['dev_accuracy']:.1f}%" for h in history)
        print(f"| {model} | {mode} | {by_epoch} (epoch {kept}) | {accuracy(frame['correct'])}, "
              f"{100 * frame['pred'].mean():.1f}% yes | {versus(frame, phase_a)} | {versus(frame, phase_b)} |")


def main(here: Path, dev_logs: dict[str, str] | None = None) -> None:
    """Print every table of the run in ``here``; ``dev_logs`` (model -> its training or DPO log under
    ``logs/``) adds the table of dev accuracy in each model's primary mode against its test result."""
    models = sorted(p.name for p in (here / "scores").iterdir())
    models = [m for m in ("base", "phaseA", "phaseB", "phaseC") if m in models] + [m for m in models if m.startswith("variant_")]
    phase_a, phase_b = load(here, "phaseA", "direct"), load(here, "phaseB", "cot")
    print("| model | mode | test accuracy [95% CI] | predicted yes | at length limit | vs Phase A direct "
          "(only this / only A, McNemar p) | vs Phase B cot (only this / only B, p) |")
    print("|---|---|---|---|---|---|---|")
    for model in models:
        for mode in MODES:
            frame = load(here, model, mode)
            if frame is None:
                continue
            acc = accuracy(frame["correct"])
            limit = f"{int(frame['hit_limit'].sum())}" if "hit_limit" in frame else "-"
            print(f"| {model} | {mode} | {acc} | {100 * frame['pred'].mean():.1f}% | {limit} | "
                  f"{versus(frame, phase_a)} | {versus(frame, phase_b)} |")

    if dev_logs:
        print_dev_table(here, dev_logs, phase_a, phase_b)

    print("\nDrafts without a guess (variant_no_guess: the Phase B model, drafts of sub-questions only) "
          "against the same model with guess drafts (phaseB), paired:\n")
    print("| mode | guess drafts (phaseB) | no-guess drafts | only no-guess / only guess right, McNemar p |")
    print("|---|---|---|---|")
    for mode in MODES:
        guess, no_guess = load(here, "phaseB", mode), load(here, "variant_no_guess", mode)
        if guess is None or no_guess is None:
            continue
        print(f"| {mode} | {accuracy(guess['correct'])} | {accuracy(no_guess['correct'])} | {versus(no_guess, guess)} |")

    print("\nAblations (draft = the model's own draft; no_draft; shuffled_draft = another question's draft):\n")
    results = {p.stem: pd.read_parquet(p) for p in sorted((here / "ablations").glob("*.parquet"))}
    table = ablation_table(results)
    print(table.to_markdown(index=False, floatfmt=".3g"))

    print("\nAttribution (adaptive integrated gradients, 50 test questions per model):\n")
    frames = [pd.read_csv(p) for p in sorted((here / "attribution").glob("*.csv"))]
    if frames:
        summary = summarize_attribution(pd.concat(frames, ignore_index=True))
        print(summary.to_markdown(index=False, floatfmt=".3g"))
        for _, row in summary.iterrows():
            verdict, evidence = attribution_verdict(row, target_share=0.20, min_converged_share=0.8)
            print(f"\n- {row['model']}: {verdict} ({evidence})")

    print("\nTraining and Phase C dev histories (logs/):\n")
    for path in sorted((here / "logs").glob("*_log_*.json")):
        log = json.loads(path.read_text())
        history = log.get("dev_history") or log.get("epochs") or log.get("history")
        print(f"- {path.name}: kept {log.get('kept_epoch', log.get('best_epoch'))}; "
              f"{json.dumps(history)[:600] if history else '(no dev history)'}")
