"""Eval modes (DESIGN section 5): how a model is asked, then scored at the answer slot.

* ``direct``: question -> answer slot.
* ``draft``: question -> the model's own draft (generated) -> answer slot.
* ``cot``: question -> the model's own numbered reasoning (generated, greedy) -> answer slot.
* ``cot_sc``: k sampled reasonings per question (seeded, temperature T), each scored at the
  answer slot; the prediction is the majority of their answer slots, ties broken by the mean
  margin. With k=1 at T=0 it is ``cot``, question for question.

Generated text is an intermediate only; the prediction always comes from the answer slot.
The same function serves the evaluation rule and the per-epoch dev check during training.
Modes live in a registry (:data:`MODES`): each names the settings it reads, so a rule's
params (its rerun trigger) can carry exactly those (:func:`mode_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import InputError
from .prompts import ANSWER_CUE, draft_context, reasoning_from_generation, reasoning_prompt

if TYPE_CHECKING:  # numpy and pandas are imported where a mode runs: building the DAG reads only the registry
    import numpy as np
    import pandas as pd

#: Reasoning ends where the answer cue (or a new question) would start.
COT_STOP = [ANSWER_CUE, "\nQuestion:"]

#: Settings every mode reads (beside its own).
COMMON_SETTINGS = ("batch_size",)


@dataclass(frozen=True)
class EvalMode:
    """One way of asking: ``run(model, tokenizer, records, settings, progress) -> frame``.

    ``settings`` are the keys of the eval section it reads beyond ``batch_size``;
    ``uses_drafts`` says it also reads the drafts section (under the key ``drafts``).
    """

    run: Callable[..., pd.DataFrame]
    settings: tuple[str, ...] = ()
    uses_drafts: bool = False


MODES: dict[str, EvalMode] = {}


def register(name: str, settings: tuple[str, ...] = (), uses_drafts: bool = False):
    def wrap(run):
        MODES[name] = EvalMode(run, settings, uses_drafts)
        return run
    return wrap


def mode_settings(mode: str, eval_section: dict, drafts: dict | None = None) -> dict:
    """What ``mode`` reads from the eval (and drafts) sections, beyond the common keys."""
    spec = _mode(mode)
    settings = {key: eval_section[key] for key in spec.settings}
    if spec.uses_drafts:
        settings["drafts"] = drafts
    return settings


def evaluate(model, tokenizer, records: list[dict], mode: str, settings: dict, progress: bool = True) -> pd.DataFrame:
    """Score ``records`` in ``mode``; one row per question (plus what was generated for it).

    Every mode gives the columns of :func:`clarify.scoring.score_questions` (qid, gold,
    logp_yes, logp_no, margin, pred, correct) first; generating modes add ``generated``,
    ``gen_tokens`` and ``hit_limit``. ``settings`` holds ``batch_size`` and the keys the mode
    names in :data:`MODES` (``cot_max_new_tokens``; ``drafts``, the drafts section; ``sc_*``).
    """
    spec = _mode(mode)
    missing = [key for key in (*COMMON_SETTINGS, *spec.settings, *(("drafts",) if spec.uses_drafts else ()))
               if key not in settings]
    if missing:
        raise InputError(f"eval mode {mode!r}: settings lack {', '.join(missing)}")
    return spec.run(model, tokenizer, records, settings, progress)


def _mode(mode: str) -> EvalMode:
    if mode not in MODES:
        raise InputError(f"unknown eval mode {mode!r} (known: {', '.join(MODES)})")
    return MODES[mode]


def _score(model, tokenizer, records, contexts, settings, progress, desc) -> pd.DataFrame:
    from .scoring import score_questions  # torch: imported when a model is scored, not with the registry

    return score_questions(model, tokenizer, records, contexts, batch_size=settings["batch_size"],
                           progress=progress, desc=f"scoring {desc}")


@register("direct")
def _direct(model, tokenizer, records, settings, progress):
    return _score(model, tokenizer, records, None, settings, progress, "direct")


@register("draft", uses_drafts=True)
def _draft(model, tokenizer, records, settings, progress):
    import pandas as pd

    from .drafts import generate_drafts

    drafts = generate_drafts(model, tokenizer, records, settings["drafts"], progress=progress)
    frame = _score(model, tokenizer, records, [draft_context(d) for d in drafts], settings, progress, "draft")
    generated = pd.DataFrame({"generated": [d["raw"] for d in drafts],
                              "gen_tokens": [d["n_tokens"] for d in drafts],
                              "hit_limit": [d["hit_limit"] for d in drafts],
                              "draft_parse_ok": [d["parse_ok"] for d in drafts]})
    return pd.concat([frame, generated], axis=1)


def sample_reasonings(model, tokenizer, records: list[dict], num_samples: int, max_new_tokens: int,
                      batch_size: int, temperature: float = 0.0, seed: int = 0,
                      progress: bool = True) -> list[list[dict]]:
    """``num_samples`` reasonings per record after :func:`reasoning_prompt` (T=0: greedy)."""
    from .generation import generate_samples

    return generate_samples(model, tokenizer, [reasoning_prompt(r["question"]) for r in records], num_samples,
                            max_new_tokens, batch_size=batch_size, temperature=temperature, seed=seed,
                            stop=COT_STOP, progress=progress, desc="reasoning")


@register("cot", settings=("cot_max_new_tokens",))
def _cot(model, tokenizer, records, settings, progress):
    import pandas as pd

    outputs = [s[0] for s in sample_reasonings(model, tokenizer, records, 1, settings["cot_max_new_tokens"],
                                               settings["batch_size"], progress=progress)]
    frame = _score(model, tokenizer, records, [reasoning_from_generation(o["text"]) for o in outputs],
                   settings, progress, "cot")
    generated = pd.DataFrame({"generated": [o["text"] for o in outputs],
                              "gen_tokens": [o["n_tokens"] for o in outputs],
                              "hit_limit": [o["hit_limit"] for o in outputs]})
    return pd.concat([frame, generated], axis=1)


@register("cot_sc", settings=("cot_max_new_tokens", "sc_samples", "sc_temperature", "sc_seed"))
def _cot_sc(model, tokenizer, records, settings, progress):
    import numpy as np

    k = settings["sc_samples"]
    samples = sample_reasonings(model, tokenizer, records, k, settings["cot_max_new_tokens"], settings["batch_size"],
                                temperature=settings["sc_temperature"], seed=settings["sc_seed"], progress=progress)
    flat_records = [r for r in records for _ in range(k)]
    contexts = [reasoning_from_generation(s["text"]) for per_question in samples for s in per_question]
    scored = _score(model, tokenizer, flat_records, contexts, settings, progress, "cot_sc")
    margins = scored["margin"].to_numpy().reshape(len(records), k)
    frame = majority_vote(records, margins, scored["logp_yes"].to_numpy().reshape(len(records), k),
                          scored["logp_no"].to_numpy().reshape(len(records), k))
    frame["generated"] = [[s["text"] for s in per_question] for per_question in samples]
    frame["gen_tokens"] = [float(np.mean([s["n_tokens"] for s in per_question])) for per_question in samples]
    frame["hit_limit"] = [sum(s["hit_limit"] for s in per_question) for per_question in samples]
    return frame


def majority_vote(records: list[dict], margins: np.ndarray, logp_yes: np.ndarray, logp_no: np.ndarray) -> pd.DataFrame:
    """One row per question from its samples' answer slots (arrays of shape questions x k).

    ``pred`` is the majority of the samples' predictions (margin > 0 votes yes); a tie goes to
    the sign of the mean margin. ``logp_yes``, ``logp_no`` and ``margin`` are means over the
    samples; ``sc_yes_votes``/``sc_yes_share`` count the yes votes and ``sc_margins`` lists them all.
    """
    import numpy as np
    import pandas as pd

    k = margins.shape[1]
    yes_votes = (margins > 0).sum(axis=1)
    mean_margin = margins.mean(axis=1)
    pred = np.where(2 * yes_votes == k, mean_margin > 0, 2 * yes_votes > k)
    frame = pd.DataFrame({
        "qid": [r["qid"] for r in records],
        "gold": [bool(r["answer"]) for r in records],
        "logp_yes": logp_yes.mean(axis=1),
        "logp_no": logp_no.mean(axis=1),
        "margin": mean_margin,
        "pred": pred.astype(bool),
    })
    frame["correct"] = frame["pred"] == frame["gold"]
    frame["sc_samples"] = k
    frame["sc_yes_votes"] = yes_votes.astype(int)
    frame["sc_yes_share"] = yes_votes / k
    frame["sc_margins"] = [list(map(float, row)) for row in margins]
    return frame
