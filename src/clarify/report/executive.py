"""The executive table: the seed's goals against what this run measured (met / not met / not measured).

Every number is restated from the sections below it (scores, ablations, attribution, judge).
"""

from __future__ import annotations

import pandas as pd

from ..attribution import DEFAULT_TOLERANCE, attribution_verdict
from ..stats import accuracy
from .evaluation import paired_test
from .format import format_p, interval, markdown_table, pct, pp
from .variants import STAGE_MODES, dev_pick


def _gain(frames, a, mode_a, b, mode_b):
    if (a, mode_a) not in frames or (b, mode_b) not in frames:
        return None
    diff, test = paired_test(frames, (a, mode_a), (b, mode_b))
    return 100 * diff, test["p_value"]


def executive_section(frames: dict, ablations: pd.DataFrame | None, attribution: pd.DataFrame | None,
                      judge: dict | None, modes: dict, targets: dict, attribution_settings: dict | None = None,
                      variants: list | None = None) -> str:
    """The seed's goals against what this run measured: met / not met / not measured.

    ``attribution``: :func:`clarify.attribution.summarize_attribution`'s table; its row is
    :func:`clarify.attribution.attribution_verdict` with ``attribution_settings``' (the config's
    ``attribution`` section) ``min_converged_share`` and ``tolerance``. ``variants``: the grid's
    :class:`~clarify.report.variants.VariantRun` list; a row for the one dev picks (no row without a grid).
    """
    alpha = targets["alpha"]
    rows = []

    def status(ok: bool) -> str:
        return "met" if ok else "not met"

    mode_a, mode_b, mode_c = modes["phaseA"], modes["phaseB"], modes["phaseC"]
    frame = frames.get(("phaseA", mode_a))
    target = f">= {pct(targets['phase_a_accuracy'])} ({mode_a})"
    if frame is None:
        rows.append(["Phase A (answer-only SFT)", target, "-", "not measured", f"no {mode_a}-mode scores"])
    else:
        acc = accuracy(frame["correct"])
        rows.append(["Phase A (answer-only SFT)", target,
                     f"{pct(acc.accuracy)} {interval(acc.ci_low, acc.ci_high)}",
                     status(acc.accuracy >= targets["phase_a_accuracy"]), f"n={acc.n}"])
    for phase, mode, key, label in [("phaseB", mode_b, "phase_b_gain_pp", "Phase B (CoT distillation)"),
                                    ("phaseC", mode_c, "phase_c_gain_pp", "Phase C (DPO)")]:
        target = f">= {targets[key]:+.0f} pp over Phase A ({mode} vs {mode_a})"
        result = _gain(frames, phase, mode, "phaseA", mode_a)
        if result is None:
            rows.append([label, target, "-", "not measured", "scores missing"])
            continue
        diff, p = result
        acc = accuracy(frames[(phase, mode)]["correct"])
        ok = diff >= targets[key] and p < alpha
        note = f"McNemar p={format_p(p)}"
        if diff >= targets[key] and not ok:
            note += f" (not significant at {alpha})"
        rows.append([label, target, f"{pp(diff)} ({pct(acc.accuracy)} {interval(acc.ci_low, acc.ci_high)})",
                     status(ok), note])
    phase_c_ablation = None if ablations is None else ablations[ablations["model"] == "phaseC"]
    if phase_c_ablation is None or phase_c_ablation.empty:
        rows.append(["No-draft ablation (Phase C)", f">= {targets['no_draft_drop_pp']:.0f} pp drop", "-",
                     "not measured", "no Phase C ablation"])
        rows.append(["Shuffled-draft ablation (Phase C)", "further drop", "-", "not measured", "no Phase C ablation"])
    else:
        no = phase_c_ablation[phase_c_ablation["condition"] == "no_draft"].iloc[0]
        sh = phase_c_ablation[phase_c_ablation["condition"] == "shuffled_draft"].iloc[0]
        rows.append(["No-draft ablation (Phase C)", f">= {targets['no_draft_drop_pp']:.0f} pp drop (draft mode)",
                     f"{pp(no['no_draft_drop_pp'])} drop", status(no["no_draft_drop_met"]),
                     f"McNemar p={format_p(no['p_value'])}"])
        rows.append(["Shuffled-draft ablation (Phase C)", "below no-draft", f"{pp(-sh['diff_vs_no_draft_pp'])} further drop",
                     status(sh["shuffled_drop_further_met"]), f"McNemar p={format_p(sh['p_vs_no_draft'])}"])
    phase_c_attr = None if attribution is None else attribution[attribution["model"] == "phaseC"]
    target = f">= {pct(targets['attribution_subquestions_share'])} on the sub-questions"
    if phase_c_attr is None or phase_c_attr.empty:
        rows.append(["Attribution (Phase C)", target, "-", "not measured", "Phase C not attributed"])
    else:
        r = phase_c_attr.iloc[0]
        settings = attribution_settings or {}
        verdict, evidence = attribution_verdict(r, targets["attribution_subquestions_share"],
                                                settings.get("min_converged_share", 0.8),
                                                settings.get("tolerance", DEFAULT_TOLERANCE))
        actual = "-" if verdict == "not measured" or pd.isna(r["subquestions_share"]) else (
            f"{pct(r['subquestions_share'])} {interval(r['subquestions_low'], r['subquestions_high'])}")
        rows.append(["Attribution (Phase C)", target, actual, verdict, evidence])
    if variants:
        rows.append(variant_pick_row(variants, frames, modes, targets))
    target = f"win-rate >= {pct(targets['judge_win_rate'])} (Phase C vs Phase A)"
    pair = None
    if judge is not None:
        pair = next((p for p in judge["pairs"] if (p["model_a"], p["model_b"]) == ("phaseC", "phaseA")), None)
    if pair is None:
        why = "no judge configured" if judge is None else "Phase C vs Phase A not judged"
        rows.append(["Judge: sub-question quality", target, "-", "not measured", why])
    else:
        ok = pair["win_rate"] >= targets["judge_win_rate"] and pair["p_value"] < alpha
        rows.append(["Judge: sub-question quality", target,
                     f"{pct(pair['win_rate'])} {interval(pair['ci_low'], pair['ci_high'])}", status(ok),
                     f"{judge['backend']}/{judge['model']}; sign test p={format_p(pair['p_value'])}; "
                     f"{pair.get('no_questions', 0)} of {pair['n']} questions without sub-questions on either side"])
    return "\n".join([
        "## Executive summary",
        "",
        f"The seed's goals against this run. A gain or a drop counts as met only when its point estimate meets the "
        f"target and the paired test agrees (p < {alpha}); intervals are 95%. Every number is restated from the "
        "sections below.",
        "",
        markdown_table(["goal", "target", "actual [95% CI]", "status", "evidence"], rows),
    ])


def variant_pick_row(variants: list, frames: dict, modes: dict, targets: dict) -> list:
    """The grid's goal: the variant dev picks beats Phase A on test by the target, McNemar p < alpha."""
    label = "Variant grid: dev's pick"
    target = f">= {targets['variant_gain_pp']:+.0f} pp over Phase A ({modes['phaseA']})"
    pick = dev_pick(variants)
    if pick is None:
        return [label, target, "-", "not measured", "no variant has a dev score"]
    mode = modes[STAGE_MODES[pick.until]]
    result = _gain(frames, pick.model, mode, "phaseA", modes["phaseA"])
    if result is None:
        return [label, target, "-", "not measured", f"{pick.name}: scores missing ({mode} or Phase A)"]
    diff, p = result
    acc = accuracy(frames[(pick.model, mode)]["correct"])
    ok = diff >= targets["variant_gain_pp"] and p < targets["alpha"]
    return [label, target, f"{pp(diff)} ({pct(acc.accuracy)} {interval(acc.ci_low, acc.ci_high)})",
            "met" if ok else "not met", f"{pick.name} ({mode}), picked on dev only; McNemar p={format_p(p)}"]
