"""An LLM judge of the clarifying sub-questions in two models' drafts (pairwise, both orders).

For each question the judge sees the yes/no question and two sets of sub-questions, shown as
"Set 1" and "Set 2" (never the model names, never the gold answer), and says which set would
help more to answer the question correctly, ending its reply with ``Verdict: 1``,
``Verdict: 2`` or ``Verdict: tie``. Every question is judged twice, once with model A's set
first (order ``ab``) and once with model B's first (order ``ba``), and the two verdicts are
combined, so a judge that always prefers one position gives a tie rather than a win:

* each order scores 1 for A, 0.5 for a tie or an unreadable reply, 0 for B;
* a question's ``score_a`` is the mean of its two orders; the outcome is ``"a"`` above 0.5,
  ``"b"`` below, ``"tie"`` at 0.5;
* ``position_flip`` marks questions where the judge picked the same position both times (and
  so named a different model each time).

The judge is a :class:`clarify.teacher.Teacher` client built with ``role="judge"``
(:func:`make_judge`): its calls go through the SQLite call cache (a rerun pays nothing) and
count against the judge's own spend caps (``judge.max_total_tokens``, ``judge.max_cost_usd``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .parsing import parse_verdict
from .prompts import judge_prompt
from .stats import bootstrap_mean_ci
from .teacher import Request, Teacher, judge_backends, make_teacher

log = logging.getLogger(__name__)
ORDERS = ("ab", "ba")
VERDICTS = ("a", "b", "tie", "invalid", "skipped")
SCORE = {"a": 1.0, "tie": 0.5, "invalid": 0.5, "skipped": 0.5, "b": 0.0}
TEXT_CHARS = 500  # raw judge replies kept in the frame (truncated)



def _clean(questions) -> list[str]:
    return [" ".join(str(q).split()) for q in (questions or []) if str(q).strip()]


# --- judging pairs -----------------------------------------------------------------------------

def _to_model(verdict: str, order: str) -> str:
    """A positional verdict mapped back to the model: order "ab" shows A as Set 1."""
    if verdict in ("first", "second"):
        return order[0] if verdict == "first" else order[1]
    return verdict  # "tie" / "invalid"


def _outcome(score: float) -> str:
    return "a" if score > 0.5 else "b" if score < 0.5 else "tie"


def judge_pairs(judge: Teacher, items: list[dict], progress: bool = True) -> pd.DataFrame:
    """Judge model A's sub-questions against model B's for each item, in both orders.

    ``items`` are dicts with ``qid``, ``question``, ``questions_a`` and ``questions_b`` (lists
    of strings). Two requests per item (``kind="judge"``, sample 0); an item where both lists
    are empty makes no call and is a tie with reason ``"no_questions"``. Returns one row per
    item: qid, verdict_ab, verdict_ba, score_a, outcome, position_flip, reason, text_ab, text_ba.
    """
    requests: list[Request] = []
    slots: list[int | None] = []  # index of the item's first request, None when skipped
    for item in items:
        a, b = _clean(item.get("questions_a")), _clean(item.get("questions_b"))
        if not a and not b:
            slots.append(None)
            continue
        slots.append(len(requests))
        record = {"qid": item["qid"]}
        requests.append(Request(record=record, prompt=judge_prompt(item["question"], a, b),
                                sample_index=0, kind="judge"))
        requests.append(Request(record=record, prompt=judge_prompt(item["question"], b, a),
                                sample_index=0, kind="judge"))
    completions = judge.complete_many(requests, progress=progress) if requests else []

    rows = []
    for item, slot in zip(items, slots):
        if slot is None:
            rows.append({"qid": item["qid"], "verdict_ab": "skipped", "verdict_ba": "skipped", "score_a": 0.5,
                         "outcome": "tie", "position_flip": False, "reason": "no_questions",
                         "text_ab": "", "text_ba": "", "prompt_tokens": 0, "completion_tokens": 0,
                         "cost_usd": 0.0})
            continue
        pair = completions[slot:slot + 2]
        texts = [pair[0].text or "", pair[1].text or ""]
        verdicts = [_to_model(parse_verdict(text), order) for text, order in zip(texts, ORDERS)]
        score = (SCORE[verdicts[0]] + SCORE[verdicts[1]]) / 2
        rows.append({"qid": item["qid"], "verdict_ab": verdicts[0], "verdict_ba": verdicts[1],
                     "score_a": score, "outcome": _outcome(score),
                     "position_flip": set(verdicts) == {"a", "b"}, "reason": "",
                     "text_ab": texts[0][:TEXT_CHARS], "text_ba": texts[1][:TEXT_CHARS],
                     # what the two calls cost when they were made (a cached reply reports its original call)
                     "prompt_tokens": sum(c.prompt_tokens for c in pair),
                     "completion_tokens": sum(c.completion_tokens for c in pair),
                     "cost_usd": sum(c.cost_usd for c in pair)})
    columns = ["qid", "verdict_ab", "verdict_ba", "score_a", "outcome", "position_flip", "reason",
               "text_ab", "text_ba", "prompt_tokens", "completion_tokens", "cost_usd"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"score_a": float, "position_flip": bool})


# --- summary -----------------------------------------------------------------------------------

def summarize(frame: pd.DataFrame, seed: int = 0, resamples: int = 10000) -> dict:
    """Counts, A's win rate with a 95% bootstrap interval, and an exact sign test.

    ``win_rate`` is the mean ``score_a`` over questions (0.5 = no difference); ``invalid``
    counts orders whose reply had no readable verdict; ``p_value`` is the two-sided exact
    binomial (sign) test of wins_a against wins_b, ties excluded (1.0 when every question ties).
    """
    from scipy.stats import binomtest

    n = int(len(frame))
    outcome = frame["outcome"] if n else pd.Series([], dtype=object)
    wins_a, wins_b = int((outcome == "a").sum()), int((outcome == "b").sum())
    invalid = int((frame["verdict_ab"] == "invalid").sum() + (frame["verdict_ba"] == "invalid").sum()) if n else 0
    scores = frame["score_a"].to_numpy(dtype=float) if n else np.empty(0)
    if n:
        win_rate = float(scores.mean())
        ci_low, ci_high = bootstrap_mean_ci(scores, seed=seed, resamples=int(resamples))
    else:
        win_rate = ci_low = ci_high = float("nan")
    decided = wins_a + wins_b
    p_value = float(binomtest(wins_a, decided, 0.5, alternative="two-sided").pvalue) if decided else 1.0
    return {
        "n": n,
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": int((outcome == "tie").sum()),
        "no_questions": int((frame["reason"] == "no_questions").sum()) if n else 0,
        "invalid": invalid,
        "position_flips": int(frame["position_flip"].astype(bool).sum()) if n else 0,
        "win_rate": win_rate,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": p_value,
        "seed": int(seed),
        "resamples": int(resamples),
    }


# --- the client --------------------------------------------------------------------------------

def make_judge(settings: dict, cache_path=None) -> Teacher:
    """The judge client for ``settings`` (the ``teacher`` section's keys: backend, model,
    base_url, temperature, max_tokens, concurrency, timeout_s, max_retries, cache,
    max_total_tokens, max_cost_usd, prices). ``cache_path`` defaults to ``settings["cache"]``
    (``False``: no cache). Backends: those of the registry that can judge (not gold).
    Every reply is final (an unreadable verdict is a tie), so cached replies are never re-asked."""
    backend = settings.get("backend")
    allowed = judge_backends()
    if backend not in allowed:
        raise InputError(f"judge.backend: {backend!r} is not one of {', '.join(allowed)}")
    return make_teacher(settings, cache_path, role="judge", reask_invalid=False)


# --- the rule: every configured pair of models -------------------------------------------------

def draft_questions(path, max_questions=None) -> pd.DataFrame:
    """``qid`` and the clarifying ``questions`` of each scored draft in ``path`` (a scores
    parquet with a ``generated`` column), the first ``max_questions`` rows (None = all)."""
    from .drafts import draft_from_raw

    frame = pd.read_parquet(path)
    if max_questions:
        frame = frame.iloc[:max_questions]
    return pd.DataFrame({"qid": frame["qid"], "questions": [draft_from_raw(raw)["questions"]
                                                           for raw in frame["generated"]]})


def resolve_model(settings: dict, student_dir) -> dict:
    """``settings`` with ``model: student`` (hf) replaced by the prepared student's folder."""
    from .models import read_manifest

    settings = dict(settings)
    if settings["backend"] == "hf" and settings["model"] == "student":
        settings["model"] = read_manifest(Path(student_dir) / "manifest.json")["path"]
    return settings


def judge_models(judge: Teacher, questions: dict[str, str], drafts: dict[str, str], pairs,
                 max_questions=None, seed: int = 0, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Judge every pair ``[A, B]`` of ``pairs``: ``drafts`` maps a model name to its drafts
    parquet, ``questions`` a qid to its text. Returns (all verdict rows with ``model_a`` and
    ``model_b`` first, one summary per pair)."""
    frames, summaries = [], []
    for first, second in pairs:
        a = draft_questions(drafts[first], max_questions)
        b = draft_questions(drafts[second], max_questions)
        if list(a["qid"]) != list(b["qid"]):
            raise InputError(f"judge: {first} and {second} drafted different questions")
        items = [{"qid": qid, "question": questions[qid], "questions_a": qa, "questions_b": qb}
                 for qid, qa, qb in zip(a["qid"], a["questions"], b["questions"])]
        frame = judge_pairs(judge, items, progress=progress)
        frame.insert(0, "model_a", first)
        frame.insert(1, "model_b", second)
        frames.append(frame)
        summary = {"model_a": first, "model_b": second, **summarize(frame, seed=seed)}
        summaries.append(summary)
        log.info("judge %s vs %s: %s", first, second, summary)
    return pd.concat(frames, ignore_index=True), summaries
