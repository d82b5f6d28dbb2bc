"""Report sections for the validation experiments: draft ablations, attribution, the judge.

Each section reads one artifact (results/ablations.csv, results/attribution.csv,
results/judge.csv + judge_summary.json) and prints its numbers as they are there.
"""

from __future__ import annotations

import pandas as pd

from ..attribution import DEFAULT_TOLERANCE, summarize_attribution
from .format import format_p, interval, markdown_table, pct, pp

CONDITION_NAMES = {"draft": "own draft", "no_draft": "no draft", "shuffled_draft": "another question's draft"}


def _yes_no(flag) -> str:
    return "yes" if bool(flag) else "no"


# --- ablations ---------------------------------------------------------------------------------

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
    """Per model: :func:`clarify.attribution.summarize_attribution` (convergence, error, shares
    over the converged questions)."""
    return summarize_attribution(table, seed=seed)


def _share(value: float) -> str:
    return "-" if pd.isna(value) else pct(value)


def _share_ci(value: float, low: float, high: float) -> str:
    return "-" if pd.isna(value) else f"{pct(value)} {interval(low, high)}"


def attribution_section(summary: pd.DataFrame, settings: dict, figure: str | None, display) -> str:
    rows = [[display(r["model"]), int(r["n"]), int(r["n_small_change"]),
             f"{int(r['n_converged'])}/{int(r['n_measured'])} ({_share(r['converged_share'])})",
             _share(r["error_share"]), f"{r['median_steps']:.0f} / {int(r['max_steps_used'])}",
             _share_ci(r["draft_share"], r["draft_low"], r["draft_high"]), _share(r["guess_share"]),
             _share_ci(r["subquestions_share"], r["subquestions_low"], r["subquestions_high"]),
             _share(r["draft_unsplit_share"]), _share(r["question_share"]), _share(r["template_share"])]
            for _, r in summary.iterrows()]
    tolerance = settings.get("tolerance", DEFAULT_TOLERANCE)
    lines = [
        "## Attribution: integrated gradients",
        "",
        f"Integrated gradients of the answer margin log P(\" Yes\") - log P(\" No\") over the input embeddings of "
        f"each model's draft-mode prompt (its own draft), {settings.get('method', 'gausslegendre')} quadrature from a "
        f"{settings['baseline']} baseline"
        f"{' (the first token kept at its embedding)' if settings.get('keep_first_token') else ''}, in float32, on "
        f"the same seeded subset of eval questions for every model. Adaptive points: each question starts at "
        f"{settings['steps']} and doubles until |sum of attributions - margin change| is within {tolerance:.0%} of the "
        f"change (or {settings.get('max_steps', settings['steps'])} points); such a question converged. Questions whose "
        f"margin changes by less than {settings.get('min_margin_change', 0)} along the path are counted apart. Error: "
        "the summed completeness error over the summed margin change (questions that moved). The shares of absolute "
        "attribution are means over the converged questions only: the draft split into its first guess (with its "
        "reason) and its clarifying sub-questions (\"unsplit\": a draft that did not parse into the two), the "
        "question, the template; they sum to 100%. Intervals: bootstrap over questions. Source: "
        "`results/attribution.csv`.",
        "",
        markdown_table(["model", "questions", "small change", "converged", "error", "points (median / max)",
                        "draft share [95% CI]", "guess", "sub-questions [95% CI]", "draft unsplit", "question",
                        "template"], rows),
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
