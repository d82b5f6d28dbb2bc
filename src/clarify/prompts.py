"""The one prompt contract (DESIGN section 5).

Every prompt the pipeline shows a model is built here: training corpora, draft generation,
the teacher, evaluation and ablations call these functions, so training and evaluation inputs
cannot drift apart. The answer is never parsed from generated text: the evaluator scores the
two answer continuations at the answer slot that :func:`answer_prompt` ends with.

The shapes, with ``Q`` a question:

* direct:  ``Question: Q\\nAnswer:`` + `` Yes``/`` No``
* draft:   ``Question: Q\\n<draft_context(draft)>\\nAnswer:`` + answer
* cot:     ``Question: Q\\nReasoning:\\n1. ...\\n2. ...\\nAnswer:`` + answer

A training target is always ``answer_prompt(Q, context) + answer_completion(answer)``, and
the cot mode generates its context from :func:`reasoning_prompt`, which is exactly the
prefix of that training text, so what the model learns to write is what it is scored after.
"""

from __future__ import annotations

import re

#: The two answer continuations scored at the answer slot, as whole strings (a tokenizer may
#: split either into several tokens; the scorer handles that).
ANSWER_TEXT = {True: " Yes", False: " No"}

#: The text every answer-slot prompt ends with; the answer continuation follows it directly.
ANSWER_CUE = "Answer:"

#: Header of the reasoning block (cot mode, Track B corpus, DPO completions).
REASONING_HEADER = "Reasoning:"


def question_line(question: str) -> str:
    return "Question: " + " ".join(question.split())


def answer_prompt(question: str, context: str | None = None) -> str:
    """Prompt that ends at the answer slot.

    ``context`` is whatever the model is shown between the question and the answer: nothing
    for the ``direct`` mode, a draft or a chain of sub-questions and reasoning for the others.
    The seed's training format (``Question: ...`` / ``Answer: Yes``) is the ``direct`` case.
    """
    parts = [question_line(question)]
    if context and context.strip():
        parts.append(context.strip())
    parts.append(ANSWER_CUE)
    return "\n".join(parts)


def answer_completion(answer: bool) -> str:
    """The training target that follows :func:`answer_prompt`: exactly what the scorer scores."""
    return ANSWER_TEXT[bool(answer)]


def answer_word(answer: bool) -> str:
    return ANSWER_TEXT[bool(answer)].strip()


# --- reasoning (cot mode, Track B) -------------------------------------------------------------

def reasoning_context(steps: list[str]) -> str:
    """The reasoning block: a header and numbered steps (sub-questions with their answers)."""
    lines = [REASONING_HEADER]
    for number, step in enumerate(steps, start=1):
        lines.append(f"{number}. {' '.join(step.split())}")
    return "\n".join(lines)


def reasoning_prompt(question: str, draft: dict | None = None) -> str:
    """The prefix a model reasons from: the question, optionally a draft, then the header.

    The cot mode generates from ``reasoning_prompt(Q)``; Track B trains on
    ``reasoning_prompt(Q) + reasoning_completion(steps, answer)``; DPO pairs share
    ``reasoning_prompt(Q, draft)``. In every case prompt + completion equals
    ``answer_prompt(Q, context) + answer_completion(answer)`` for the matching context.
    """
    parts = [question_line(question)]
    if draft is not None:
        parts.append(draft_context(draft))
    parts.append(REASONING_HEADER)
    return "\n".join(parts) + "\n"


def reasoning_completion(steps: list[str], answer: bool) -> str:
    """Numbered steps, the answer cue and the answer: what follows :func:`reasoning_prompt`."""
    body = reasoning_context(steps)[len(REASONING_HEADER) + 1:]
    return f"{body}\n{ANSWER_CUE}{answer_completion(answer)}"


def reasoning_from_generation(generated: str) -> str:
    """Turn text generated after :func:`reasoning_prompt` into a reasoning context.

    Generation is cut at the first answer cue (the answer is scored, never parsed), so the
    context holds only the steps the model wrote.
    """
    body = generated.split(ANSWER_CUE, 1)[0].rstrip()
    return REASONING_HEADER + "\n" + body.strip("\n")


