import numpy as np
import pandas as pd
import pytest

from clarify.ablations import CONDITIONS, ablation_contexts, ablation_table, derangement, run_ablation
from clarify.drafts import draft_from_raw
from clarify.errors import InputError
from clarify.models import load_model, load_tokenizer, prepare_student
from clarify.prompts import draft_context
from clarify.scoring import score_questions
from clarify.stats import mcnemar


@pytest.mark.parametrize("n", [2, 3, 5, 17, 100])
@pytest.mark.parametrize("seed", [0, 1, 42, 1234])
def test_derangement_never_keeps_a_question_with_its_own_draft(n, seed):
    order = derangement(n, seed)
    assert sorted(order.tolist()) == list(range(n))  # a permutation: every draft used once
    assert not np.any(order == np.arange(n))
    assert np.array_equal(order, derangement(n, seed))  # seeded


def test_derangement_depends_on_the_seed_and_refuses_one_question():
    assert not np.array_equal(derangement(50, 1), derangement(50, 2))
    with pytest.raises(InputError, match="at least 2 questions"):
        derangement(1, 0)


def _drafts(n):
    return [draft_from_raw(f"Answer: Yes - reason {i}.\nQuestions: Is {i} odd? Is {i} prime?") for i in range(n)]


def test_shuffled_contexts_are_other_questions_drafts():
    drafts = _drafts(9)
    contexts, source = ablation_contexts(drafts, "shuffled_draft", seed=7)
    for i, (context, j) in enumerate(zip(contexts, source)):
        assert j != i and context == draft_context(drafts[j]) != draft_context(drafts[i])
    own, own_source = ablation_contexts(drafts, "draft", seed=7)
    assert own == [draft_context(d) for d in drafts] and own_source == list(range(9))
    assert ablation_contexts(drafts, "no_draft", seed=7)[0] == [None] * 9
    with pytest.raises(InputError, match="unknown ablation condition 'backwards'"):
        ablation_contexts(drafts, "backwards", seed=7)


def test_draft_from_raw_reads_the_stored_draft_text():
    draft = draft_from_raw("Answer: No - too cold.\nQuestions: How cold is it? Is ice solid?")
    assert draft["guess"] is False and draft["reason"] == "too cold."
    assert draft["questions"] == ["How cold is it?", "Is ice solid?"] and draft["parse_ok"]
    assert draft_from_raw("Answer: Yes")["questions"] == []


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    manifest = prepare_student(str(tiny_model_dir), out / "hf", out / "manifest.json")
    return load_model(manifest, {"dtype": "float32"}), load_tokenizer(manifest["path"])


def test_run_ablation_scores_each_condition_like_the_evaluator(tiny):
    model, tokenizer = tiny
    records = [{"qid": f"q{i}", "question": f"Is {i} a lucky number?", "answer": i % 2 == 0} for i in range(6)]
    raws = [f"Answer: {'Yes' if i % 3 else 'No'} - guess {i}.\nQuestions: Why {i}? How {i}?" for i in range(6)]
    draft_scores = pd.DataFrame({"qid": [r["qid"] for r in records], "generated": raws})
    frame = run_ablation(model, tokenizer, records, draft_scores, seed=3, batch_size=4, progress=False)
    assert len(frame) == 3 * len(records) and list(dict.fromkeys(frame["condition"])) == list(CONDITIONS)
    drafts = [draft_from_raw(raw) for raw in raws]
    own = score_questions(model, tokenizer, records, [draft_context(d) for d in drafts], batch_size=2, progress=False)
    plain = score_questions(model, tokenizer, records, None, batch_size=2, progress=False)
    got = {c: frame[frame["condition"] == c].reset_index(drop=True) for c in CONDITIONS}
    np.testing.assert_allclose(got["draft"]["margin"], own["margin"], atol=1e-5)
    np.testing.assert_allclose(got["no_draft"]["margin"], plain["margin"], atol=1e-5)
    assert list(got["draft"]["draft_from"]) == list(got["draft"]["qid"])
    assert got["no_draft"]["draft_from"].isna().all()
    assert all(a != b for a, b in zip(got["shuffled_draft"]["qid"], got["shuffled_draft"]["draft_from"]))
    with pytest.raises(InputError, match="do not cover the eval questions"):
        run_ablation(model, tokenizer, records[::-1], draft_scores, seed=3, batch_size=4, progress=False)


def _frame(correct: dict[str, list[bool]]) -> pd.DataFrame:
    rows = []
    for condition, flags in correct.items():
        for i, ok in enumerate(flags):
            rows.append({"qid": f"q{i}", "condition": condition, "correct": ok, "pred": ok})
    return pd.DataFrame(rows)


def test_ablation_table_numbers_and_criteria_by_hand():
    n = 40
    draft = [True] * 30 + [False] * 10              # 75%
    no_draft = [True] * 20 + [False] * 20           # 50%: 10 questions lost, none gained
    shuffled = [True] * 10 + [False] * 30           # 25%: 10 more lost
    weak = _frame({"draft": draft, "no_draft": draft[:39] + [True], "shuffled_draft": draft})
    table = ablation_table({"strong": _frame({"draft": draft, "no_draft": no_draft, "shuffled_draft": shuffled}),
                            "weak": weak}, min_drop_pp=3.0, alpha=0.05)
    strong = table[table["model"] == "strong"].set_index("condition")
    assert strong.loc["draft", "accuracy"] == 0.75 and strong.loc["no_draft", "accuracy"] == 0.5
    assert strong.loc["no_draft", "diff_vs_draft_pp"] == pytest.approx(-25.0)
    assert strong.loc["shuffled_draft", "diff_vs_no_draft_pp"] == pytest.approx(-25.0)
    assert strong.loc["no_draft", "p_value"] == pytest.approx(mcnemar(draft, no_draft)["p_value"])
    assert strong.loc["no_draft", "p_value"] == pytest.approx(2 * 0.5 ** 10)  # exact: 10 discordant, all one way
    assert strong["no_draft_drop_met"].all() and strong["shuffled_drop_further_met"].all()
    assert n == strong.loc["draft", "n"]
    weak_rows = table[table["model"] == "weak"].set_index("condition")
    assert weak_rows.loc["no_draft", "diff_vs_draft_pp"] == pytest.approx(2.5)  # no drop: a gain
    assert not weak_rows["no_draft_drop_met"].any() and not weak_rows["shuffled_drop_further_met"].any()
    # A big enough drop that the paired test cannot confirm is not met.
    small = _frame({"draft": [True] * 3 + [False] * 2, "no_draft": [False] * 5, "shuffled_draft": [False] * 5})
    row = ablation_table({"m": small}, min_drop_pp=3.0).iloc[0]
    assert row["no_draft_drop_pp"] == pytest.approx(60.0) and not row["no_draft_drop_met"]
