"""Parsing teacher replies and judge verdicts as real chat models write them (issue 18).

The synthetic cases are the issue's examples and the forms around them; the corpus of real
replies (tests/data/replies/) is tested reply by reply in test_real_replies.py."""

from __future__ import annotations

import pytest

from clarify.parsing import (TEACHER_REASONS, VERDICT_REASONS, parse_judge_reply, parse_teacher,
                             parse_teacher_reply, parse_verdict, plain_text)

# --- the examples ------------------------------------------------------------------

def test_numbered_bold_final_assessment_with_sub_bullets():
    text = ("## Teaching Analysis\nok\n\n## Step-by-Step Reasoning\n1. **Fact**: x.\n   - Fact: y.\n\n"
            "2. **Final Assessment**\n   Based on this analysis, the answer is: **YES**")
    assert parse_teacher(text) == (True, ["Fact: x. Fact: y."])
    assert parse_teacher_reply(text).reason is None


def test_sub_bullets_fold_into_their_step_and_markdown_goes():
    text = ("## Step-by-Step Reasoning\n"
            "1. **Who wrote *Hamlet*?**\n"
            "   - `Shakespeare` wrote it.\n"
            "   - He lived in __England__.\n"
            "2. **Did he visit Denmark?**\n"
            "   * No record shows it.\n"
            "     - Conclusion: No.\n\n"
            "## Final Assessment\nBased on this analysis, the answer is: **NO**")
    assert parse_teacher(text) == (False, [
        "Who wrote Hamlet? Shakespeare wrote it. He lived in England.",
        "Did he visit Denmark? No record shows it. Conclusion: No."])


def test_inline_verdict_ending_a_paragraph():
    assert parse_verdict("Set 1 misses the model names. Verdict: 2") == "second"
    assert parse_verdict("Set 2 only restates the question, answering the question. **Verdict: 1**") == "first"


# --- headings ------------------------------------------------------------------------------

@pytest.mark.parametrize("heading", [
    "## Final Assessment", "Final Assessment", "Final Assessment:", "**Final Assessment**",
    "**Final Assessment:**", "3. **Final Assessment**", "3. Final Assessment:", "### 3. Final Assessment",
    "- **Final Assessment**", "__Final assessment__", "FINAL ASSESSMENT",
])
def test_final_assessment_heading_forms(heading):
    text = f"Step-by-Step Reasoning:\n1. A fact.\n\n{heading}\nThe answer is **No**."
    assert parse_teacher(text) == (False, ["A fact."])


def test_heading_with_the_answer_on_its_line():
    text = "**Step-by-Step Reasoning:** \n1. A fact.\n**Final Assessment:** the answer is Yes."
    assert parse_teacher(text) == (True, ["A fact."])


def test_running_text_is_not_a_heading():
    text = ("## Step-by-Step Reasoning\n1. A fact.\n2. Final assessment shows no risk.\n\n"
            "## Final Assessment\nthe answer is: yes")
    assert parse_teacher(text) == (True, ["A fact.", "Final assessment shows no risk."])


# --- the final answer ----------------------------------------------------------------------

@pytest.mark.parametrize("final_section, final", [
    ("Based on this analysis, the answer is: **YES**", True),
    ("Putting it together: the facts show it cannot happen.\nSo the answer is **no**.", False),
    ("The facts say otherwise. **No.**", False),
    ("No, it could not.", False),
    ("Therefore, the answer to the question is yes.", True),
    ("So the final answer would be: **No**", False),
    ("At first the answer is: NO, but\nBased on this analysis, the answer is: **YES**", True),
])
def test_final_answer_anywhere_in_the_section(final_section, final):
    reply = parse_teacher_reply(f"## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\n{final_section}")
    assert (reply.final, reply.reason) == (final, None)


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   \n", "empty"),
    ("I cannot help with that.", "no_final_section"),
    ("## Step-by-Step Reasoning\n1. A fact.\nThe answer is: **NO**", "no_final_section"),
    ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\nBased on this analysis, the answer is: "
     "**[YES/NO]**", "no_answer"),
    ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\nIt depends on the year.", "no_answer"),
    ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\nThe answer is: **YES** and **NO**",
     "contradictory_answer"),
    ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\nThe answer is yes, the answer is no.",
     "contradictory_answer"),
    ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\nYes and no.", "contradictory_answer"),
    ("## Step-by-Step Reasoning\nIt is known.\n\n## Final Assessment\nthe answer is **No**.", "no_steps"),
])
def test_refused_replies_carry_one_reason(text, reason):
    reply = parse_teacher_reply(text)
    assert reply.reason == reason and reason in TEACHER_REASONS
    if reason != "no_steps":
        assert reply.final is None


def test_plain_text_keeps_what_is_not_markdown():
    assert plain_text("Is #2 greater than #1? Eid al_fitr 2*3 lasts `") == "Is #2 greater than #1? Eid al_fitr 2*3 lasts `"
    assert plain_text("**Bold** and *em* and `code` and __under__ and _it_") == "Bold and em and code and under and it"
    assert plain_text("**Fact: unbalanced") == "Fact: unbalanced"


# --- judge verdicts ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected, reason", [
    ("Set 1 misses the model names. Verdict: 2", "second", None),
    ("Both sets are fine.\n\nVerdict: tie", "tie", None),
    ("Set 2 is better because it asks about dates. Verdict: Set 2.", "second", None),
    ('I would say "Verdict: 1"', "first", None),
    ("Set 1 is better. Verdict: 1. On reflection Set 2 covers more. Verdict: 2", "invalid", "no_verdict"),
    ('End with "Verdict: 1", "Verdict: 2" or "Verdict: tie".', "invalid", "no_verdict"),
    ("Verdict: maybe", "invalid", "unreadable_verdict"),
    ("I prefer Set 1", "invalid", "no_verdict"),
])
def test_judge_reply_and_reason(text, expected, reason):
    assert parse_judge_reply(text) == (expected, reason)
    assert reason is None or reason in VERDICT_REASONS


def test_correcting_the_students_guess_is_not_a_contradiction():
    text = ("## Step-by-Step Reasoning\n1. A fact.\n\n## Final Assessment\n"
            "The answer is **NO**, not **YES** as the draft guessed.")
    assert parse_teacher_reply(text) == (False, ["A fact."], None)


def test_steps_written_as_headings_stay_steps():
    text = ("## Step-by-Step Reasoning\n### Step 1: **Where is Paris?**\nIn France.\n"
            "### 2. Is France in Europe?\nYes.\n\n### Notes\nnot a step\n\n## Final Assessment\nthe answer is: **YES**")
    assert parse_teacher(text) == (True, ["Where is Paris? In France.", "Is France in Europe? Yes."])
