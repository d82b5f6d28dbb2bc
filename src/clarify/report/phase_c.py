"""The Phase C sections: each preference-optimisation run (main rounds and the grid's Phase C
variants), dev selection and the guard, and the preference pairs."""

from __future__ import annotations

import json

from .format import device, interval, markdown_table, pct, peak_memory, skipped_steps


def dpo_section(logs: list[dict], figure: str | None, variants: dict[str, dict] | None = None) -> str:
    """One row per Phase C run: the main rounds (``logs``, round 1 first), then the grid's Phase C
    variants (``variants``: name -> ``dpo_log.json``), e.g. one variant per loss form."""
    rows = []
    runs = [(f"round {number}", log) for number, log in enumerate(logs, start=1)]
    runs += [(f"variant {name}", log) for name, log in (variants or {}).items()]
    for label, log in runs:
        steps = log["steps"]
        epochs = {}
        for step in steps:
            epochs.setdefault(int(-(-step["epoch"] // 1)), []).append(step)
        schedule = ", ".join(f"{e['loss']} b={e['beta']}" for e in log["schedule"])
        first, last = steps[0], steps[-1]
        dropped = sum(s["dropped_pairs"] or 0 for s in steps)
        rows.append([label, log["pairs"], schedule, log["micro_batch_pairs"], len(steps),
                     f"{first['margin']:.4f} -> {last['margin']:.4f}",
                     f"{first['implicit_accuracy']:.2f} -> {last['implicit_accuracy']:.2f}",
                     int(dropped), skipped_steps(log), device(log), f"{log['wall_time_s']:.0f} s",
                     peak_memory(log)])
    lines = [
        "## Phase C: preference optimisation",
        "",
        "Reference model: the Phase B policy (a frozen copy of its adapter); each round continues the last, "
        "a variant starts from its own (or the main) Phase B. Margins and accuracies are those of the first and "
        "last logged steps.",
        "",
        markdown_table(["run", "pairs", "schedule (per epoch)", "pairs per micro-batch", "steps", "reward margin",
                        "implicit accuracy", "pair-steps dropped (Dr)", "steps skipped (NaN/inf)", "device",
                        "wall time", "peak GPU memory"], rows),
    ]
    if figure:
        lines += ["", f"![DPO curves]({figure})"]
    return "\n".join(lines)


# --- dev selection and the collapse guard ---------------------------------------------------------

def dev_selection_section(runs: dict[str, dict]) -> str:
    """Per Phase C run (label -> its ``dpo_log.json``): the dev score of every epoch (epoch 0 = the
    Phase B adapter it starts from), the epoch kept and why the run stopped."""
    rows, outcomes = [], []
    for label, log in runs.items():
        kept = log["kept_epoch"]
        for h in log["dev_history"]:
            rows.append([label, h["epoch"], f"{pct(h['dev_accuracy'])} {interval(*h['dev_ci'])}", h.get("dev_n", "-"),
                         pct(h["dev_pred_yes"]), h["guard"] or "-", "kept" if h["epoch"] == kept else ""])
        planned = len(log["schedule"])
        stop = log["stop_reason"] or f"ran all {planned} epochs"
        outcomes.append(f"- {label}: kept epoch {kept}{' (the adapter it started from)' if kept == 0 else ''} "
                        f"of {log['epochs_run']} run ({planned} planned); stop: {stop}.")
    guards = {json.dumps(log.get("guard"), sort_keys=True): log.get("guard") for log in runs.values()}
    guard_lines = []
    for guard in guards.values():
        if guard:
            low, high = guard["yes_share_band"]
            guard_lines.append(f"a run stops when dev accuracy falls more than {guard['max_dev_drop_pp']:g} pp below "
                               f"its best so far or the predicted-yes share leaves {pct(low)}-{pct(high)}")
    mode = ", ".join(sorted({log["dev_mode"] for log in runs.values()}))
    lines = [
        "### Phase C: dev selection and the collapse guard",
        "",
        f"Every Phase C run scores the dev split in its primary mode ({mode}) before its first epoch (epoch 0 = "
        "the adapter it starts from: Phase B, or the previous round's) and after every epoch, and keeps the best "
        f"epoch, so it is never below its start on dev. The guard: {'; '.join(guard_lines) or 'not configured'}. Source: each run's `dpo_log.json`.",
        "",
        markdown_table(["run", "epoch", "dev accuracy [95% CI]", "dev n", "predicted yes", "guard", "kept"], rows),
        "",
        *outcomes,
    ]
    return "\n".join(lines)


# --- preference pairs accounting ------------------------------------------------------------------

def _class_mix(acc: dict) -> str:
    return f"{acc['yes']} / {acc['no']} ({pct(acc['yes_frac'])} yes)"


def _own_samples_row(acc: dict) -> list:
    return [acc["questions"], acc["samples"], f"{acc['correct_samples']} ({pct(acc['correct_samples'] / acc['samples'])})"
            if acc["samples"] else "0", acc["only_correct"], acc["only_wrong"], acc["questions_paired"],
            acc["pairs_before_balance"], acc["pairs"], _class_mix(acc), acc.get("pairs_chosen_hit_limit", "-")]


def _teacher_vs_draft_row(acc: dict) -> list:
    counts = lambda d: ", ".join(f"{k} {v}" for k, v in sorted((d or {}).items())) or "-"  # noqa: E731
    return [acc["n"], counts(acc.get("sources")), counts(acc.get("rejected_from")), _class_mix(acc)]


#: Per pair source (``pairs.source``): the table header and one accounting file's row.
PAIR_ACCOUNTING = {
    "own_samples": (["pairs of", "questions", "samples", "correct samples", "only correct", "only wrong",
                     "questions paired", "pairs before balance", "pairs", "class mix (yes / no)",
                     "chosen at length limit"], _own_samples_row),
    "teacher_vs_draft": (["pairs of", "pairs", "chosen from (teacher rows)", "rejected from", "class mix (yes / no)"],
                         _teacher_vs_draft_row),
}

PAIR_SOURCE_TEXT = {
    "own_samples": "k sampled reasonings of the Phase B model per train question, scored at the answer slot; a correct "
                   "one is chosen, a wrong one rejected. Questions with only correct or only wrong samples give no pair.",
    "teacher_vs_draft": "the seed's pairs: chosen = the teacher's text, rejected = the student's draft (or the teacher's "
                        "text with the answer flipped).",
}


def pairs_accounting_section(accountings: dict[str, dict]) -> str:
    """Per Phase C run's pairs (label -> ``pairs_accounting.json``), one table per pair source."""
    by_source: dict[str, list] = {}
    for label, acc in accountings.items():
        source = acc.get("source")
        if source not in PAIR_ACCOUNTING:
            raise ValueError(f"pairs accounting of {label}: unknown source {source!r} (known: {list(PAIR_ACCOUNTING)})")
        by_source.setdefault(source, []).append([label, *PAIR_ACCOUNTING[source][1](acc)])
    lines = ["### Preference pairs", "", "Every train question is accounted for; pairs are label-balanced by the "
             "chosen side's answer. Source: `pairs_accounting.json` of each run."]
    for source, rows in by_source.items():
        lines += ["", f"`{source}`: {PAIR_SOURCE_TEXT[source]}", "", markdown_table(PAIR_ACCOUNTING[source][0], rows)]
    return "\n".join(lines)
