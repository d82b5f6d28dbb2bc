"""The variant grid section: one row per variant (dev accuracy, test accuracy, McNemar against
Phase A and Phase B), the variant dev picks, and the self-training accounting.

A variant is judged in the primary mode of the phase it ends with (``report.primary_modes``:
Phase B's for ``until: phase_b``, Phase C's for ``until: phase_c``); its dev accuracy is the one
its own training kept (Phase B: ``training_log.json`` at ``best_epoch``; Phase C:
``dpo_log.json`` at ``kept_epoch``). The pick reads the dev column only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..stats import accuracy
from .evaluation import paired_test
from .format import format_accuracy, format_p, interval, markdown_table, pct, pp

#: ``until`` -> the report.primary_modes key it is judged in; the log key of its kept epoch; its name
STAGE_MODES = {"phase_b": "phaseB", "phase_c": "phaseC"}
KEPT_EPOCH = {"phase_b": "best_epoch", "phase_c": "kept_epoch"}
STAGE_NAMES = {"phase_b": "Phase B", "phase_c": "Phase C"}


@dataclass(frozen=True)
class VariantRun:
    """One variant of the grid as the report sees it: its recipe and what its training logged."""

    name: str
    until: str                        # phase_b | phase_c (clarify.variants.Variant.until)
    overrides: dict                   # the variant's config overrides, section -> settings
    log: dict | None                  # training_log.json (phase_b) or dpo_log.json (phase_c); None: not trained
    self_train: list[dict] = field(default_factory=list)  # self-training round accountings, round 1 first

    @property
    def model(self) -> str:
        return f"variant_{self.name}"


def recipe(overrides: dict) -> str:
    """``pairs.source=teacher_vs_draft; phase_c.schedule=seed``: the overrides, flattened."""
    def flat(prefix, value):
        if isinstance(value, dict):
            return [item for key, sub in value.items() for item in flat(f"{prefix}.{key}", sub)]
        return [f"{prefix}={value}"]
    return "; ".join(item for section, value in overrides.items() for item in flat(section, value))


def kept_dev(run: VariantRun) -> dict | None:
    """The dev-history entry of the epoch the variant's training kept (with the log's dev mode)."""
    if run.log is None:
        return None
    epoch = run.log[KEPT_EPOCH[run.until]]
    entry = next((h for h in run.log["dev_history"] if h["epoch"] == epoch), None)
    return None if entry is None else {**entry, "dev_mode": run.log.get("dev_mode", "?")}


def dev_pick(runs: list[VariantRun]) -> VariantRun | None:
    """The variant with the highest kept dev accuracy; ties go to the earlier one in ``variants:``."""
    best, best_acc = None, None
    for run in runs:
        dev = kept_dev(run)
        if dev is not None and (best_acc is None or dev["dev_accuracy"] > best_acc):
            best, best_acc = run, dev["dev_accuracy"]
    return best


def _versus(frames, model, mode, other, other_mode) -> tuple[str, float | None, float | None]:
    if (model, mode) not in frames or (other, other_mode) not in frames:
        return "not scored", None, None
    diff, test = paired_test(frames, (model, mode), (other, other_mode))
    return f"{pp(100 * diff)}, p={format_p(test['p_value'])}", 100 * diff, test["p_value"]


def variant_section(runs: list[VariantRun], frames: dict[tuple[str, str], pd.DataFrame], modes: dict,
                    targets: dict) -> str:
    """The variant table, the dev pick with its test result, and self-training accounting."""
    mode_a, mode_b = modes["phaseA"], modes["phaseB"]
    rows, missing = [], []
    for run in runs:
        mode = modes[STAGE_MODES[run.until]]
        dev = kept_dev(run)
        dev_text = "not trained" if dev is None else (
            f"{pct(dev['dev_accuracy'])} {interval(*dev['dev_ci'])} ({dev['dev_mode']}, epoch {dev['epoch']})")
        frame = frames.get((run.model, mode))
        if frame is None:
            missing.append(run.name)
        test_text = "not scored" if frame is None else format_accuracy(accuracy(frame["correct"]))
        yes_text = "-" if frame is None else pct(frame["pred"].mean())
        rows.append([run.name, STAGE_NAMES[run.until], recipe(run.overrides),
                     dev_text, f"{test_text} ({mode})", yes_text,
                     _versus(frames, run.model, mode, "phaseA", mode_a)[0],
                     _versus(frames, run.model, mode, "phaseB", mode_b)[0]])
    lines = [
        "## The variant grid",
        "",
        "Each variant (config `variants:`) is the main recipe with its overrides, trained as its own model and judged "
        f"in the primary mode of the phase it ends with (Phase B: {mode_b}, Phase C: {modes['phaseC']}). Dev accuracy "
        "is the epoch its own training kept (the only number a choice may use); test accuracy with a Wilson 95% "
        f"interval; McNemar exact p against Phase A ({mode_a}) and Phase B ({mode_b}) on the same test questions.",
        "",
        markdown_table(["variant", "trains until", "overrides", "dev accuracy [95% CI] (kept epoch)",
                        "test accuracy [95% CI] (mode)", "predicted yes", f"vs Phase A ({mode_a})",
                        f"vs Phase B ({mode_b})"], rows),
    ]
    if missing:
        lines += ["", f"Not scored in their primary mode: {', '.join(missing)}."]
    lines += ["", pick_sentence(runs, frames, modes, targets)]
    self_train = [run for run in runs if run.self_train]
    if self_train:
        lines += ["", self_training_table(self_train)]
    return "\n".join(lines)


def pick_sentence(runs: list[VariantRun], frames, modes: dict, targets: dict) -> str:
    pick = dev_pick(runs)
    if pick is None:
        return "No variant has a dev score: dev picks none."
    dev = kept_dev(pick)
    mode = modes[STAGE_MODES[pick.until]]
    with_dev = sum(kept_dev(run) is not None for run in runs)
    text = (f"**Dev picks `{pick.name}`**: the highest dev accuracy of the {with_dev} of {len(runs)} variants with a dev "
            f"score ({pct(dev['dev_accuracy'])}, {dev['dev_mode']} mode; ties go to the earlier variant in "
            "`variants:`). The choice used the dev split only; the test columns were not consulted.")
    frame = frames.get((pick.model, mode))
    if frame is None:
        return text + f" Its test result is not measured: `{pick.model}` has no {mode}-mode scores."
    versus, diff, p = _versus(frames, pick.model, mode, "phaseA", modes["phaseA"])
    text += f" On test: {format_accuracy(accuracy(frame['correct']))} ({mode}), {versus} against Phase A ({modes['phaseA']})"
    if diff is None:
        return text + "; Phase A was not scored in its primary mode, so the goal is not measured."
    goal, alpha = targets["variant_gain_pp"], targets["alpha"]
    reached = diff >= goal and p < alpha
    return text + (f". The goal ({goal:+g} pp over Phase A with p < {alpha}) was "
                   f"{'reached' if reached else '**not reached**'}.")


def self_training_table(runs: list[VariantRun]) -> str:
    rows = []
    for run in runs:
        for number, acc in enumerate(run.self_train, start=1):
            reasons = ", ".join(f"{k} {v}" for k, v in acc.get("drop_reasons", {}).items()) or "-"
            rows.append([run.name, number, acc["questions"], acc["samples"], acc["correct_samples"], acc["kept_own"],
                         acc["own_rationalized"], acc["teacher"], f"{acc['dropped']} ({reasons})", acc["n"],
                         f"{acc['yes']} / {acc['no']}"])
    return "\n".join([
        "Self-training rounds (per round: the round's model samples its own reasonings on the train questions; a "
        "correct one is kept per question, else the configured fallback; source: "
        "`data/variants/{name}/self_train_round{r}_accounting.json`):",
        "",
        markdown_table(["variant", "round", "questions", "samples", "correct samples", "kept own", "rationalised",
                        "teacher's", "dropped (why)", "corpus rows", "yes / no"], rows),
    ])
