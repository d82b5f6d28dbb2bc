"""Report sections for the validation experiments and the executive summary.

Each section reads one artifact (results/ablations.csv, results/attribution.csv,
results/judge.csv + judge_summary.json, the score files, logs/benchmarks/*.tsv) and prints
its numbers as they are there; the executive table restates them against the seed's targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .report_format import format_p, interval, markdown_table, pct, pp
from .stats import accuracy, bootstrap_mean_ci, mcnemar

CONDITION_NAMES = {"draft": "own draft", "no_draft": "no draft", "shuffled_draft": "another question's draft"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _yes_no(flag) -> str:
    return "yes" if bool(flag) else "no"


# --- ablations ---------------------------------------------------------------------------------

def ablation_figure(table: pd.DataFrame, out_path: str | Path) -> None:
    plt = _pyplot()
    models = list(dict.fromkeys(table["model"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models)), 4))
    width = 0.8 / 3
    for k, condition in enumerate(CONDITION_NAMES):
        rows = table[table["condition"] == condition].set_index("model").loc[models]
        x = [i + (k - 1) * width for i in range(len(models))]
        acc = 100 * rows["accuracy"]
        err = [acc - 100 * rows["ci_low"], 100 * rows["ci_high"] - acc]
        ax.bar(x, acc, width, yerr=err, capsize=3, label=CONDITION_NAMES[condition])
    ax.set_xticks(range(len(models)), models)
    ax.set(ylabel="accuracy (%)", title="draft ablations (Wilson 95% intervals)", ylim=(0, 100))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def ablation_section(table: pd.DataFrame, figure: str | None, display) -> str:
    rows = []
    for _, r in table.iterrows():
        paired = "-" if r["condition"] == "draft" else (
            f"{pp(r['diff_vs_draft_pp'])} ({int(r['draft_only_right'])}/{int(r['condition_only_right'])}), "
            f"p={format_p(r['p_value'])}")
        rows.append([display(r["model"]), CONDITION_NAMES[r["condition"]], int(r["n"]),
                     f"{pct(r['accuracy'])} {interval(r['ci_low'], r['ci_high'])}", pct(r["predicted_yes"]), paired])
    criteria = []
    for model, rows_of in table.groupby("model", sort=False):
        first = rows_of.iloc[0]
        shuffled = rows_of[rows_of["condition"] == "shuffled_draft"].iloc[0]
        criteria.append([display(model), pp(first['no_draft_drop_pp']), _yes_no(first["no_draft_drop_met"]),
                         f"{pp(-shuffled['diff_vs_no_draft_pp'])}, p={format_p(shuffled['p_vs_no_draft'])}",
                         _yes_no(first["shuffled_drop_further_met"])])
    lines = [
        "## Draft ablations",
        "",
        "Each model's own drafts of the eval questions (from its draft-mode run), scored at the answer slot with the "
        "draft, with no draft (the same template, question only), and with another question's draft (a seeded "
        "derangement: never the question's own). Paired column: difference from the own-draft condition "
        "(questions only the own draft got right / only this condition got right) and its exact McNemar p-value. "
        "Source: `results/ablations.csv`.",
        "",
        markdown_table(["model", "context", "n", "accuracy [95% CI]", "predicted yes", "vs own draft"], rows),
        "",
        "The seed's criteria: the own draft beats no draft by at least the target with McNemar p below alpha; "
        "another question's draft is worse still than no draft (paired, p below alpha).",
        "",
        markdown_table(["model", "drop without draft", "drop >= target, significant", "further drop with a wrong draft",
                "further drop significant"], criteria),
    ]
    if figure:
        lines += ["", f"![draft ablations]({figure})"]
    return "\n".join(lines)


# --- attribution -------------------------------------------------------------------------------

def attribution_summary(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per model: mean shares of |attribution| with a bootstrap interval of the draft share, and
    the completeness errors."""
    rows = []
    for model, frame in table.groupby("model", sort=False):
        low, high = bootstrap_mean_ci(frame["draft_share"], seed=seed)
        rows.append({"model": model, "n": len(frame), "draft_share": frame["draft_share"].mean(),
                     "draft_low": low, "draft_high": high, "question_share": frame["question_share"].mean(),
                     "template_share": frame["template_share"].mean(),
                     "max_error": frame["completeness_error"].max(),
                     "mean_relative_error": frame["relative_error"].mean(),
                     "mean_draft_tokens": frame["draft_tokens"].mean()})
    return pd.DataFrame(rows)


