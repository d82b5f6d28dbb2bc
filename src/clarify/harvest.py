"""Harvest teacher reasoning: majority vote, STaR rationalisation, full accounting.

:func:`harvest` asks the teacher ``settings["samples"]`` times per question (one
``complete_many`` call for all of them), takes the majority vote of the valid final answers,
and handles the questions whose vote disagrees with gold (or is invalid) the way
``settings["on_disagreement"]`` says:

* ``rationalize`` (STaR): one more ``complete_many`` call with ``rationalize_samples`` hinted
  requests per such question; the first rationale that parses, ends in the gold answer and
  does not quote the hint is kept (status ``rationalized``), otherwise the question is
  ``dropped`` with the reason of the closest attempt (:data:`DROP_REASONS`).
* ``drop``: ``dropped`` with reason ``disagreed`` (valid but wrong vote) or ``invalid``.
* ``keep_gold``: ``kept_gold``: the gold answer with the steps of the wrong majority's first
  parsed sample (``steps_from`` says which sample the steps came from).

A sample that stays invalid after the retries (no final answer or no steps) fails the harvest
with a count (:class:`InvalidTeacherSamples`) unless ``accept_invalid_fraction`` allows that
share; what was harvested stays cached, and the API backend asks again for exactly the invalid
ones on the next run.

No question is ever dropped silently: every input question has exactly one output row, and
:func:`accounting` counts every row by gold label and status (the seed lost 31.5% of its
questions to teacher disagreement, almost all "Yes", and never said so; DESIGN section 6.2).
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from clarify.errors import InputError
from clarify.prompts import rationalization_prompt, teacher_prompt
from clarify.teacher import Request

log = logging.getLogger(__name__)

ON_DISAGREEMENT = ("rationalize", "drop", "keep_gold")

#: Every status a teacher_outputs row can have.
STATUSES = ("agreed", "rationalized", "kept_gold", "dropped")

#: Statuses whose question goes into the Track B corpus and the preference pairs (when the
#: row has steps).
KEPT_STATUSES = ("agreed", "rationalized", "kept_gold")

#: Every drop reason: ``disagreed``/``invalid`` under ``drop``; under ``rationalize`` the
#: reason of the closest rejected rationale (quotes_hint > wrong > unparsed).
DROP_REASONS = ("disagreed", "invalid", "rationale_quotes_hint", "rationale_wrong",
                "rationale_unparsed")

#: Phrases that show a rationale leaned on the hint instead of reasoning to the answer.
#: Matched case-insensitively against the whole response. The teacher format's own
#: "Based on this analysis, the answer is: **YES**" must not match.
HINT_PATTERNS = tuple(re.compile(pattern, re.IGNORECASE) for pattern in (
    r"\bhint(s|ed)?\b",
    r"\b(given|provided|supplied|expected|stated)\s+(correct\s+|final\s+)?answer\b",
    r"\b(was|were|been|being|am|are|is)\s+(told|given|provided|shown)\b[^.\n]{0,12}\banswer\b",
    r"\btold\s+(that\s+)?the\s+(correct\s+)?answer\b",
    r"\bcorrect\s+answer\s+(is|was|being|of)\b",
    r"\b(answer|solution)\s+(was|is|has\s+been)\s+(given|provided|supplied)\b",
    r"\bas\s+instructed\b",
))


def quotes_hint(text: str) -> bool:
    """True when ``text`` mentions the hint or the given answer (see :data:`HINT_PATTERNS`)."""
    return any(pattern.search(text or "") for pattern in HINT_PATTERNS)


def majority_vote(finals: list[bool | None]) -> dict:
    """``{"yes", "no", "invalid", "majority"}``: majority of the valid finals.

    ``majority`` is True/False, or None ("invalid") on a tie or when no final is valid.
    """
    yes = sum(1 for final in finals if final is True)
    no = sum(1 for final in finals if final is False)
    majority = True if yes > no else False if no > yes else None
    return {"yes": yes, "no": no, "invalid": len(finals) - yes - no, "majority": majority}


def _parses(completion) -> bool:
    return bool(completion.parse_ok) and completion.final is not None


def _clean_steps(steps) -> list[str]:
    return [" ".join(str(step).split()) for step in (steps or []) if str(step).strip()]


def _sample_entry(kind: str, sample_index: int, completion) -> dict:
    return {
        "kind": kind,
        "sample_index": sample_index,
        "text": completion.text,
        "final": completion.final,
        "parse_ok": bool(completion.parse_ok),
        "prompt_tokens": int(completion.prompt_tokens),
        "completion_tokens": int(completion.completion_tokens),
        "cost_usd": float(completion.cost_usd),
        # the latency of the call that made the response, in the canonical form the cache
        # keeps, so a harvest served from the cache writes the same bytes; whether it came
        # from the cache goes to the log only
        "latency_s": float(completion.latency_s),
    }


def _totals(samples: list[dict]) -> dict:
    prompt = sum(sample["prompt_tokens"] for sample in samples)
    completion = sum(sample["completion_tokens"] for sample in samples)
    return {
        "samples": len(samples),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
        "cost_usd": round(sum(sample["cost_usd"] for sample in samples), 8),
    }


def _rationale_verdict(completion, gold: bool) -> str | None:
    """None when the rationale is acceptable, else why it is rejected."""
    if not _parses(completion):
        return "rationale_unparsed"
    if completion.final != gold:
        return "rationale_wrong"
    if quotes_hint(completion.text):
        return "rationale_quotes_hint"
    return None


class InvalidTeacherSamples(InputError):
    """Too many teacher samples stayed invalid after the retries; the valid ones are cached."""


def check_invalid(teacher, completions: list, settings: dict) -> None:
    """Fail with a one-line count when the invalid share of ``completions`` (replies with no
    final answer or no steps, malformed bodies) is above ``teacher.accept_invalid_fraction``."""
    invalid = sum(1 for completion in completions if not completion.parse_ok)
    allowed = float(settings.get("accept_invalid_fraction", 0.0))
    if not invalid or invalid <= allowed * len(completions):
        if invalid:
            log.warning("teacher: %d of %d samples are invalid; accepted (teacher.accept_invalid_fraction "
                        "= %g)", invalid, len(completions), allowed)
        return
    again = ("a rerun asks again for exactly those (the valid ones are cached)"
             if getattr(teacher, "reask_invalid", False) else
             "this backend answers the same again, so raise teacher.max_tokens or change the model")
    raise InvalidTeacherSamples(
        f"teacher: {invalid} of {len(completions)} samples are invalid after the retries (no final "
        f"answer or no steps in the reply); {again}; or set teacher.accept_invalid_fraction >= "
        f"{invalid / len(completions):.4f} to keep them as invalid votes"
    )


def _check_inputs(records: list[dict], drafts: dict | None, settings: dict) -> None:
    mode = settings.get("on_disagreement")
    if mode not in ON_DISAGREEMENT:
        raise InputError(f"config: teacher.on_disagreement: {mode!r} is not one of {list(ON_DISAGREEMENT)}")
    fraction = settings.get("accept_invalid_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise InputError(f"config: teacher.accept_invalid_fraction: expected a number in [0, 1], got {fraction!r}")
    for key in ("samples", "rationalize_samples"):
        if not isinstance(settings.get(key), int) or settings[key] < 1:
            raise InputError(f"config: teacher.{key}: expected an integer >= 1, got {settings.get(key)!r}")
    seen = set()
    for index, record in enumerate(records):
        for field in ("qid", "question", "answer"):
            if field not in record:
                raise InputError(f"harvest input: row {index}: field {field!r}: missing")
        if record["qid"] in seen:
            raise InputError(f"harvest input: row {index} (qid {record['qid']}): duplicate qid")
        seen.add(record["qid"])
        if drafts is not None and record["qid"] not in drafts:
            raise InputError(
                f"student drafts: no draft for qid {record['qid']} (row {index} of the train sample)"
            )


def _complete(teacher, requests: list, progress: bool) -> list:
    if not requests:
        return []
    completions = teacher.complete_many(requests, progress=progress)
    if len(completions) != len(requests):
        raise RuntimeError(
            f"teacher returned {len(completions)} completions for {len(requests)} requests"
        )
    return completions


def harvest(records: list[dict], drafts: dict[str, dict] | None, teacher, settings: dict,
            progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Ask the teacher about every question; return (teacher_outputs rows, accounting rows).

    ``records`` are question records (qid, question, answer = gold bool, ...); ``drafts``
    maps qid -> student draft (``None`` = no drafts at all; a dict missing a qid is an
    error); ``settings`` is the config's ``teacher`` section. Exactly two ``complete_many``
    calls at most: the votes, then (``rationalize`` only) the hinted retries.
    """
    _check_inputs(records, drafts, settings)
    n_samples = settings["samples"]
    mode = settings["on_disagreement"]

    def draft_of(record):
        return None if drafts is None else drafts[record["qid"]]

    # Round 1: the votes.
    requests = [
        Request(record=record, prompt=teacher_prompt(record["question"], draft_of(record)),
                sample_index=index, kind="teach")
        for record in records for index in range(n_samples)
    ]
    completions = _complete(teacher, requests, progress)
    check_invalid(teacher, completions, settings)
    by_qid = {record["qid"]: completions[i * n_samples:(i + 1) * n_samples]
              for i, record in enumerate(records)}

    votes = {qid: majority_vote([c.final for c in comps]) for qid, comps in by_qid.items()}
    disagreeing = [record for record in records
                   if votes[record["qid"]]["majority"] != bool(record["answer"])]

    # Round 2 (rationalize only): hinted retries for every disagreeing question.
    hinted: dict[str, list] = {}
    if mode == "rationalize" and disagreeing:
        n_hinted = settings["rationalize_samples"]
        retry = [
            Request(record=record,
                    prompt=rationalization_prompt(record["question"], draft_of(record),
                                                  bool(record["answer"])),
                    sample_index=n_samples + j, kind="rationalize", hint=bool(record["answer"]))
            for record in disagreeing for j in range(n_hinted)
        ]
        answers = _complete(teacher, retry, progress)
        check_invalid(teacher, answers, settings)
        for i, record in enumerate(disagreeing):
            hinted[record["qid"]] = answers[i * n_hinted:(i + 1) * n_hinted]

    backend = getattr(teacher, "backend", None)
    model = getattr(teacher, "model", None)
    rows = []
    for record in records:
        qid, gold = record["qid"], bool(record["answer"])
        comps = by_qid[qid]
        vote = votes[qid]
        samples = [_sample_entry("teach", i, c) for i, c in enumerate(comps)]
        status, reason, steps, final_text, steps_from, steps_index = "dropped", None, [], None, None, None

        def choose(index, completion, source):
            return _clean_steps(completion.steps), completion.text, source, index

        if vote["majority"] == gold:
            status = "agreed"
            picked = next(((i, c) for i, c in enumerate(comps) if _parses(c) and c.final == gold), None)
            if picked is None:  # the vote counted it, but its steps did not parse
                picked = next((i, c) for i, c in enumerate(comps) if c.final == gold)
            steps, final_text, steps_from, steps_index = choose(*picked, "agreeing_sample")
        elif mode == "drop":
            reason = "invalid" if vote["majority"] is None else "disagreed"
        elif mode == "keep_gold":
            status = "kept_gold"
            if vote["majority"] is not None:
                picked = next(((i, c) for i, c in enumerate(comps)
                               if _parses(c) and c.final == vote["majority"]), None)
                source = "wrong_majority_sample"
            else:  # no majority: prefer steps that ended in gold, then any parsed sample
                picked = next(((i, c) for i, c in enumerate(comps) if _parses(c) and c.final == gold),
                              None)
                source = "gold_sample"
                if picked is None:
                    picked = next(((i, c) for i, c in enumerate(comps) if _parses(c)), None)
                    source = "wrong_sample"
            if picked is not None:
                steps, final_text, steps_from, steps_index = choose(*picked, source)
        else:  # rationalize
            verdicts = []
            for j, completion in enumerate(hinted[qid]):
                index = n_samples + j
                samples.append(_sample_entry("rationalize", index, completion))
                verdict = _rationale_verdict(completion, gold)
                verdicts.append(verdict)
                if verdict is None and status == "dropped":
                    status = "rationalized"
                    steps, final_text, steps_from, steps_index = choose(index, completion, "rationale")
            if status == "dropped":
                reason = next(r for r in ("rationale_quotes_hint", "rationale_wrong", "rationale_unparsed")
                              if r in verdicts)

        rows.append({
            "qid": qid,
            "question": record["question"],
            "gold": gold,
            "status": status,
            "drop_reason": reason,
            "vote": vote,
            "steps": steps if status != "dropped" else [],
            "steps_from": steps_from,
            "steps_sample_index": steps_index,
            "final_text": final_text,
            "samples": samples,
            "backend": backend if backend is not None else (comps[0].backend if comps else None),
            "model": model if model is not None else (comps[0].model if comps else None),
            "totals": _totals(samples),
        })

    table = accounting(rows)
    log.info("teacher harvest (%s, %d samples/question, on_disagreement=%s):\n%s",
             model, n_samples, mode, format_accounting(table))
    return rows, table


