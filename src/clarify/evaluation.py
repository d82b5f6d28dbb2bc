"""Eval modes (DESIGN section 5): how a model is asked, then scored at the answer slot.

* ``direct``: question -> answer slot.
* ``draft``: question -> the model's own draft (generated) -> answer slot.
* ``cot``: question -> the model's own numbered reasoning (generated) -> answer slot.

Generated text is an intermediate only; the prediction always comes from the answer slot.
The same function serves the evaluation rule and the per-epoch dev check during training.
"""

from __future__ import annotations

import pandas as pd

from .drafts import generate_drafts
from .generation import generate
from .prompts import ANSWER_CUE, draft_context, reasoning_from_generation, reasoning_prompt
from .scoring import score_questions

MODES = ("direct", "draft", "cot")

#: Reasoning ends where the answer cue (or a new question) would start.
COT_STOP = [ANSWER_CUE, "\nQuestion:"]


def model_contexts(model, tokenizer, records: list[dict], mode: str, settings: dict,
                   progress: bool = True) -> tuple[list[str | None], pd.DataFrame | None]:
    """The context each question is scored after in ``mode``, and what was generated for it."""
    if mode == "direct":
        return [None] * len(records), None
    if mode == "draft":
        drafts = generate_drafts(model, tokenizer, records, settings["drafts"], progress=progress)
        contexts = [draft_context(d) for d in drafts]
        generated = pd.DataFrame({"generated": [d["raw"] for d in drafts],
                                  "gen_tokens": [d["n_tokens"] for d in drafts],
                                  "hit_limit": [d["hit_limit"] for d in drafts],
                                  "draft_parse_ok": [d["parse_ok"] for d in drafts]})
        return contexts, generated
    if mode == "cot":
        outputs = generate(model, tokenizer, [reasoning_prompt(r["question"]) for r in records],
                           max_new_tokens=settings["cot_max_new_tokens"], batch_size=settings["batch_size"],
                           stop=COT_STOP, progress=progress, desc="reasoning")
        contexts = [reasoning_from_generation(o["text"]) for o in outputs]
        generated = pd.DataFrame({"generated": [o["text"] for o in outputs],
                                  "gen_tokens": [o["n_tokens"] for o in outputs],
                                  "hit_limit": [o["hit_limit"] for o in outputs]})
        return contexts, generated
    raise ValueError(f"unknown eval mode {mode!r} (known: {', '.join(MODES)})")


def evaluate(model, tokenizer, records: list[dict], mode: str, settings: dict, progress: bool = True) -> pd.DataFrame:
    """Score ``records`` in ``mode``; one row per question (plus generated text for draft/cot).

    ``settings`` holds ``batch_size``, ``cot_max_new_tokens`` and ``drafts`` (the drafts
    section, used by the draft mode).
    """
    contexts, generated = model_contexts(model, tokenizer, records, mode, settings, progress=progress)
    frame = score_questions(model, tokenizer, records, contexts, batch_size=settings["batch_size"],
                            progress=progress, desc=f"scoring {mode}")
    if generated is not None:
        frame = pd.concat([frame, generated], axis=1)
    return frame
