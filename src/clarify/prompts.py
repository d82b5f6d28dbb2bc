"""The one prompt contract (DESIGN section 5).

Every prompt the pipeline shows a model is built here: training corpora, draft generation,
evaluation and ablations call these functions, so training and evaluation inputs cannot
drift apart. The answer is never parsed from generated text: the evaluator scores the two
answer continuations at the answer slot that :func:`answer_prompt` ends with.
"""

from __future__ import annotations

#: The two answer continuations scored at the answer slot, as whole strings (a tokenizer may
#: split either into several tokens; the scorer handles that).
ANSWER_TEXT = {True: " Yes", False: " No"}

#: The text every answer-slot prompt ends with; the answer continuation follows it directly.
ANSWER_CUE = "Answer:"


def answer_prompt(question: str, context: str | None = None) -> str:
    """Prompt that ends at the answer slot.

    ``context`` is whatever the model is shown between the question and the answer: nothing
    for the ``direct`` mode, a draft or a chain of sub-questions and reasoning for the others.
    The seed's training format (``Question: ...`` / ``Answer: Yes``) is the ``direct`` case.
    """
    question = " ".join(question.split())
    parts = [f"Question: {question}"]
    if context:
        parts.append(context.strip())
    parts.append(ANSWER_CUE)
    return "\n".join(parts)


def answer_completion(answer: bool) -> str:
    """The training target that follows :func:`answer_prompt`: exactly what the scorer scores."""
    return ANSWER_TEXT[bool(answer)]
