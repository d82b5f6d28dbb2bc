"""The student's own sampled reasonings, each scored at its answer slot.

On-policy preference pairs (``pairs.source: own_samples``) and self-training
(``phase_b.self_train_rounds``) both start here: k reasonings per question, sampled (seeded,
temperature T) from whichever model is passed in (Phase B, or the last self-guided round),
exactly as the ``cot`` eval mode writes them (:func:`clarify.prompts.reasoning_prompt`, cut at
:data:`clarify.evaluation.COT_STOP`), then scored exactly as the ``cot`` mode scores them
(:func:`clarify.scoring.score_questions` after :func:`clarify.prompts.reasoning_from_generation`).
The prediction is the answer slot's, never parsed from the text.

Rationalisation (``hint=True``) samples from :func:`clarify.prompts.hinted_reasoning_prompt`
(the gold answer as a hint) but scores the reasoning after the plain prompt, so a rationale is
only "correct" when it leads the model to the gold answer without the hint.

Sample row::

    {"qid", "question", "gold": bool, "sample": int, "hinted": bool, "text": generated text,
     "context": the reasoning block scored, "logp_yes", "logp_no", "margin", "pred": bool,
     "correct": bool, "n_tokens": int, "hit_limit": bool}
"""

from __future__ import annotations

import logging
from collections import Counter

from .own_corpora import fallback_chain
from .errors import InputError
from .evaluation import COT_STOP
from .generation import generate
from .prompts import hinted_reasoning_prompt, reasoning_from_generation, reasoning_prompt
from .scoring import score_questions

log = logging.getLogger(__name__)

#: What the sampler needs; :data:`SETTINGS_FROM_CONFIG` maps a config section to it.
SAMPLING_KEYS = ("samples", "temperature", "seed", "max_new_tokens", "batch_size")

#: How each use of the sampler reads its settings from its own config section, so each rule's
#: params (its rerun trigger) are that section only.
SETTINGS_FROM_CONFIG = {
    "pairs": lambda section: {key: section[key] for key in SAMPLING_KEYS},
    "self_train": lambda section: {
        "samples": section["self_train_samples"],
        "temperature": section["self_train_temperature"],
        "seed": section["seed"],
        "max_new_tokens": section["self_train_max_new_tokens"],
        "batch_size": section["self_train_batch_size"],
    },
}


def sampling_settings(purpose: str, section: dict) -> dict:
    """The sampler's settings for ``purpose`` (``pairs`` or ``self_train``) from its config section."""
    if purpose not in SETTINGS_FROM_CONFIG:
        raise InputError(f"own samples: unknown purpose {purpose!r} (known: {', '.join(SETTINGS_FROM_CONFIG)})")
    return SETTINGS_FROM_CONFIG[purpose](section)


def _check_settings(settings: dict) -> None:
    missing = [key for key in SAMPLING_KEYS if key not in settings]
    if missing:
        raise InputError(f"own samples: settings lack {', '.join(missing)}")
    if int(settings["samples"]) < 1:
        raise InputError(f"own samples: samples must be at least 1, got {settings['samples']}")
    if not float(settings["temperature"]) > 0:
        raise InputError(f"own samples: temperature must be above 0, got {settings['temperature']}")


def sample_own_reasonings(model, tokenizer, records: list[dict], settings: dict, hint: bool = False,
                          progress: bool = True) -> list[dict]:
    """Sample ``settings["samples"]`` reasonings per record and score each one's answer slot.

    ``model`` is any causal LM (with or without a LoRA adapter). Rows come back grouped by
    record, in record order, samples numbered 0..k-1. Deterministic for the settings: each
    sample is seeded from (seed, its number, its prompt), so batching does not change it. ``hint=True`` rationalises: the prompt
    carries the record's gold answer, the scoring does not.
    """
    _check_settings(settings)
    k = int(settings["samples"])
    for number, record in enumerate(records):
        for field in ("qid", "question", "answer"):
            if field not in record:
                raise InputError(f"own samples: record {number} has no {field!r}")
    expanded = [record for record in records for _ in range(k)]
    if hint:
        prompts = [hinted_reasoning_prompt(r["question"], bool(r["answer"])) for r in expanded]
    else:
        prompts = [reasoning_prompt(r["question"]) for r in expanded]
    kind = "rationalisations" if hint else "own reasonings"
    outputs = generate(model, tokenizer, prompts, max_new_tokens=int(settings["max_new_tokens"]),
                       batch_size=int(settings["batch_size"]), do_sample=True,
                       temperature=float(settings["temperature"]), seed=int(settings["seed"]),
                       stop=COT_STOP, progress=progress, desc=kind)
    contexts = [reasoning_from_generation(out["text"]) for out in outputs]
    scores = score_questions(model, tokenizer, expanded, contexts, batch_size=int(settings["batch_size"]),
                             progress=progress, desc=f"scoring {kind}")
    rows = []
    for index, (record, out, context) in enumerate(zip(expanded, outputs, contexts)):
        score = scores.iloc[index]
        rows.append({
            "qid": record["qid"], "question": record["question"], "gold": bool(record["answer"]),
            "sample": index % k, "hinted": hint, "text": out["text"], "context": context,
            "logp_yes": float(score["logp_yes"]), "logp_no": float(score["logp_no"]),
            "margin": float(score["margin"]), "pred": bool(score["pred"]),
            "correct": bool(score["correct"]), "n_tokens": int(out["n_tokens"]),
            "hit_limit": bool(out["hit_limit"]),
        })
    log.info("%s: %s", kind, sample_summary(rows))
    return rows


def sample_summary(rows: list[dict]) -> dict:
    """Counts for logs and the report: samples, questions, how many have a correct / a wrong one."""
    by_qid: dict = {}
    for row in rows:
        by_qid.setdefault(row["qid"], []).append(bool(row["correct"]))
    kinds = Counter("mixed" if any(c) and not all(c) else "only_correct" if all(c) else "only_wrong"
                    for c in by_qid.values())
    n = len(rows)
    return {"samples": n, "questions": len(by_qid),
            "correct_frac": round(sum(r["correct"] for r in rows) / n, 4) if n else 0.0,
            "pred_yes_frac": round(sum(r["pred"] for r in rows) / n, 4) if n else 0.0,
            "hit_limit": sum(bool(r["hit_limit"]) for r in rows),
            "questions_mixed": kinds["mixed"], "questions_only_correct": kinds["only_correct"],
            "questions_only_wrong": kinds["only_wrong"]}


def questions_without_correct(records: list[dict], samples: list[dict]) -> list[dict]:
    """The records none of whose (unhinted) samples is correct: the ones a fallback must cover."""
    solved = {row["qid"] for row in samples if row["correct"] and not row["hinted"]}
    return [record for record in records if record["qid"] not in solved]


def self_training_samples(model, tokenizer, records: list[dict], settings: dict, fallback: str,
                          progress: bool = True) -> list[dict]:
    """Own samples for self-training, plus rationalisations where ``fallback`` starts with them.

    Rationalisation samples (``hinted: true``) are drawn only for the questions with no
    correct own sample, with the same settings (the seed shifted so they are new draws).
    """
    samples = sample_own_reasonings(model, tokenizer, records, settings, progress=progress)
    if "rationalize" in fallback_chain(fallback):
        unsolved = questions_without_correct(records, samples)
        if unsolved:
            hinted = {**settings, "seed": int(settings["seed"]) + 1_000_003}
            samples += sample_own_reasonings(model, tokenizer, unsolved, hinted, hint=True, progress=progress)
    return samples
