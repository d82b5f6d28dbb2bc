import copy

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import processors

from clarify import attribution, scoring
from clarify.attribution import (
    SHARE_COLUMNS,
    attribute,
    attribution_verdict,
    draft_prompt,
    integrated_gradients,
    path_points,
    segment_shares,
    summarize_attribution,
)
from clarify.errors import InputError
from clarify.models import load_model, load_tokenizer, prepare_student
from clarify.prompts import answer_prompt, draft_context, parse_draft, parse_raw_draft
from clarify.scoring import AnswerTokens, answer_tokens, score_prompts

QUESTIONS = [
    "Is the sky blue?",
    "Could a llama birth twice during the War in Vietnam (1945-46)?",
    "Did Aristotle use a laptop?",
]
CONTEXT = draft_context(parse_draft("Yes - because.\nQuestions: Is it? Why so?"))
PROMPTS = [answer_prompt(q, CONTEXT) for q in QUESTIONS]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model, with a tokenizer that prepends BOS (like Llama and Gemma tokenizers do)."""
    out = tmp_path_factory.mktemp("student")
    manifest = prepare_student(str(tiny_model_dir), out / "hf", out / "manifest.json")
    tokenizer = load_tokenizer(manifest["path"])
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos[0]} $A", pair=f"{bos[0]} $A $B", special_tokens=[bos])
    assert tokenizer(PROMPTS[0])["input_ids"][0] == tokenizer.bos_token_id
    return load_model(manifest, {"dtype": "float32"}), tokenizer


@pytest.fixture(scope="module")
def padded(tiny):
    """The tiny model with a real (non-zero) pad embedding.

    The tiny Llama's pad row is zero (``padding_idx``), which would make the "pad" baseline the
    "zero" baseline; real checkpoints have a trained pad row.
    """
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():
        row = model.get_input_embeddings().weight[tokenizer.pad_token_id]
        row.copy_(torch.randn(row.shape, generator=torch.Generator().manual_seed(1)) * 0.02)
    return model, tokenizer


def brute_force_margin(model, tokenizer, prompt, tokens):
    """log P(yes) - log P(no), each continuation teacher-forced in one unpadded pass with full logits."""
    def logprob(continuation):
        ids = tokenizer(prompt)["input_ids"] + list(continuation)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        start = len(ids) - len(continuation)
        return sum(logprobs[start + j - 1, tok].item() for j, tok in enumerate(continuation))
    return logprob(tokens.yes) - logprob(tokens.no)


# The zero baseline needs more steps: with every embedding scaled towards 0, the first RMSNorm
# (eps 1e-6, embedding rms ~0.02) makes f change sharply for a < ~0.01, which 64 midpoints miss
# (errors 3e-3..6e-2 there; 256 steps give 4e-4..1.2e-3). The pad path is smooth (~1e-5 at 64).
@pytest.mark.parametrize("baseline, steps", [("pad", 64), ("zero", 256)])
def test_completeness_and_margin_matches_scorer(padded, baseline, steps):
    model, tokenizer = padded
    scored = score_prompts(model, tokenizer, PROMPTS, batch_size=3, progress=False)
    for prompt, (yes, no) in zip(PROMPTS, scored):
        result = integrated_gradients(model, tokenizer, prompt, steps=steps, baseline=baseline, batch_size=64)
        change = result["margin"] - result["baseline_margin"]
        assert result["margin"] == pytest.approx(yes - no, abs=1e-4)
        assert abs(change) > 1e-2, "a degenerate baseline would make completeness trivial"
        assert result["completeness_error"] == pytest.approx(abs(result["attributions"].sum() - change))
        assert result["completeness_error"] < 1e-2 * max(1.0, abs(change))
        assert result["attributions"].dtype == np.float64
        lengths = {len(result[key]) for key in ("attributions", "input_ids", "tokens", "offsets")}
        assert lengths == {len(result["input_ids"])}
        assert result["input_ids"] == tokenizer(prompt)["input_ids"]


def test_pad_baseline_is_the_pad_embedding(tiny, padded):
    pad = integrated_gradients(*padded, PROMPTS[0], steps=1, baseline="pad")
    zero = integrated_gradients(*padded, PROMPTS[0], steps=1, baseline="zero")
    assert abs(pad["baseline_margin"] - zero["baseline_margin"]) > 1e-2
    # the tiny model's own pad row is zero, so there the two baselines coincide
    pad = integrated_gradients(*tiny, PROMPTS[0], steps=1, baseline="pad")
    zero = integrated_gradients(*tiny, PROMPTS[0], steps=1, baseline="zero")
    assert pad["baseline_margin"] == zero["baseline_margin"]


def test_steps_change_attributions_not_their_sum_and_special_tokens_get_zero(padded):
    model, tokenizer = padded
    coarse = integrated_gradients(model, tokenizer, PROMPTS[1], steps=4, batch_size=4)
    fine = integrated_gradients(model, tokenizer, PROMPTS[1], steps=64, batch_size=64)
    assert not np.allclose(coarse["attributions"], fine["attributions"], atol=1e-6)
    assert coarse["margin"] == fine["margin"] and coarse["baseline_margin"] == fine["baseline_margin"]
    change = fine["margin"] - fine["baseline_margin"]
    for result in (coarse, fine):
        assert result["attributions"].sum() == pytest.approx(change, abs=1e-2 * max(1.0, abs(change)))
    assert fine["completeness_error"] < coarse["completeness_error"]
    # Chunking the alphas does not change the result.
    chunked = integrated_gradients(model, tokenizer, PROMPTS[1], steps=64, batch_size=5)
    np.testing.assert_allclose(chunked["attributions"], fine["attributions"], atol=1e-5)
    # BOS keeps its real embedding in the baseline: exactly zero attribution, offsets (0, 0).
    assert fine["input_ids"][0] == tokenizer.bos_token_id
    assert fine["attributions"][0] == 0.0 and fine["offsets"][0] == (0, 0)
    assert fine["tokens"][0] == tokenizer.bos_token
    assert np.count_nonzero(fine["attributions"][1:]) == len(fine["attributions"]) - 1
    # Other tokens' offsets slice out their text.
    assert "".join(fine["tokens"][1:]) == PROMPTS[1]


def test_multi_token_answers_are_teacher_forced(padded, monkeypatch):
    model, tokenizer = padded
    real = answer_tokens(tokenizer)
    fake = AnswerTokens(yes=(real.yes[0], real.no[0]), no=(real.no[0], real.yes[0]))
    monkeypatch.setattr(attribution, "answer_tokens", lambda tok, prompt=None: fake)
    monkeypatch.setattr(scoring, "answer_tokens", lambda tok, prompt=None: fake)
    scored = score_prompts(model, tokenizer, PROMPTS[:2], batch_size=2, progress=False)
    for prompt, (yes, no) in zip(PROMPTS[:2], scored):
        result = integrated_gradients(model, tokenizer, prompt, steps=64, batch_size=32)
        expected = brute_force_margin(model, tokenizer, prompt, fake)
        assert result["margin"] == pytest.approx(expected, abs=1e-4)
        assert result["margin"] == pytest.approx(yes - no, abs=1e-4)
        change = result["margin"] - result["baseline_margin"]
        assert result["completeness_error"] < 1e-2 * max(1.0, abs(change))
        # Only the prompt's tokens are attributed, not the teacher-forced continuation.
        assert len(result["attributions"]) == len(tokenizer(prompt)["input_ids"])


def test_draft_prompt_spans():
    question = "  Is   the sky blue? "
    prompt, spans = draft_prompt(question, "\n" + CONTEXT + "  ")
    assert prompt == answer_prompt(question, CONTEXT)
    assert prompt[slice(*spans["question"])] == "Is the sky blue?"
    assert prompt[slice(*spans["draft"])] == CONTEXT
    prompt, spans = draft_prompt(question, None)
    assert prompt == "Question: Is the sky blue?\nAnswer:" and set(spans) == {"question"}
    assert prompt[slice(*spans["question"])] == "Is the sky blue?"
    assert set(draft_prompt(question, "  \n")[1]) == {"question"}


def test_segment_shares_by_hand():
    spans = {"question": (10, 20), "draft": (21, 30)}
    offsets = [(0, 0), (0, 9), (9, 12), (12, 20), (20, 21), (19, 23), (25, 30), (30, 37)]
    attributions = [5.0, 1.0, -2.0, 1.0, 0.5, -3.0, 1.5, -1.0]
    # question: (9,12) 2 + (12,20) 1 + (19,23) 3 (overlaps both; question comes first) = 6
    # draft: (25,30) 1.5; template: BOS 5 + 1 + newline 0.5 + 1 = 7.5; total 15
    shares = segment_shares(offsets, attributions, spans)
    assert shares == pytest.approx({"question": 6 / 15, "draft": 1.5 / 15, "template": 7.5 / 15})
    assert sum(shares.values()) == pytest.approx(1.0)
    # "first by position", not by dict order
    reordered = segment_shares(offsets, attributions, {"draft": (21, 30), "question": (10, 20)})
    assert reordered == pytest.approx(shares)
    assert segment_shares(offsets, np.zeros(len(offsets)), spans) == {"question": 0.0, "draft": 0.0, "template": 0.0}


def test_bad_settings_raise_input_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(InputError, match="baseline"):
        integrated_gradients(model, tokenizer, PROMPTS[0], baseline="mean")
    with pytest.raises(InputError, match="steps"):
        integrated_gradients(model, tokenizer, PROMPTS[0], steps=0)


def test_slow_tokenizer_is_refused(tiny):
    model, tokenizer = tiny

    class Slow:
        is_fast = False

    with pytest.raises(InputError, match="fast tokenizer"):
        integrated_gradients(model, Slow(), PROMPTS[0])


def test_attribute_frame(tiny):
    model, tokenizer = tiny
    records = [{"qid": f"q{i}", "question": q, "answer": i % 2 == 0} for i, q in enumerate(QUESTIONS)]
    contexts = [CONTEXT, None, CONTEXT]
    frame = attribute(model, tokenizer, records, contexts, steps=16, batch_size=16, progress=False)
    assert list(frame.columns) == [
        "qid", "gold", "n_tokens", "question_tokens", "draft_tokens", "guess_tokens", "subquestion_tokens",
        "margin", "baseline_margin", "margin_change", "attribution_sum", "completeness_error", "relative_error",
        "steps", "points_evaluated", "converged", "small_change", "draft_share", "guess_share",
        "subquestions_share", "draft_unsplit_share", "question_share", "template_share", "top_tokens"]
    assert list(frame["qid"]) == ["q0", "q1", "q2"] and list(frame["gold"]) == [True, False, True]
    shares = frame[["draft_share", "question_share", "template_share"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    assert frame.loc[1, "draft_tokens"] == 0 and frame.loc[1, "draft_share"] == 0.0
    assert (frame.loc[[0, 2], "draft_tokens"] > 0).all() and (frame["question_tokens"] > 0).all()
    assert (frame["question_tokens"] + frame["draft_tokens"] < frame["n_tokens"]).all()
    scored = score_prompts(model, tokenizer, [answer_prompt(q, c) for q, c in zip(QUESTIONS, contexts)],
                           progress=False)
    np.testing.assert_allclose(frame["margin"], scored[:, 0] - scored[:, 1], atol=1e-4)
    change = (frame["margin"] - frame["baseline_margin"]).abs().clip(lower=1e-6)
    np.testing.assert_allclose(frame["relative_error"], frame["completeness_error"] / change)
    assert all(top.count("(") == 5 for top in frame["top_tokens"])


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_path_points_are_a_quadrature_of_the_unit_interval(method):
    for steps in (1, 7, 50):
        points, weights = path_points(steps, method)
        assert len(points) == len(weights) == steps
        assert np.all((points > 0) & (points < 1)) and weights.sum() == pytest.approx(1.0)
        # exact for x^2 once there are enough points (Gauss-Legendre: 2 points; midpoint: approximately)
        if steps >= 2:
            assert (weights * points ** 2).sum() == pytest.approx(1 / 3, abs=0.1 / steps ** 2)
    with pytest.raises(InputError, match="attribution.method"):
        path_points(4, "trapezoid")


def test_first_token_is_kept_in_the_baseline_so_completeness_holds_at_few_points(padded, tiny_model_dir):
    """Without BOS the first token is the attention sink; interpolating it from pad broke completeness
    on Qwen2.5-1.5B (relative error 4-11x the margin change at 128 points). Kept, it is exact here at 32."""
    model, _ = padded
    tokenizer = load_tokenizer(str(tiny_model_dir))  # the tiny tokenizer's own post-processor: no BOS, as Qwen's
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        assert ids[0] not in tokenizer.all_special_ids, "this test needs a tokenizer without BOS"
        kept = integrated_gradients(model, tokenizer, prompt, steps=32, batch_size=32)
        moved = integrated_gradients(model, tokenizer, prompt, steps=32, batch_size=32, keep_first_token=False)
        assert kept["attributions"][0] == 0.0 and moved["attributions"][0] != 0.0
        assert kept["margin"] == moved["margin"] and kept["baseline_margin"] != moved["baseline_margin"]
        change = kept["margin"] - kept["baseline_margin"]
        assert kept["completeness_error"] < 1e-2 * max(1.0, abs(change))


def test_simpson_points_nest_and_integrate_cubics_exactly():
    for steps in (2, 4, 16):
        points, weights = path_points(steps, "simpson")
        assert len(points) == steps + 1 and points[0] == 0.0 and points[-1] == 1.0
        assert weights.sum() == pytest.approx(1.0)
        assert (weights * points ** 3).sum() == pytest.approx(0.25)
        assert set(points) <= set(path_points(2 * steps, "simpson")[0])  # doubling reuses every point
    for steps in (1, 3):
        with pytest.raises(InputError, match="even"):
            path_points(steps, "simpson")


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 16, 33])
def test_clenshaw_curtis_weights_sum_to_one_and_integrate_polynomials_of_degree_steps_exactly(steps):
    points, weights = path_points(steps, "clenshawcurtis")
    assert len(points) == len(weights) == steps + 1 and points[0] == 0.0 and points[-1] == 1.0
    assert np.all(np.diff(points) > 0) and np.all(weights > 0)
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)
    for k in range(steps + 1):  # n + 1 distinct nodes exact to degree n: the interpolatory rule, unique
        assert (weights * points ** k).sum() == pytest.approx(1 / (k + 1), abs=1e-14), k
    # the Chebyshev extrema (1 - cos(pi k / n)) / 2, symmetric about 1/2 with symmetric weights
    np.testing.assert_allclose(points, (1 - np.cos(np.pi * np.arange(steps + 1) / steps)) / 2, atol=1e-15)
    np.testing.assert_allclose(weights, weights[::-1], atol=1e-15)


def test_clenshaw_curtis_points_nest_bit_exactly_and_need_one_interval():
    for steps in (1, 2, 3, 5, 12, 64, 96, 512):
        points = path_points(steps, "clenshawcurtis")[0]
        doubled = path_points(2 * steps, "clenshawcurtis")[0]
        assert set(points.tolist()) <= set(doubled.tolist())  # the path cache is keyed by these floats
        assert np.array_equal(doubled[::2], points)
        assert set(points.tolist()) <= set(path_points(4 * steps, "clenshawcurtis")[0].tolist())
    with pytest.raises(InputError, match="clenshawcurtis needs a number of intervals >= 1"):
        path_points(0, "clenshawcurtis")


def test_config_schema_offers_every_method_and_clenshaw_curtis_validates():
    from pathlib import Path

    from clarify.config import load_schema, validate_config

    schema_path = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    assert load_schema(schema_path)["properties"]["attribution"]["properties"]["method"]["enum"] == \
        list(attribution.METHODS)
    config = validate_config({"attribution": {"method": "clenshawcurtis", "steps": 1}}, schema_path)
    attribution.check_settings(config["attribution"])


@pytest.mark.parametrize("baseline, tolerance", [("pad", 1e-3), ("zero", 0.05), ("zero", 1e-3)])
def test_clenshaw_curtis_converges_with_no_more_gradients_than_gauss_legendre(padded, baseline, tolerance):
    """Nested, Clenshaw-Curtis pays steps + 1 gradients for its last level; Gauss-Legendre pays every
    level. Measured on the tiny model (docs/decisions.md): zero baseline at 5%, 33 against 62 per
    prompt; pad at 5% per prompt it can cost more (9 against 6 on the first prompt: Gauss-Legendre
    is within at 4 points), so that case is compared summed over the prompts."""
    model, tokenizer = padded
    totals = {}
    for method in ("gausslegendre", "clenshawcurtis"):
        results = [integrated_gradients(model, tokenizer, prompt, steps=2, batch_size=64, method=method,
                                        baseline=baseline, max_steps=512, tolerance=tolerance) for prompt in PROMPTS]
        assert all(result["converged"] for result in results), method
        totals[method] = [result["points_evaluated"] for result in results]
        if method == "clenshawcurtis":  # every level's points reused
            assert [result["points_evaluated"] for result in results] == [result["steps"] + 1 for result in results]
    assert all(cc <= gl for cc, gl in zip(totals["clenshawcurtis"], totals["gausslegendre"])), totals


def test_clenshaw_curtis_costs_no_more_than_gauss_legendre_summed_over_prompts_at_five_percent(padded):
    model, tokenizer = padded
    points = {method: sum(integrated_gradients(model, tokenizer, prompt, steps=2, batch_size=64, method=method,
                                               max_steps=512, tolerance=0.05)["points_evaluated"]
                          for prompt in PROMPTS)
              for method in ("gausslegendre", "clenshawcurtis")}
    assert points["clenshawcurtis"] <= points["gausslegendre"], points


def test_adaptive_rule_doubles_until_the_tolerance_is_met(padded):
    model, tokenizer = padded
    doubled = 0
    for prompt in PROMPTS:
        result = integrated_gradients(model, tokenizer, prompt, steps=2, batch_size=64, max_steps=512, tolerance=0.05)
        change = abs(result["margin"] - result["baseline_margin"])
        levels = [steps for steps, _ in result["history"]]
        assert levels == [2 * 2 ** k for k in range(len(levels))] and result["steps"] == levels[-1] < 512
        assert result["converged"] and result["completeness_error"] <= 0.05 * change
        assert all(error > 0.05 * change for _, error in result["history"][:-1])  # it stopped at the first level within
        assert result["points_evaluated"] == sum(levels)  # Gauss-Legendre does not nest: every level recomputed
        fixed = integrated_gradients(model, tokenizer, prompt, steps=result["steps"], batch_size=64)
        np.testing.assert_allclose(result["attributions"], fixed["attributions"], rtol=1e-6, atol=1e-9)
        assert fixed["converged"] is None and fixed["history"] == [(result["steps"], fixed["completeness_error"])]
        doubled += len(levels) > 1
    assert doubled, "2 points should be too few for some prompt, or the test shows nothing"


@pytest.mark.parametrize("method, evaluated", [("gausslegendre", 2 + 4 + 8), ("simpson", 9), ("clenshawcurtis", 9)])
def test_adaptive_rule_stops_at_max_steps_and_reuses_nested_points(padded, method, evaluated):
    model, tokenizer = padded
    result = integrated_gradients(model, tokenizer, PROMPTS[0], steps=2, batch_size=4, method=method,
                                  max_steps=12, tolerance=1e-12)
    assert [steps for steps, _ in result["history"]] == [2, 4, 8] and result["steps"] == 8
    assert result["converged"] is False and result["points_evaluated"] == evaluated
    with pytest.raises(InputError, match="max_steps"):
        integrated_gradients(model, tokenizer, PROMPTS[0], steps=8, max_steps=4, tolerance=0.05)
    with pytest.raises(InputError, match="tolerance"):
        integrated_gradients(model, tokenizer, PROMPTS[0], steps=8, tolerance=0)


def test_small_margin_changes_converge_on_the_absolute_floor(padded):
    model, tokenizer = padded
    result = integrated_gradients(model, tokenizer, PROMPTS[0], steps=2, batch_size=2, max_steps=2, tolerance=0.05)
    floor = 100 * result["completeness_error"] / 0.05  # a floor this large accepts the 2-point error
    assert not result["converged"]
    assert integrated_gradients(model, tokenizer, PROMPTS[0], steps=2, batch_size=2, max_steps=2, tolerance=0.05,
                                min_margin_change=floor)["converged"]


GUESS_DRAFT = parse_raw_draft("Answer: No - it is far too cold there.\nQuestions: How cold is it? Is ice solid?")
NO_GUESS_DRAFT = parse_raw_draft("Questions: How cold is it? Is ice solid?")
UNPARSED_DRAFT = {**parse_raw_draft("Answer: maybe so"), "raw": "Answer: maybe so"}


def test_draft_prompt_splits_the_draft_into_guess_and_subquestions():
    prompt, spans = draft_prompt(" Is ice  cold? ", GUESS_DRAFT)
    assert prompt == answer_prompt("Is ice cold?", draft_context(GUESS_DRAFT))
    assert prompt[slice(*spans["guess"])] == "Draft guess: No - it is far too cold there.\n"
    assert prompt[slice(*spans["subquestions"])] == "Draft questions: How cold is it? Is ice solid?"
    assert spans["guess"][0] == spans["draft"][0] and spans["subquestions"][1] == spans["draft"][1]
    assert "unsplit" not in spans
    prompt, spans = draft_prompt("Is ice cold?", NO_GUESS_DRAFT)
    assert prompt[slice(*spans["subquestions"])] == prompt[slice(*spans["draft"])] == draft_context(NO_GUESS_DRAFT)
    assert "guess" not in spans
    prompt, spans = draft_prompt("Is ice cold?", UNPARSED_DRAFT)
    assert prompt[slice(*spans["unsplit"])] == "Draft: maybe so" and set(spans) == {"question", "draft", "unsplit"}
    assert draft_prompt("Is ice cold?", None)[1].keys() == {"question"}


def test_shares_of_guess_subquestions_question_and_template_sum_to_one(tiny):
    model, tokenizer = tiny
    records = [{"qid": f"q{i}", "question": QUESTIONS[i], "answer": True} for i in range(3)]
    frame = attribute(model, tokenizer, records, [GUESS_DRAFT, NO_GUESS_DRAFT, UNPARSED_DRAFT], steps=8,
                      batch_size=8, progress=False)
    np.testing.assert_allclose(frame[SHARE_COLUMNS].sum(axis=1), 1.0)
    np.testing.assert_allclose(frame["draft_share"] + frame["question_share"] + frame["template_share"], 1.0)
    np.testing.assert_allclose(frame["draft_share"],
                               frame[["guess_share", "subquestions_share", "draft_unsplit_share"]].sum(axis=1))
    guess, no_guess, unparsed = (frame.iloc[i] for i in range(3))
    assert guess["guess_share"] > 0 and guess["subquestions_share"] > 0 and guess["draft_unsplit_share"] == 0
    assert guess["guess_tokens"] > 0 and guess["subquestion_tokens"] > 0
    assert guess["draft_tokens"] == guess["guess_tokens"] + guess["subquestion_tokens"]
    assert no_guess["guess_share"] == 0 and no_guess["guess_tokens"] == 0 and no_guess["subquestions_share"] > 0
    assert unparsed["draft_unsplit_share"] > 0 and unparsed["guess_share"] == unparsed["subquestions_share"] == 0


def _table(rows):
    base = {"draft_share": 0.5, "guess_share": 0.3, "subquestions_share": 0.2, "draft_unsplit_share": 0.0,
            "question_share": 0.3, "template_share": 0.2, "draft_tokens": 10, "guess_tokens": 6,
            "subquestion_tokens": 4, "steps": 64, "points_evaluated": 64}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_summary_uses_converged_questions_and_counts_small_changes_apart():
    table = _table([
        {"model": "a", "margin_change": 2.0, "completeness_error": 0.02, "relative_error": 0.01, "converged": True,
         "small_change": False, "subquestions_share": 0.4},
        {"model": "a", "margin_change": -4.0, "completeness_error": 0.1, "relative_error": 0.025, "converged": True,
         "small_change": False, "subquestions_share": 0.2},
        {"model": "a", "margin_change": 2.0, "completeness_error": 0.88, "relative_error": 0.44, "converged": False,
         "small_change": False, "subquestions_share": 0.9, "steps": 512, "points_evaluated": 1020},
        {"model": "a", "margin_change": 0.04, "completeness_error": 0.046, "relative_error": 1.15, "converged": True,
         "small_change": True, "subquestions_share": 0.9},
        {"model": "b", "margin_change": 1.0, "completeness_error": 0.5, "relative_error": 0.5, "converged": False,
         "small_change": False},
    ])
    summary = summarize_attribution(table).set_index("model")
    a = summary.loc["a"]
    assert (a["n"], a["n_small_change"], a["n_measured"], a["n_converged"]) == (4, 1, 3, 2)
    assert a["converged_share"] == pytest.approx(2 / 3)
    assert a["error_share"] == pytest.approx((0.02 + 0.1 + 0.88) / 8.0)
    assert a["subquestions_share"] == pytest.approx(0.3)  # converged, measured questions only
    assert a["max_steps_used"] == 512 and a["median_relative_error"] == pytest.approx(0.025)
    assert a["subquestions_low"] <= 0.3 <= a["subquestions_high"]
    assert summary.loc["b", "n_converged"] == 0 and np.isnan(summary.loc["b", "subquestions_share"])

    assert attribution_verdict(a, target_share=0.2, min_converged_share=0.6)[0] == "met"
    assert attribution_verdict(a, target_share=0.35, min_converged_share=0.6)[0] == "not met"
    verdict, reason = attribution_verdict(a, target_share=0.2, min_converged_share=0.8)
    assert verdict == "not measured" and "2/3" in reason and "max_steps" in reason
    verdict, reason = attribution_verdict(summary.loc["b"], target_share=0.2, min_converged_share=0.8)
    assert verdict == "not measured" and "0/1" in reason
    only_small = summarize_attribution(table[table["small_change"]]).iloc[0]
    verdict, reason = attribution_verdict(only_small, target_share=0.2, min_converged_share=0.8)
    assert verdict == "not measured" and "min_margin_change" in reason


def test_out_of_memory_halves_the_path_batch_and_changes_nothing(padded, monkeypatch, caplog):
    """Attribution shares the GPU with other jobs in a real run: a batch of path points that runs
    out of memory is retried at half the size, with the same attributions, and the size that fit
    is kept for the next doubling."""
    model, tokenizer = padded
    expected = integrated_gradients(model, tokenizer, PROMPTS[0], steps=8, batch_size=16, max_steps=32, tolerance=1e-9)
    real, sizes = model.forward, []

    def small_memory(*args, **kwargs):
        if kwargs["inputs_embeds"].requires_grad:                    # the path, not the end-point margins
            sizes.append(kwargs["inputs_embeds"].shape[0])
        if kwargs["inputs_embeds"].shape[0] > 3 and kwargs["inputs_embeds"].requires_grad:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", small_memory)
    got = integrated_gradients(model, tokenizer, PROMPTS[0], steps=8, batch_size=16, max_steps=32, tolerance=1e-9)
    np.testing.assert_allclose(got["attributions"], expected["attributions"], rtol=1e-6, atol=1e-9)
    assert [steps for steps, _ in got["history"]] == [steps for steps, _ in expected["history"]] == [8, 16, 32]
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2          # 8 points fail, 4 fail, then 2 from then on
    assert "attribution path: out of memory at 8 points a batch; going on with 4" in caplog.text
