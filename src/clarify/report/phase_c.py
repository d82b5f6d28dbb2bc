"""The Phase C sections: each preference-optimisation round, and the loss forms compared."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..stats import accuracy
from .evaluation import mode_order
from .format import format_accuracy, markdown_table, skipped_steps


def dpo_section(logs: list[dict], figure: str | None) -> str:
    rows = []
    for number, log in enumerate(logs, start=1):
        steps = log["steps"]
        epochs = {}
        for step in steps:
            epochs.setdefault(int(-(-step["epoch"] // 1)), []).append(step)
        schedule = ", ".join(f"{e['loss']} b={e['beta']}" for e in log["schedule"])
        first, last = steps[0], steps[-1]
        dropped = sum(s["dropped_pairs"] or 0 for s in steps)
        rows.append([number, log["pairs"], schedule, log["micro_batch_pairs"], len(steps),
                     f"{first['margin']:.4f} -> {last['margin']:.4f}",
                     f"{first['implicit_accuracy']:.2f} -> {last['implicit_accuracy']:.2f}",
                     int(dropped), skipped_steps(log), f"{log['wall_time_s']:.0f} s"])
    lines = [
        "## Phase C: preference optimisation",
        "",
        "Reference model: the Phase B policy (a frozen copy of its adapter); each round continues the last. "
        "Margins and accuracies are those of the first and last logged steps.",
        "",
        markdown_table(["round", "pairs", "schedule (per epoch)", "pairs per micro-batch", "steps", "reward margin",
                        "implicit accuracy", "pair-steps dropped (Dr)", "steps skipped (NaN/inf)", "wall time"], rows),
    ]
    if figure:
        lines += ["", f"![DPO curves]({figure})"]
    return "\n".join(lines)


def loss_comparison_section(variants: list[str | Path], frames: dict[tuple[str, str], pd.DataFrame]) -> str:
    """One row per loss form trained from Phase B (``phase_c.compare_losses``); a column per eval mode."""
    modes = mode_order(mode for _, mode in frames)
    rows = []
    for path in variants:
        log = json.loads((Path(path) / "dpo_log.json").read_text())
        loss = Path(path).name.removeprefix("compare_")
        steps = log["steps"]
        row = [loss, ", ".join(str(e["beta"]) for e in log["schedule"]),
               f"{steps[0]['margin']:.4f} -> {steps[-1]['margin']:.4f}",
               f"{steps[-1]['implicit_accuracy']:.2f}", int(sum(s["dropped_pairs"] or 0 for s in steps))]
        for mode in modes:
            frame = frames.get((f"phaseC_{loss}", mode))
            row.append(format_accuracy(accuracy(frame["correct"])) if frame is not None else "-")
        row.append(f"{log['wall_time_s']:.0f} s")
        rows.append(row)
    return "\n".join([
        "### Loss forms compared",
        "",
        "Each row trains one round from Phase B on the same pairs with the schedule's betas and that loss in "
        "every epoch; accuracies on the eval split with Wilson 95% intervals.",
        "",
        markdown_table(["loss", "betas", "reward margin", "final implicit accuracy", "pair-steps dropped",
                        *[f"accuracy ({m})" for m in modes], "wall time"], rows),
    ])
