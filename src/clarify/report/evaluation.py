"""The evaluation section: every scored model in every eval mode, and the paired comparisons.

Generic over what was scored: a new eval mode or a new model (``variant_<name>``) appears
as rows of the table without changes here.
"""

from __future__ import annotations

import pandas as pd

from ..evaluation import MODES
from ..stats import accuracy, mcnemar
from .format import display_name, format_accuracy, format_p, markdown_table, pct


#: The paired comparisons the report makes, where both sides were scored; each ``variant_*`` is
#: compared with Phase A and Phase B besides.
COMPARISONS = [("phaseA", "base"), ("phaseB", "phaseA"), ("phaseB", "base"), ("phaseC", "phaseA"),
               ("phaseC", "phaseB")]


def mode_order(modes) -> list[str]:
    """The eval modes present, in ``clarify.evaluation.MODES`` order; any other mode after them, by name."""
    known = list(MODES)
    return sorted(set(modes), key=lambda mode: (known.index(mode), "") if mode in known else (len(known), mode))


def comparisons(models) -> list[tuple[str, str]]:
    variants = [m for m in dict.fromkeys(models) if m.startswith("variant_")]
    return COMPARISONS + [(variant, base) for variant in variants for base in ("phaseA", "phaseB")]


def paired_test(frames: dict, a: tuple[str, str], b: tuple[str, str]) -> tuple[float, dict]:
    """Accuracy difference (a - b, a fraction) and McNemar's test of two score frames on the same questions."""
    fa, fb = frames[a], frames[b]
    if list(fa["qid"]) != list(fb["qid"]):
        raise ValueError(f"{a[0]}/{a[1]} and {b[0]}/{b[1]} were scored on different questions")
    return fa["correct"].mean() - fb["correct"].mean(), mcnemar(fa["correct"], fb["correct"])


def evaluation_section(frames: dict[tuple[str, str], pd.DataFrame]) -> str:
    """``frames``: (model, mode) -> scores (``inputs.load_scores``), rows in that order."""
    rows, token_notes = [], set()
    for (model, mode), frame in frames.items():
        acc = accuracy(frame["correct"])
        generated = "-"
        if "gen_tokens" in frame:
            generated = f"{frame['gen_tokens'].mean():.1f} tokens, {int(frame['hit_limit'].sum())} at limit"
        rows.append([display_name(model), mode, acc.n, format_accuracy(acc),
                     pct(frame["pred"].mean()), pct(frame["gold"].mean()), generated])
        ids = frame.attrs.get("answer_token_ids")
        if ids:
            token_notes.add(f"Yes={ids['yes']}, No={ids['no']}")
    split = next(iter(frames.values())).attrs.get("split", "?") if frames else "?"
    lines = [
        "## Evaluation",
        "",
        f"Answer-slot scoring on the {split} split: the prediction is whichever of log P(\" Yes\") and "
        "log P(\" No\") is larger at the answer position; intervals are Wilson 95%. "
        "\"predicted yes\" shows the class balance of the predictions beside the gold share: a model "
        "that answers one class to everything shows 0% or 100% there.",
        "",
        markdown_table(["model", "mode", "n", "accuracy [95% CI]", "predicted yes", "gold yes", "generated"], rows),
    ]
    if token_notes:
        lines += ["", "Answer token ids: " + "; ".join(sorted(token_notes)) + "."]
    paired = []
    modes = mode_order(mode for _, mode in frames)
    for a, b in comparisons(model for model, _ in frames):
        for mode in modes:
            if (a, mode) not in frames or (b, mode) not in frames:
                continue
            diff, test = paired_test(frames, (a, mode), (b, mode))
            paired.append([f"{display_name(a)} vs {display_name(b)}", mode,
                           f"{100 * diff:+.1f} pp", test["a_only"], test["b_only"], format_p(test["p_value"])])
    if paired:
        lines += ["", "Paired comparisons on the same questions (exact McNemar test; "
                  "\"only first right\" counts questions the first model gets right and the second wrong):", "",
                  markdown_table(["comparison", "mode", "difference", "only first right", "only second right",
                                  "p-value"], paired)]
    return "\n".join(lines)
