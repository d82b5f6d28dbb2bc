import numpy as np
import pandas as pd
import pytest

from clarify import evaluation
from clarify.errors import InputError
from clarify.evaluation import MODES, evaluate, majority_vote, mode_settings
from clarify.models import load_model, load_tokenizer

RECORDS = [
    {"qid": "a", "question": "Is the sky blue?", "answer": True},
    {"qid": "b", "question": "Could a llama birth twice during the War in Vietnam (1945-46)?", "answer": False},
    {"qid": "c", "question": "Did Aristotle use a laptop?", "answer": False},
    {"qid": "d", "question": "Is a platypus a mammal?", "answer": True},
    {"qid": "e", "question": "Would a Monoamine Oxidase candy bar cheer up a depressed friend?", "answer": False},
]
EVAL = {"batch_size": 2, "cot_max_new_tokens": 10, "sc_samples": 3, "sc_temperature": 1.0, "sc_seed": 7}
SCORE_COLUMNS = ["qid", "gold", "logp_yes", "logp_no", "margin", "pred", "correct"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"}), load_tokenizer(str(tiny_model_dir))


def test_registry_names_the_modes_and_their_settings():
    assert list(MODES) == ["direct", "draft", "cot", "cot_sc"]
    assert mode_settings("direct", EVAL) == {}
    assert mode_settings("draft", EVAL, {"max_new_tokens": 4}) == {"drafts": {"max_new_tokens": 4}}
    assert mode_settings("cot_sc", EVAL) == {"cot_max_new_tokens": 10, "sc_samples": 3, "sc_temperature": 1.0,
                                             "sc_seed": 7}


def test_unknown_mode_and_missing_settings_are_one_line_errors(tiny):
    model, tokenizer = tiny
    with pytest.raises(InputError, match="unknown eval mode 'nope'"):
        evaluate(model, tokenizer, RECORDS, "nope", EVAL, progress=False)
    with pytest.raises(InputError, match="eval mode 'cot_sc': settings lack sc_samples"):
        evaluate(model, tokenizer, RECORDS, "cot_sc", {"batch_size": 2, "cot_max_new_tokens": 4, "sc_temperature": 1.0,
                                                        "sc_seed": 0}, progress=False)


def test_cot_sc_with_one_greedy_sample_equals_cot(tiny):
    model, tokenizer = tiny
    cot = evaluate(model, tokenizer, RECORDS, "cot", EVAL, progress=False)
    sc = evaluate(model, tokenizer, RECORDS, "cot_sc", {**EVAL, "sc_samples": 1, "sc_temperature": 0.0}, progress=False)
    assert list(sc.columns[:len(SCORE_COLUMNS)]) == SCORE_COLUMNS == list(cot.columns[:len(SCORE_COLUMNS)])
    pd.testing.assert_frame_equal(sc[SCORE_COLUMNS], cot[SCORE_COLUMNS])
    assert [texts[0] for texts in sc["generated"]] == list(cot["generated"])
    assert list(sc["gen_tokens"]) == list(cot["gen_tokens"].astype(float))
    assert list(sc["hit_limit"]) == list(cot["hit_limit"].astype(int))
    assert (sc["sc_samples"] == 1).all() and (sc["sc_yes_votes"] == sc["pred"].astype(int)).all()


def test_cot_sc_is_seeded_and_samples_differ(tiny):
    model, tokenizer = tiny
    first = evaluate(model, tokenizer, RECORDS, "cot_sc", EVAL, progress=False)
    second = evaluate(model, tokenizer, RECORDS, "cot_sc", {**EVAL, "batch_size": 4}, progress=False)
    # same predictions and texts whatever the batch size (per-sample seeds)
    assert list(first["pred"]) == list(second["pred"])
    assert [list(t) for t in first["generated"]] == [list(t) for t in second["generated"]]
    np.testing.assert_allclose(first["margin"], second["margin"], atol=1e-4)
    assert all(len(texts) == 3 for texts in first["generated"])
    assert any(len(set(texts)) > 1 for texts in first["generated"])  # T=1 on a random model: samples differ
    other = evaluate(model, tokenizer, RECORDS, "cot_sc", {**EVAL, "sc_seed": 8}, progress=False)
    assert [list(t) for t in other["generated"]] != [list(t) for t in first["generated"]]
    # the frame stores in parquet (list columns included) and reads back the same
    assert list(first.columns) == SCORE_COLUMNS + ["sc_samples", "sc_yes_votes", "sc_yes_share", "sc_margins",
                                                   "generated", "gen_tokens", "hit_limit"]


def test_cot_sc_scores_every_sample_with_the_cot_scorer(tiny):
    """Each sample's margin is exactly what the scorer gives that reasoning as context."""
    model, tokenizer = tiny
    frame = evaluate(model, tokenizer, RECORDS[:2], "cot_sc", EVAL, progress=False)
    from clarify.prompts import reasoning_from_generation
    from clarify.scoring import score_questions
    for (_, row), record in zip(frame.iterrows(), RECORDS[:2]):
        contexts = [reasoning_from_generation(t) for t in row["generated"]]
        single = score_questions(model, tokenizer, [record] * 3, contexts, batch_size=1, progress=False)
        np.testing.assert_allclose(row["sc_margins"], single["margin"], atol=1e-4)
        assert row["sc_yes_votes"] == int((single["margin"] > 0).sum())


def test_cot_sc_frame_round_trips_through_parquet(tiny, tmp_path):
    model, tokenizer = tiny
    frame = evaluate(model, tokenizer, RECORDS[:2], "cot_sc", EVAL, progress=False)
    frame.to_parquet(tmp_path / "s.parquet", index=False)
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert [list(t) for t in back["generated"]] == [list(t) for t in frame["generated"]]


def test_majority_vote_and_tie_break_by_mean_margin():
    records = [{"qid": q, "answer": a} for q, a in [("maj_yes", True), ("maj_no", True), ("tie_yes", False),
                                                      ("tie_no", True), ("tie_zero", False)]]
    margins = np.array([
        [0.1, 0.2, -5.0, 0.3],    # 3 yes of 4, mean margin negative: the majority wins
        [-0.1, -0.2, 9.0, -0.5],  # 1 yes of 4, mean margin positive: still no
        [1.0, 2.0, -0.5, -0.1],   # 2-2 tie, mean +0.6: yes
        [0.5, 0.1, -2.0, -0.1],   # 2-2 tie, mean -0.375: no
        [1.0, 1.0, -1.0, -1.0],   # 2-2 tie, mean 0: no (as margin > 0 decides a single score)
    ])
    frame = majority_vote(records, margins, margins / 2 - 1, -margins / 2 - 1)
    assert list(frame["pred"]) == [True, False, True, False, False]
    assert list(frame["correct"]) == [True, False, False, False, True]
    assert list(frame["sc_yes_votes"]) == [3, 1, 2, 2, 2]
    assert list(frame["sc_yes_share"]) == [0.75, 0.25, 0.5, 0.5, 0.5]
    np.testing.assert_allclose(frame["margin"], margins.mean(axis=1))
    np.testing.assert_allclose(frame["margin"], frame["logp_yes"] - frame["logp_no"])


def test_greedy_samples_are_generated_once(tiny, monkeypatch):
    model, tokenizer = tiny
    calls = []
    real = model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    samples = evaluation.sample_reasonings(model, tokenizer, RECORDS, 4, 5, batch_size=16, progress=False)
    assert calls == [len(RECORDS)]
    assert all(len({s["text"] for s in per_question}) == 1 and len(per_question) == 4 for per_question in samples)