def hinted_reasoning_prompt(question: str, gold: bool) -> str:
    """STaR-style rationalisation for the student: :func:`reasoning_prompt` with the gold answer
    as a hint line before the reasoning header. What the student writes after it is trained on,
    and scored, after the plain :func:`reasoning_prompt` (the hint never reaches a corpus).
    """
    return (question_line(question) + f"\nHint: the answer is {answer_word(gold)}."
            + f"\n{REASONING_HEADER}\n")


# --- student drafts ----------------------------------------------------------------------------

DRAFT_INSTRUCTIONS = (
    "Give your first guess to the yes/no question with a brief reason, then the clarifying "
    "sub-questions you would need answered to be sure. Use exactly this format:\n"
    "Answer: <Yes/No> - <brief reasoning>\n"
    "Questions: <focused question>? <key uncertainty>?"
)

#: The cue a draft without a guess (``drafts.include_guess: false``) is generated after.
QUESTIONS_CUE = "Questions:"

#: Instructions for a draft of clarifying sub-questions alone: no first guess to anchor the answer.
QUESTIONS_ONLY_INSTRUCTIONS = (
    "Do not answer the yes/no question yet. Write only the clarifying sub-questions you would "
    "need answered to be sure of the answer. Use exactly this format:\n"
    "Questions: <focused question>? <key uncertainty>?"
)

