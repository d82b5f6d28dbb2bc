"""Parsers of model replies: the teacher format (:func:`parse_teacher`) and judge verdicts
(:func:`parse_verdict`). They sit beside the prompt contract (:mod:`clarify.prompts`), whose
formats they read."""

from __future__ import annotations

import re

# --- parsing -----------------------------------------------------------------------------------

_HEADING = re.compile(
    r"^\s*(#{1,6})?\s*(\*\*|__)?\s*(teaching\s+analysis|step[-\s]*by[-\s]*step\s+reasoning|final\s+assessment)"
    r"\s*(\*\*|__)?\s*(:)?\s*(\*\*|__)?\s*(.*?)\s*$",
    re.IGNORECASE,
)
_OTHER_HEADING = re.compile(r"^\s*#{1,6}\s+\S")
_ITEM = re.compile(
    r"^\s*(?:(?:\*\*|__)?(?:step\s*)?\d{1,3}\s*[.):](?:\*\*|__)?|[-*\u2022+])\s+(.*\S)\s*$",
    re.IGNORECASE,
)
_ANSWER_IS = re.compile(
    r"answer(?:\s+is)?\s*:?\s*(?:\*\*|__)?\s*\[?\s*(yes|no)\b(?!\s*/)", re.IGNORECASE)
_BOLD_WORD = re.compile(r"(?:\*\*|__)\s*\[?\s*(yes|no)\s*[.!]?\s*\]?\s*(?:\*\*|__)", re.IGNORECASE)
_BARE_LINE = re.compile(r"^\s*(yes|no)\b(?!\s*/)\s*[.!,:;-]?", re.IGNORECASE)


def _section_name(heading: str) -> str:
    words = re.sub(r"[^a-z]+", " ", heading.lower()).split()
    if words[:1] == ["teaching"]:
        return "analysis"
    if words[:1] == ["final"]:
        return "final"
    return "steps"


def parse_final(lines: list[str]) -> bool | None:
    """The final answer in a Final Assessment section, or None when it does not state one."""
    text = "\n".join(lines)
    for pattern in (_ANSWER_IS, _BOLD_WORD):
        found = pattern.findall(text)
        if found:
            return found[-1].lower() == "yes"
    bare = [m.group(1) for line in lines if (m := _BARE_LINE.match(line))]
    if bare:
        return bare[-1].lower() == "yes"
    return None


def parse_steps(lines: list[str]) -> list[str]:
    """Numbered (``1.``, ``1)``, ``Step 1:``) or bulleted items; continuation lines joined.

    A line right under an item continues it; after a blank line only an indented line does.
    Text before the first item and unindented paragraphs after a blank line are not steps.
    """
    steps: list[list[str]] = []
    open_item = False
    blank = False
    for line in lines:
        if not line.strip():
            blank = True
            continue
        match = _ITEM.match(line)
        if match:
            steps.append([match.group(1)])
            open_item, blank = True, False
            continue
        indented = line[:1].isspace()
        if open_item and (not blank or indented):
            steps[-1].append(line.strip())
        else:
            open_item = False
        blank = False
    joined = (" ".join(" ".join(parts).split()) for parts in steps)
    return [step for step in joined if step]


def parse_teacher(text: str) -> tuple[bool | None, list[str]]:
    """Parse a response in the teacher format: ``(final answer or None, steps)``.

    The final answer comes only from the "Final Assessment" section (``the answer is: **YES**``;
    missing bold, any case and ``Yes.`` on its own line are tolerated); the steps from the
    numbered or bulleted lines of the "Step-by-Step Reasoning" section.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (text or "").splitlines():
        match = _HEADING.match(line)
        if match and (match.group(1) or match.group(2) or match.group(5) or not match.group(7)):
            name = _section_name(match.group(3))
            if name in sections:
                current = None  # a repeated heading: keep the first section
                continue
            current = sections.setdefault(name, [])
            if match.group(7):
                current.append(match.group(7))
            continue
        if _OTHER_HEADING.match(line):
            current = None
            continue
        if current is not None:
            current.append(line)
    final = parse_final(sections["final"]) if "final" in sections else None
    steps = parse_steps(sections.get("steps", []))
    return final, steps


# --- parsing the reply -------------------------------------------------------------------------

_VERDICT_LINE = re.compile(r"^[\s>#*_`-]*(?:(?:final|my|overall)\s+)?verdict[\s*_`]*[:=\-][\s*_`]*(.*?)\s*$",
                           re.IGNORECASE | re.MULTILINE)
# "1", "Set 1", "set 2." but not a template echo like "1, 2 or tie" / "1/2/tie"
_SET = re.compile(r"(?:set\s*)?([12])\b(?!\s*(?:[,/|]|or\b|and\b))", re.IGNORECASE)
_TIE = re.compile(r"(?:(?:it\s*'?\s*s\s+)?a\s+)?(tie|tied|equal|equally)\b(?!\s*(?:[,/|]|or\b))", re.IGNORECASE)


def _value(text: str) -> str:
    """A verdict value with markdown, brackets and quotes removed."""
    return re.sub(r"[*_`\"'\[\]()]", "", text).strip()


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


def parse_verdict(text: str | None) -> str:
    """``"first"``, ``"second"``, ``"tie"`` or ``"invalid"``.

    The last ``Verdict:`` line decides (any case, markdown tolerated; ``1``, ``Set 1``, ``2``,
    ``tie``, ``equal``); a reply with no such line parses only if it is a bare verdict
    (``"1"``, ``"Set 2."``, ``"tie"``).
    """
    text = text or ""
    lines = _VERDICT_LINE.findall(text)
    if lines:
        return _read(lines[-1], whole=False)
    return _read(text.strip(), whole=True)
