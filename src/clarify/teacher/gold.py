"""The gold teacher: the teacher format written from StrategyQA's own human decomposition and
facts. Offline, free, deterministic and always right (an offline default and an upper bound)."""

from __future__ import annotations

import json
import re

from ..cache import cache_key
from ..errors import InputError
from ..prompts import answer_word
from .core import Request, Teacher

_STOPWORDS = set("""a an the of in on at to for from by with and or not no yes is are was were be been
being do does did has have had can could would will should may might must than then that this these
those what which who whom whose when where why how many much more most less any some all each both
it its their there they them he she his her as into over under about also only other such same
answer step""".split())
_REFERENCE = re.compile(r"#\s?(\d+)")
_YES_NO_START = re.compile(r"^(is|are|was|were|do|does|did|can|could|would|will|should|has|have|had|"
                           r"might|may|must|shall|am)\b", re.IGNORECASE)
_DRAFT_GUESS = re.compile(r"^Draft guess:\s*(Yes|No)\b", re.IGNORECASE | re.MULTILINE)
_DRAFT_QUESTIONS = re.compile(r"^Draft questions:\s*\S", re.IGNORECASE | re.MULTILINE)


def _content_words(text: str) -> set[str]:
    words = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def _is_yes_no(question: str) -> bool:
    """Whether a sub-question asks yes/no (it, or its last clause, opens with an auxiliary)."""
    return any(_YES_NO_START.match(part.strip()) for part in (question, question.rsplit(",", 1)[-1]))


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if not text or text[-1] in ".?!" else text + "."


def gold_response(record: dict, prompt: str | None = None) -> str:
    """The teacher-format response the gold teacher writes for ``record``.

    Steps are the human decomposition's sub-questions (``#2`` -> "the answer to step 2"),
    each followed by the supporting facts that share the most content words with it; a final
    yes/no sub-question is answered from the gold label (in StrategyQA the last step of a
    decomposition answers the question). The draft guess is mentioned only when ``prompt``
    shows one.
    """
    qid = record.get("qid", "?")
    decomposition = [" ".join(str(q).split()) for q in (record.get("decomposition") or []) if str(q).strip()]
    if not decomposition:
        raise InputError(
            f"record {qid}: field 'decomposition' is missing or empty; the gold teacher needs "
            f"StrategyQA's human decomposition (use the original StrategyQA data, or teacher.backend openai/hf)"
        )
    if not isinstance(record.get("answer"), bool):
        raise InputError(f"record {qid}: field 'answer' must be true or false for the gold teacher")
    gold = record["answer"]
    facts = [_sentence(f) for f in (record.get("facts") or []) if str(f).strip()]

    # Attach each fact to the sub-question it shares most content words with, preferring the
    # look-up steps over the ones that combine earlier answers (those that cite "#k"); a fact
    # that shares no word with any goes with the last look-up step.
    attached: list[list[str]] = [[] for _ in decomposition]
    words = [_content_words(_REFERENCE.sub(" ", q)) for q in decomposition]
    lookups = [i for i, q in enumerate(decomposition) if not _REFERENCE.search(q)] or list(range(len(decomposition)))
    for fact in facts:
        fact_words = _content_words(fact)
        overlaps = [len(fact_words & w) for w in words]
        best = max(lookups, key=lambda i: (overlaps[i], -i))
        if overlaps[best] == 0:
            best = max(range(len(decomposition)), key=lambda i: (overlaps[i], i in lookups, -i))
            if overlaps[best] == 0:
                best = lookups[-1]
        attached[best].append(fact)

    steps = []
    last = len(decomposition) - 1
    for index, question in enumerate(decomposition):
        question = _REFERENCE.sub(lambda m: f"the answer to step {m.group(1)}", question)
        question = question[:1].upper() + question[1:]
        parts = [_sentence(question)] + attached[index]
        if index == last and _is_yes_no(question):
            word = answer_word(gold)
            parts.append(f"So, {word.lower()}." if attached[index] else f"{word}.")
        steps.append(" ".join(parts))

    n = len(decomposition)
    count = "one sub-question" if n == 1 else f"{n} sub-questions"
    analysis = []
    guess = _DRAFT_GUESS.search(prompt or "")
    if guess:
        guessed = guess.group(1).lower() == "yes"
        analysis.append(f"The student's first guess was {answer_word(guessed)}"
                        + (", which the facts support." if guessed == gold
                           else ", but the facts point the other way."))
        if _DRAFT_QUESTIONS.search(prompt or ""):
            analysis.append("Asking clarifying sub-questions first is the right approach.")
    analysis.append(f"The question does not rest on a single fact: it breaks into {count}, "
                    f"and answering each with a known fact settles it.")
    if not guess:
        analysis.append("The steps below answer them in order and then combine the answers.")

    numbered = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    return (
        "## Teaching Analysis\n" + " ".join(analysis[:3]) + "\n\n"
        "## Step-by-Step Reasoning\n" + numbered + "\n\n"
        "## Final Assessment\n"
        "Putting these steps together answers the question.\n"
        f"Based on this analysis, the answer is: **{answer_word(gold).upper()}**"
    )


class GoldTeacher(Teacher):
    """Offline, deterministic, free; not cached (it is instant). Counts whitespace tokens."""

    backend = "gold"
    can_judge = False
    uses_cache = False

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher", **options):
        super().__init__(settings, cache_path, role, **options)
        self.model = "gold"

    def key(self, request: Request) -> str:
        # The text depends on the record, not only on the prompt: two records that share a
        # question must not share a response.
        record = {k: request.record.get(k) for k in ("qid", "answer", "facts", "decomposition")}
        return cache_key(self.backend, json.dumps(record, sort_keys=True, ensure_ascii=False),
                         request.prompt, self.sampling, request.sample_index)

    def _complete_uncached(self, items, record) -> None:
        # No call is made: latency is recorded as 0.0 so reruns write byte-identical outputs.
        for key, request in items:
            text = gold_response(request.record, request.prompt)
            record(key, self._completion(text, len(request.prompt.split()), len(text.split()), 0.0,
                                         0.0, finish_reason="stop"))
