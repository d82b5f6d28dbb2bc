"""Parsing what teacher and judge models write: the teacher format and the judge's verdict.

Pure functions of the reply text, shared by the teacher harvest (:mod:`clarify.teacher`) and
the judge (:mod:`clarify.judge`). They accept what real chat models write, not only the
template (tests/data/replies/ holds real replies of a local chat model, each a test):

* headings with or without ``#``, in bold, numbered (``3. **Final Assessment**``), with or
  without a colon, with text after it on the same line;
* numbered or bulleted steps; items indented under a step (sub-bullets) and its continuation
  lines are folded into that step; markdown (bold, italics, inline code) is removed from the
  step text, since steps go verbatim into the Track B corpus and the preference pairs;
* the final answer anywhere in the Final Assessment section (the last stated answer counts);
* a judge verdict on its own line or at the end of a sentence (``... Verdict: 2``).

Replies that do not parse are refused with one reason (:data:`TEACHER_REASONS`,
:data:`VERDICT_REASONS`) for the harvest's and the judge's accounting.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# --- markdown ----------------------------------------------------------------------------------

_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_CODE = re.compile(r"`([^`\n]+)`")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])|(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")


def plain_text(text: str) -> str:
    """``text`` on one line without markdown emphasis: ``**bold**``, ``__bold__``, ``*em*``,
    ``_em_`` and ```code``` lose their markers (a lone ``*`` or ``_`` inside a word stays)."""
    text = _CODE.sub(r"\1", text)
    text = _BOLD.sub(r"\2", text)
    text = _BOLD.sub(r"\2", text)  # nested "**a __b__**"
    text = _ITALIC.sub(lambda m: m.group(1) or m.group(2), text)
    text = text.replace("**", "")  # an unbalanced bold marker
    return " ".join(text.split())


# --- teacher replies -------------------------------------------------------------------------

#: The sections of the teacher format, by the words of their heading.
SECTIONS = {
    "analysis": r"teaching\s+analysis",
    "steps": r"step[-\s]*by[-\s]*step\s+reasoning",
    "final": r"final\s+assessment",
}

#: Why a teacher reply is refused (``None`` when it parses), for the harvest's accounting.
TEACHER_REASONS = {
    "empty": "the reply is empty",
    "no_final_section": "the reply has no Final Assessment section",
    "no_answer": "the Final Assessment states no yes/no answer",
    "contradictory_answer": "the Final Assessment's last stated answer is both yes and no",
    "no_steps": "the Step-by-Step Reasoning section has no numbered or bulleted steps",
}

_HEADING = re.compile(
    r"^\s*(?P<hashes>#{1,6})?\s*(?:[-\u2022]\s+)?(?:\d{1,2}\s*[.)]\s*)?(?P<bold>\*\*|__)?\s*(?:"
    + "|".join(f"(?P<{name}>{pattern})" for name, pattern in SECTIONS.items())
    + r")\s*(?:\*\*|__)?\s*(?P<colon>:)?\s*(?:\*\*|__)?\s*(?P<rest>.*?)\s*$",
    re.IGNORECASE,
)
_OTHER_HEADING = re.compile(r"^\s*#{1,6}\s+\S")
_STEP_HEADING = re.compile(r"^\s*#{1,6}\s+(?=(?:\*\*|__)?(?:step\s*)?\d{1,3}\s*[.):])", re.IGNORECASE)  # "### Step 1: ..."
_ITEM = re.compile(
    r"^\s*(?:(?:\*\*|__)?(?:step\s*)?\d{1,3}\s*[.):](?:\*\*|__)?|[-*\u2022+])\s+(.*\S)\s*$",
    re.IGNORECASE,
)
_ANSWER_IS = re.compile(
    r"answer(?:\s+to\s+(?:the|this|your)\s+question)?(?:\s+(?:is|would\s+be|should\s+be))?\s*:?\s*"
    r"(?:\*\*|__)?\s*\[?\s*(yes|no)\b(?!\s*/)", re.IGNORECASE)
_BOLD_WORD = re.compile(r"(?:\*\*|__)\s*\[?\s*(yes|no)\s*[.!]?\s*\]?\s*(?:\*\*|__)", re.IGNORECASE)
_BARE_LINE = re.compile(r"^\s*(yes|no)\b(?!\s*/)\s*[.!,:;-]?", re.IGNORECASE)
_BOTH = re.compile(r"\b(?:yes\s*(?:and|or|/)\s*no|no\s*(?:and|or|/)\s*yes)\b", re.IGNORECASE)


class TeacherReply(NamedTuple):
    """A parsed teacher reply: the final answer (None if none), the steps, and why it is refused
    (a key of :data:`TEACHER_REASONS`, or None when it has both an answer and steps)."""

    final: bool | None
    steps: list[str]
    reason: str | None


def _heading(line: str) -> str | None:
    """The section a heading line opens, or None for any other line.

    A heading is marked (``#``, bold or a colon) or is the heading's words alone on the line;
    "Final assessment shows ..." in running text is not one.
    """
    match = _HEADING.match(line)
    if match is None:
        return None
    if not (match.group("hashes") or match.group("bold") or match.group("colon") or not match.group("rest")):
        return None
    return next(name for name in SECTIONS if match.group(name))


def _sections(text: str) -> dict[str, list[str]]:
    """Lines by section; text after a heading on its line starts the section; a repeated
    heading is ignored (the first section counts) and an unknown ``#`` heading closes one
    (``### Step 2: ...`` inside a section is a step, not a heading)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (text or "").splitlines():
        name = _heading(line)
        if name is not None:
            if name in sections:
                current = None
                continue
            current = sections.setdefault(name, [])
            rest = _HEADING.match(line).group("rest")
            if rest:
                current.append(rest)
            continue
        if current is not None and _STEP_HEADING.match(line):
            line = _STEP_HEADING.sub("", line)  # a step written as a heading is a step
        elif _OTHER_HEADING.match(line):
            current = None
            continue
        if current is not None:
            current.append(line)
    return sections


def _final_answer(lines: list[str]) -> tuple[bool | None, str | None]:
    """The last stated answer of a Final Assessment section and why there is none."""
    for pattern in (_ANSWER_IS, _BOLD_WORD):
        stated = [(line, found) for line in lines if (found := pattern.findall(line))]
        if stated:
            line, found = stated[-1]
            words = {word.lower() for word in found}
            if len(words) > 1 or _BOTH.search(plain_text(line)):
                return None, "contradictory_answer"
            return found[-1].lower() == "yes", None
    bare = [(line, m.group(1)) for line in lines if (m := _BARE_LINE.match(line))]
    if bare:
        line, word = bare[-1]
        if _BOTH.search(plain_text(line)):
            return None, "contradictory_answer"
        return word.lower() == "yes", None
    return None, "no_answer"


def parse_final(lines: list[str]) -> bool | None:
    """The final answer in a Final Assessment section, or None when it does not state one
    (or states yes and no at once)."""
    return _final_answer(lines)[0]


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def parse_steps(lines: list[str]) -> list[str]:
    """Numbered (``1.``, ``1)``, ``Step 1:``) or bulleted items, as plain text.

    The first item's indentation is the steps' level: an item indented deeper (a sub-bullet)
    is folded into the step above it, as is a line right under an item; after a blank line
    only an indented line continues it. Text before the first item and unindented paragraphs
    after a blank line are not steps. Markdown is removed (:func:`plain_text`).
    """
    steps: list[list[str]] = []
    level: int | None = None
    open_item = False
    blank = False
    for line in lines:
        if not line.strip():
            blank = True
            continue
        match = _ITEM.match(line)
        indent = _indent(line)
        if match and (level is None or indent <= level or not open_item):
            level = indent if level is None else level
            steps.append([match.group(1)])
            open_item, blank = True, False
            continue
        if match:  # a sub-item of the open step
            steps[-1].append(match.group(1))
            blank = False
            continue
        if open_item and (not blank or indent > (level or 0)):
            steps[-1].append(line.strip())
        else:
            open_item = False
        blank = False
    joined = (plain_text(" ".join(parts)) for parts in steps)
    return [step for step in joined if step]


def parse_teacher_reply(text: str | None) -> TeacherReply:
    """Parse a response in the teacher format, with the reason it is refused (if it is).

    The final answer comes only from the "Final Assessment" section (``the answer is: **YES**``;
    missing bold, any case and ``Yes.`` on its own line are tolerated); the steps from the
    numbered or bulleted lines of the "Step-by-Step Reasoning" section.
    """
    if not (text or "").strip():
        return TeacherReply(None, [], "empty")
    sections = _sections(text)
    if "final" in sections:
        final, reason = _final_answer(sections["final"])
    else:
        final, reason = None, "no_final_section"
    steps = parse_steps(sections.get("steps", []))
    if reason is None and not steps:
        reason = "no_steps"
    return TeacherReply(final, steps, reason)


def parse_teacher(text: str) -> tuple[bool | None, list[str]]:
    """``(final answer or None, steps)`` of a teacher reply (:func:`parse_teacher_reply`)."""
    final, steps, _ = parse_teacher_reply(text)
    return final, steps


# --- judge verdicts --------------------------------------------------------------------------

#: Why a judge reply is refused, for the judge's accounting.
VERDICT_REASONS = {
    "no_verdict": "the reply has no 'Verdict:' and is not a bare verdict",
    "unreadable_verdict": "the last 'Verdict:' is not 1, 2 or tie",
}

# "Verdict:" anywhere on a line (at its start or ending a sentence), markdown tolerated
_VERDICT = re.compile(r"(?<![\w])(?:(?:final|my|overall)\s+)?verdict[\s*_`]*[:=\-][\s*_`]*", re.IGNORECASE)
# "1", "Set 1", "set 2." but not a template echo like "1, 2 or tie" / "1/2/tie"
_SET = re.compile(r"(?:set\s*)?([12])\b(?!\s*(?:[,/|]|or\b|and\b))", re.IGNORECASE)
_TIE = re.compile(r"(?:(?:it\s*'?\s*s\s+)?a\s+)?(tie|tied|equal|equally)\b(?!\s*(?:[,/|]|or\b))", re.IGNORECASE)


class JudgeReply(NamedTuple):
    """A parsed judge reply: ``first``/``second``/``tie``/``invalid`` and, when invalid, why
    (a key of :data:`VERDICT_REASONS`)."""

    verdict: str
    reason: str | None


def _value(text: str) -> str:
    """A verdict value with markdown, brackets and quotes removed."""
    return re.sub(r"[*_`\"'\[\]()\u201c\u201d]", "", text).strip()


def _read(value: str, whole: bool) -> str:
    value = _value(value)
    if whole:  # a bare reply must be nothing but the verdict
        value = value.rstrip(".!")
        match = _SET.fullmatch(value) or _TIE.fullmatch(value)
    else:
        match = _SET.match(value) or _TIE.match(value)
    if match is None:
        return "invalid"
    token = match.group(1).lower()
    return {"1": "first", "2": "second"}.get(token, "tie")


def _verdict_values(text: str) -> list[str]:
    """What follows "Verdict:" on each line that says it once; a line that says it more than
    once lists the options (an echo of the instructions), not a verdict."""
    values = []
    for line in text.splitlines():
        found = list(_VERDICT.finditer(line))
        if len(found) == 1:
            values.append(line[found[0].end():].strip())
    return values


def parse_judge_reply(text: str | None) -> JudgeReply:
    """The verdict of a judge reply, with the reason when it has none (:data:`VERDICT_REASONS`).

    The last ``Verdict:`` decides, on its own line or ending a sentence (any case, markdown
    tolerated; ``1``, ``Set 1``, ``2``, ``tie``, ``equal``); a reply with no ``Verdict:``
    parses only if it is a bare verdict (``"1"``, ``"Set 2."``, ``"tie"``).
    """
    text = text or ""
    values = _verdict_values(text)
    if values:
        verdict = _read(values[-1], whole=False)
        return JudgeReply(verdict, "unreadable_verdict" if verdict == "invalid" else None)
    verdict = _read(text.strip(), whole=True)
    return JudgeReply(verdict, "no_verdict" if verdict == "invalid" else None)


def parse_verdict(text: str | None) -> str:
    """``"first"``, ``"second"``, ``"tie"`` or ``"invalid"`` (:func:`parse_judge_reply`)."""
    return parse_judge_reply(text).verdict