# --- accounting --------------------------------------------------------------------------------

ACCOUNTING_COLUMNS = (
    "label", "total", "agreed", "rationalized", "kept_gold", "dropped", "invalid_vote",
    *(f"drop_{reason}" for reason in DROP_REASONS),
    "samples", "invalid_samples", "tokens", "cost_usd",
)


def accounting(rows: list[dict]) -> list[dict]:
    """One row per gold label (``yes``, ``no``) and one for ``all``: counts by status.

    ``invalid_vote`` counts questions whose vote was invalid (each is also in a status);
    ``drop_<reason>`` splits ``dropped``; ``samples``/``invalid_samples`` count teacher
    responses (votes and rationalisations), ``tokens``/``cost_usd`` what they cost.
    """
    table = []
    for label, keep in (("yes", lambda r: r["gold"]), ("no", lambda r: not r["gold"]),
                        ("all", lambda r: True)):
        group = [row for row in rows if keep(row)]
        status = Counter(row["status"] for row in group)
        reasons = Counter(row["drop_reason"] for row in group if row["status"] == "dropped")
        samples = [sample for row in group for sample in row["samples"]]
        entry = {"label": label, "total": len(group)}
        entry.update({name: status.get(name, 0) for name in STATUSES})
        entry["invalid_vote"] = sum(1 for row in group if row["vote"]["majority"] is None)
        entry.update({f"drop_{reason}": reasons.get(reason, 0) for reason in DROP_REASONS})
        entry["samples"] = len(samples)
        entry["invalid_samples"] = sum(1 for sample in samples if sample["final"] is None)
        entry["tokens"] = sum(s["prompt_tokens"] + s["completion_tokens"] for s in samples)
        entry["cost_usd"] = round(sum(s["cost_usd"] for s in samples), 6)
        table.append({column: entry[column] for column in ACCOUNTING_COLUMNS})
    return table


def format_accounting(rows: list[dict]) -> str:
    """A markdown table of :func:`accounting` rows (columns in :data:`ACCOUNTING_COLUMNS`)."""
    columns = [c for c in ACCOUNTING_COLUMNS if any(c in row for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

