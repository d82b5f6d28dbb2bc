"""Student drafts: a first guess with a brief reason and the clarifying sub-questions.

The same function drafts the train sample for the teacher harvest, the eval questions for
the ``draft`` mode, and later self-guided rounds.
"""

from __future__ import annotations

import logging

from .generation import generate
from .prompts import draft_cue, draft_request, parse_draft, parse_raw_draft

log = logging.getLogger(__name__)

#: A draft is two lines; generation stops where a third would start.
DRAFT_STOP = ["\n\n", "\nQuestion:", "\nAnswer:"]


def generate_drafts(model, tokenizer, records: list[dict], settings: dict, progress: bool = True) -> list[dict]:
    """Draft every record with the ``drafts`` settings; one row per record, in order.

    Row: qid, question, gold, raw (the full draft text, ``Answer:`` included), guess, reason,
    questions, parse_ok, n_tokens, hit_limit. Unparsed drafts are kept, flagged, and counted.
    """
    include_guess = settings.get("include_guess", True)  # false: sub-questions alone, no first guess
    outputs = generate(
        model, tokenizer, [draft_request(r["question"], include_guess) for r in records],
        max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
        do_sample=settings["do_sample"], temperature=settings["temperature"], seed=settings["seed"],
        stop=DRAFT_STOP, progress=progress, desc="drafts",
    )
    rows = []
    for record, out in zip(records, outputs):
        parsed = parse_draft(out["text"], include_guess)
        rows.append({
            "qid": record["qid"], "question": record["question"], "gold": bool(record["answer"]),
            "raw": draft_cue(include_guess) + out["text"], **parsed,
            "n_tokens": out["n_tokens"], "hit_limit": out["hit_limit"],
        })
    return rows


def draft_from_raw(raw: str) -> dict:
    """A draft row's parsed fields from its stored ``raw`` text (as the draft eval mode saves it)."""
    return {"raw": raw, **parse_raw_draft(raw)}


def draft_summary(rows: list[dict]) -> dict:
    """Counts for logs and the report: parsed, guesses, length-limit hits, mean tokens."""
    n = len(rows)
    guessed = [r for r in rows if r["guess"] is not None]
    return {
        "n": n,
        "parse_ok": sum(r["parse_ok"] for r in rows),
        "guess_yes": sum(1 for r in guessed if r["guess"]),
        "guess_no": sum(1 for r in guessed if not r["guess"]),
        "guess_correct": sum(1 for r in guessed if r["guess"] == r["gold"]),
        "hit_limit": sum(r["hit_limit"] for r in rows),
        "mean_tokens": sum(r["n_tokens"] for r in rows) / n if n else 0.0,
    }