def attribution_figure(summary: pd.DataFrame, out_path: str | Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(summary)), 4))
    bottom = [0.0] * len(summary)
    for column, label in [("draft_share", "draft"), ("question_share", "question"), ("template_share", "template")]:
        values = list(100 * summary[column])
        ax.bar(list(summary["model"]), values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(ylabel="share of |attribution| (%)", title="integrated gradients of the answer margin", ylim=(0, 100))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def attribution_section(summary: pd.DataFrame, settings: dict, figure: str | None, display) -> str:
    rows = [[display(r["model"]), int(r["n"]), f"{r['mean_draft_tokens']:.1f}",
             f"{pct(r['draft_share'])} {interval(r['draft_low'], r['draft_high'])}", pct(r["question_share"]),
             pct(r["template_share"]), f"{r['max_error']:.2e}", f"{r['mean_relative_error']:.2e}"]
            for _, r in summary.iterrows()]
    lines = [
        "## Attribution: integrated gradients",
        "",
        f"Integrated gradients of the answer margin log P(\" Yes\") - log P(\" No\") over the input embeddings of "
        f"each model's draft-mode prompt (its own draft), {settings['steps']} {settings.get('method', 'gausslegendre')} "
        f"points from a {settings['baseline']} baseline"
        f"{' (the first token kept at its embedding)' if settings.get('keep_first_token') else ''}, in float32, "
        "on the same seeded subset of eval questions for every model. Shares of "
        "absolute attribution on the draft's tokens, the question's tokens and the template (\"Question:\", "
        "\"Answer:\", newlines, special tokens); the draft share's interval is a bootstrap over questions. "
        "Completeness error: |sum of attributions - (margin - baseline margin)| per question (max, and mean relative "
        "to the margin difference). Source: `results/attribution.csv`.",
        "",
        markdown_table(["model", "questions", "draft tokens (mean)", "draft share [95% CI]", "question share",
                "template share", "completeness error (max)", "relative error (mean)"], rows),
    ]
    if figure:
        lines += ["", f"![attribution shares]({figure})"]
    return "\n".join(lines)


# --- judge -------------------------------------------------------------------------------------

def judge_section(summary: dict | None, verdicts: pd.DataFrame | None, display) -> str:
    if summary is None:
        return "\n".join(["## Judge: quality of the clarifying sub-questions", "",
                          "No judge configured (`judge.backend: none`): the sub-questions were not judged, and the "
                          "judge criterion is not measured."])
    rows = []
    for pair in summary["pairs"]:
        rows.append([f"{display(pair['model_a'])} vs {display(pair['model_b'])}", pair["n"], pair["wins_a"],
                     pair["wins_b"], pair["ties"], pair.get("no_questions", "-"), pair["position_flips"],
                     pair["invalid"], f"{pct(pair['win_rate'])} {interval(pair['ci_low'], pair['ci_high'])}",
                     format_p(pair["p_value"])])
    spend = summary.get("spend_this_run", {})
    made = spend.get("requests_made", 0)
    lines = [
        "## Judge: quality of the clarifying sub-questions",
        "",
        f"Judge `{summary['backend']} / {summary['model']}` compares the sub-questions of two models' drafts of the "
        "same question, once in each order (Set 1 / Set 2), to cancel position bias: a model wins a question when "
        "the two orders together favour it; ties, contradicting orders and unparsable replies count half. Win-rate "
        "of the first model with a bootstrap interval over questions; p-value: exact sign test on wins vs losses. "
        "Questions where neither draft has a sub-question are ties without a call. Source: `results/judge.csv`.",
        "",
        markdown_table(["comparison", "questions", "first wins", "second wins", "ties", "ties: no questions",
                "position flips", "invalid replies", "win-rate of first [95% CI]", "p-value"], rows),
        "",
        f"Judge spend this run: {made} calls made, {spend.get('cache_hits', 0)} from the cache, "
        f"{spend.get('total_tokens', 0)} tokens, ${spend.get('cost_usd', 0.0):.4f}.",
    ]
    if verdicts is not None and "cost_usd" in verdicts:
        lines[-1] += (f" All judge responses behind this table: {int(verdicts['prompt_tokens'].sum())} prompt + "
                      f"{int(verdicts['completion_tokens'].sum())} completion tokens, "
                      f"${verdicts['cost_usd'].sum():.4f} when they were made.")
    return "\n".join(lines)


# --- executive summary -------------------------------------------------------------------------

def _gain(frames, a, mode_a, b, mode_b):
    fa, fb = frames.get((a, mode_a)), frames.get((b, mode_b))
    if fa is None or fb is None:
        return None
    if list(fa["qid"]) != list(fb["qid"]):
        raise ValueError(f"{a}/{mode_a} and {b}/{mode_b} were scored on different questions")
    test = mcnemar(fa["correct"], fb["correct"])
    return 100 * (fa["correct"].mean() - fb["correct"].mean()), test["p_value"]


def executive_section(frames: dict, ablations: pd.DataFrame | None, attribution: pd.DataFrame | None,
                      judge: dict | None, modes: dict, targets: dict) -> str:
    """The seed's goals against what this run measured: met / not met / not measured."""
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
    target = f">= {pct(targets['attribution_draft_share'])} on draft tokens"
    if phase_c_attr is None or phase_c_attr.empty:
        rows.append(["Attribution (Phase C)", target, "-", "not measured", "Phase C not attributed"])
    else:
        r = phase_c_attr.iloc[0]
        tolerance = targets["attribution_max_relative_error"]
        evidence = f"n={int(r['n'])}; completeness error {r['mean_relative_error']:.1%} of the margin change (mean)"
        if r["mean_relative_error"] > tolerance:
            # Attributions that do not add up to the margin change are not a measurement of it.
            verdict = "not measured"
            evidence += f" > {tolerance:.0%}: raise attribution.steps"
        else:
            verdict = status(r["draft_share"] >= targets["attribution_draft_share"])
        rows.append(["Attribution (Phase C)", target, f"{pct(r['draft_share'])} {interval(r['draft_low'], r['draft_high'])}",
                     verdict, evidence])
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


# --- wall time ---------------------------------------------------------------------------------

def walltime_section(benchmark_dir: str | Path) -> str:
    rows, total = [], 0.0
    for path in sorted(Path(benchmark_dir).glob("*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        if frame.empty:
            continue
        seconds = float(frame["s"].iloc[-1])
        total += seconds
        rss = frame["max_rss"].iloc[-1] if "max_rss" in frame else float("nan")
        rows.append([path.stem, f"{seconds:.1f}", "-" if pd.isna(rss) or rss == "-" else f"{float(rss):.0f}"])
    if not rows:
        return "## Wall time\n\nNo benchmark files found."
    return "\n".join([
        "## Wall time per job",
        "",
        f"From Snakemake's `benchmark:` files (`logs/benchmarks/`), as they were when this report was rendered; a "
        f"job that did not rerun keeps the time of its last run. Sum: {total:.0f} s.",
        "",
        markdown_table(["job", "wall time (s)", "max RSS (MB)"], rows),
    ])


def load_judge(summary_path: str | Path | None, verdicts_path: str | Path | None):
    if not summary_path:
        return None, None
    summary = json.loads(Path(summary_path).read_text())
    verdicts = pd.read_csv(verdicts_path) if verdicts_path else None
    return summary, verdicts
