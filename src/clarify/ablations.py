"""Draft ablations (DESIGN section 5; the seed's validation experiments 1 and 2).

For one model and its own drafts of the eval questions (made by the ``draft`` eval mode and
stored in its score file), the answer slot is scored in three conditions that differ only in
the context between the question and the answer cue:

* ``draft``: the question's own draft (the draft eval mode's prompt, rescored here);
* ``no_draft``: nothing: the same answer-slot template with the question only;
* ``shuffled_draft``: another question's draft, by a seeded derangement, so no question is
  ever shown its own draft.

If the model reads its draft, ``no_draft`` costs accuracy (the seed's criterion: a drop of at
least 3 points) and a wrong question's draft costs more (``shuffled_draft`` below ``no_draft``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .drafts import draft_from_raw
from .errors import InputError
from .prompts import draft_context
from .scoring import score_questions
from .stats import accuracy, mcnemar

CONDITIONS = ("draft", "no_draft", "shuffled_draft")


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (Sattolo's algorithm: one n-cycle)."""
    if n < 2:
        raise InputError(f"shuffled_draft needs at least 2 questions to pair each with another's draft, got {n}")
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: Sattolo, never leaves an element in place
        order[i], order[j] = order[j], order[i]
    return order


def ablation_contexts(drafts: list[dict], condition: str, seed: int) -> tuple[list[str | None], list[int | None]]:
    """Per question: the context shown in ``condition`` and the index of the draft it came from."""
    n = len(drafts)
    if condition == "draft":
        return [draft_context(d) for d in drafts], list(range(n))
    if condition == "no_draft":
        return [None] * n, [None] * n
    if condition == "shuffled_draft":
        source = derangement(n, seed)
        return [draft_context(drafts[int(j)]) for j in source], [int(j) for j in source]
    raise InputError(f"unknown ablation condition {condition!r} (known: {', '.join(CONDITIONS)})")


def run_ablation(model, tokenizer, records: list[dict], draft_scores: pd.DataFrame, *, seed: int,
                 batch_size: int, progress: bool = True) -> pd.DataFrame:
    """Score ``records`` in every condition; one row per question and condition.

    ``draft_scores`` is the model's draft-mode score frame (qid and the ``generated`` draft
    text); it must cover exactly ``records``, in order.
    """
    if list(draft_scores["qid"]) != [r["qid"] for r in records]:
        raise InputError("ablation: the draft-mode scores do not cover the eval questions in order "
                         "(rerun the draft-mode score job)")
    drafts = [draft_from_raw(raw) for raw in draft_scores["generated"]]
    frames = []
    for condition in CONDITIONS:
        contexts, source = ablation_contexts(drafts, condition, seed)
        frame = score_questions(model, tokenizer, records, contexts, batch_size=batch_size, progress=progress,
                                desc=f"ablation {condition}")
        frame.insert(1, "condition", condition)
        frame["draft_from"] = [records[j]["qid"] if j is not None else None for j in source]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def ablation_table(results: dict[str, pd.DataFrame], min_drop_pp: float = 3.0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per model and condition: accuracy with its Wilson interval, the paired difference
    from ``draft`` with its McNemar p-value, and the seed's two criteria (repeated on each of the
    model's rows). A criterion is met when the point estimate meets it *and* the paired test says
    the drop is real (p < ``alpha``): no_draft at least ``min_drop_pp`` below draft; shuffled_draft
    below no_draft."""
    rows = []
    for model, frame in results.items():
        by = {c: frame[frame["condition"] == c].reset_index(drop=True) for c in CONDITIONS}
        acc = {c: accuracy(by[c]["correct"]) for c in CONDITIONS}
        drop_no = 100 * (acc["draft"].accuracy - acc["no_draft"].accuracy)
        p_no = mcnemar(by["draft"]["correct"], by["no_draft"]["correct"])["p_value"]
        drop_further = 100 * (acc["no_draft"].accuracy - acc["shuffled_draft"].accuracy)
        p_further = mcnemar(by["no_draft"]["correct"], by["shuffled_draft"]["correct"])["p_value"]
        for condition in CONDITIONS:
            a = acc[condition]
            row = {"model": model, "condition": condition, "n": a.n, "correct": a.correct,
                   "accuracy": a.accuracy, "ci_low": a.ci_low, "ci_high": a.ci_high,
                   "predicted_yes": float(by[condition]["pred"].mean())}
            if list(by[condition]["qid"]) != list(by["draft"]["qid"]):
                raise ValueError(f"{model}: {condition} and draft were scored on different questions")
            test = mcnemar(by["draft"]["correct"], by[condition]["correct"])
            row.update(diff_vs_draft_pp=100 * (a.accuracy - acc["draft"].accuracy),
                       draft_only_right=test["a_only"], condition_only_right=test["b_only"],
                       p_value=test["p_value"])
            if condition == "shuffled_draft":  # "drops further": below no_draft, paired
                further = mcnemar(by["no_draft"]["correct"], by[condition]["correct"])
                row.update(diff_vs_no_draft_pp=100 * (a.accuracy - acc["no_draft"].accuracy),
                           p_vs_no_draft=further["p_value"])
            else:
                row.update(diff_vs_no_draft_pp=float("nan"), p_vs_no_draft=float("nan"))
            row["no_draft_drop_pp"] = drop_no
            row["no_draft_drop_met"] = bool(drop_no >= min_drop_pp and p_no < alpha)
            row["shuffled_drop_further_met"] = bool(drop_further > 0 and p_further < alpha)
            rows.append(row)
    return pd.DataFrame(rows)