_DRAFT_ANSWER = re.compile(r"^\s*(yes|no)\b[\s,.:;-]*(.*)$", re.IGNORECASE | re.DOTALL)
_QUESTIONS_LINE = re.compile(r"^\s*Questions?\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def draft_cue(include_guess: bool = True) -> str:
    """What a draft request ends with, and what a stored draft's ``raw`` text starts with:
    ``Answer:`` (guess first, the seed's format) or ``Questions:`` (sub-questions alone)."""
    return ANSWER_CUE if include_guess else QUESTIONS_CUE


def draft_request(question: str, include_guess: bool = True) -> str:
    """The prompt a student draft is generated from.

    With a guess it ends at ``Answer:`` (the seed's format); without (``drafts.include_guess:
    false``) it asks only for the clarifying sub-questions and ends at ``Questions:``.
    """
    instructions = DRAFT_INSTRUCTIONS if include_guess else QUESTIONS_ONLY_INSTRUCTIONS
    return f"{instructions}\n\n{question_line(question)}\n{draft_cue(include_guess)}"


def _split_questions(text: str) -> list[str]:
    return [q.strip() + "?" for q in text.split("?")[:-1] if q.strip()]


def parse_draft(generated: str, include_guess: bool = True) -> dict:
    """Parse the text generated after :func:`draft_request` (same ``include_guess``).

    Returns ``{"guess": True/False/None, "reason": str, "questions": [str], "parse_ok": bool}``.
    With a guess, a draft parses when it starts with Yes/No and has at least one question ending
    in '?'. Without, ``guess`` is None, ``reason`` is empty, the questions are read from the first
    line, and the draft parses when it has at least one question ending in '?'.
    """
    if not include_guess:
        first = generated.strip().partition("\n")[0]
        questions = _split_questions(_QUESTIONS_LINE.sub(r"\1", first))
        return {"guess": None, "reason": "", "questions": questions, "parse_ok": bool(questions)}
    first, _, rest = generated.strip().partition("\n")
    match = _DRAFT_ANSWER.match(first)
    guess = None if match is None else match.group(1).lower() == "yes"
    reason = match.group(2).strip() if match else first.strip()
    questions_match = _QUESTIONS_LINE.search(rest)
    questions = _split_questions(questions_match.group(1)) if questions_match else []
    return {"guess": guess, "reason": reason, "questions": questions,
            "parse_ok": guess is not None and bool(questions)}


def parse_raw_draft(raw: str) -> dict:
    """Parse a stored draft's ``raw`` text (its cue + what was generated); the cue it starts with
    says which form it is (``Questions:`` = no guess; anything else is read as the guess form)."""
    include_guess = not raw.startswith(QUESTIONS_CUE)
    return parse_draft(raw.removeprefix(draft_cue(include_guess)), include_guess)


def draft_context_parts(draft: dict) -> list[tuple[str, str]]:
    """The lines of :func:`draft_context`, each named by what it shows: ``"guess"`` (the first
    guess and its reason), ``"questions"`` (the clarifying sub-questions) or ``"unparsed"`` (an
    unparsed draft's raw text). Attribution reads the draft's parts from here."""
    if draft.get("guess") is None:
        if draft.get("parse_ok") and draft.get("questions"):
            return [("questions", "Draft questions: " + " ".join(draft["questions"]))]
        raw = " ".join(draft.get("raw", "").split()).removeprefix(ANSWER_CUE).strip()
        return [("unparsed", "Draft: " + (raw.replace(ANSWER_CUE, "Guess:") or "(empty)"))]
    parts = [("guess", f"Draft guess: {answer_word(draft['guess'])}"
                       + (f" - {draft['reason']}" if draft.get("reason") else ""))]
    if draft.get("questions"):
        parts.append(("questions", "Draft questions: " + " ".join(draft["questions"])))
    return parts


def draft_context(draft: dict) -> str:
    """How a draft is shown before the answer slot (draft mode, DPO prompts).

    The guess is shown as "Draft guess", never as a second "Answer:", so the answer cue
    appears once per prompt. A parsed draft without a guess shows only its questions. An
    unparsed draft is shown as its raw text.
    """
    return "\n".join(text for _, text in draft_context_parts(draft))


# --- teacher -----------------------------------------------------------------------------------

TEACHER_FORMAT = (
    "## Teaching Analysis\n"
    "[2-3 sentences acknowledging the student's approach]\n\n"
    "## Step-by-Step Reasoning\n"
    "[Numbered steps: answer each clarifying sub-question with the fact that settles it]\n\n"
    "## Final Assessment\n"
    "Based on this analysis, the answer is: **[YES/NO]**"
)


def teacher_prompt(question: str, draft: dict | None = None) -> str:
    """What the teacher is asked: the question, the student's draft, and the seed's format."""
    draft_text = draft_context(draft) if draft else "(no draft)"
    return (
        "You are a patient teacher. A student is answering a yes/no question and has written a first "
        "guess and the clarifying sub-questions they are unsure about.\n\n"
        f"{question_line(question)}\nStudent draft:\n{draft_text}\n\n"
        f"Reply in exactly this format:\n{TEACHER_FORMAT}"
    )


def rationalization_prompt(question: str, draft: dict | None, gold: bool) -> str:
    """STaR-style rationalisation: the teacher prompt plus the gold answer as a hint."""
    return (
        teacher_prompt(question, draft)
        + f"\n\nHint: the correct answer is {answer_word(gold).upper()}. Reason to it from facts, "
        "and do not mention that you were given the answer or a hint."
    )


# --- judge -------------------------------------------------------------------------------------

JUDGE_INSTRUCTIONS = (
    "You are judging clarifying sub-questions. A student who must answer the yes/no question "
    "below first wrote some sub-questions to clarify what the answer depends on. Two students "
    "wrote the two sets of sub-questions shown. Decide which set would help more to answer the "
    "yes/no question correctly. Consider:\n"
    "- relevance: each sub-question asks about something the answer actually depends on;\n"
    "- sufficiency: answering the sub-questions would settle the yes/no question;\n"
    "- no redundancy: no repeated or useless sub-questions.\n"
    "The order of the sets and their length say nothing about their quality. "
    "Do not answer the yes/no question itself. Give at most two sentences of justification, "
    "then end your reply with exactly one line: \"Verdict: 1\" if Set 1 is better, "
    "\"Verdict: 2\" if Set 2 is better, or \"Verdict: tie\" if they are equally helpful."
)


def _judge_set(questions) -> str:
    questions = [" ".join(str(q).split()) for q in (questions or []) if str(q).strip()]
    if not questions:
        return "(none)"
    return "\n".join(f"- {q}" for q in questions)


def judge_prompt(question: str, first: list[str], second: list[str]) -> str:
    """The judge's prompt: ``first`` shown as Set 1, ``second`` as Set 2 ("(none)" if empty)."""
    return (
        f"{JUDGE_INSTRUCTIONS}\n\n"
        f"Yes/no question: {' '.join(str(question).split())}\n\n"
        f"Set 1:\n{_judge_set(first)}\n\n"
        f"Set 2:\n{_judge_set(second)}\n\n"
        "Which set helps more? End with \"Verdict: 1\", \"Verdict: 2\" or \"Verdict: tie\"."
    )
