"""Tests of clarify.dpo_losses against values computed by hand (plain ``math``).

Nothing here calls the module's own helpers to build an expected value: every expected loss,
gradient and threshold is worked out with ``math`` from the raw per-pair log-probs.
"""

from __future__ import annotations

import math

import pytest
import torch

from clarify.dpo_losses import LOSSES, drop_threshold, preference_loss

BETAS = (0.05, 0.1, 0.5)
REL = 1e-9

# Four pairs with distinct log-probs; margins m = h_w - h_l = [2.0, -2.0, 2.25, -4.0]
# (two positive, two negative).
PC = [-10.0, -12.5, -7.25, -20.0]   # policy, chosen
PR = [-14.0, -11.0, -9.5, -18.0]    # policy, rejected
RC = [-11.0, -12.0, -9.0, -19.0]    # reference, chosen
RR = [-13.0, -12.5, -9.0, -21.0]    # reference, rejected
NW = [5, 8, 3, 16]                  # token count of each chosen completion (rpo's length normalisation)


# ----------------------------------------------------------------------------- hand helpers

def neg_log_sigmoid(x: float) -> float:
    """-log(1 / (1 + exp(-x))), written stably with plain math."""
    if x >= 0:
        return math.log1p(math.exp(-x))
    return -x + math.log1p(math.exp(x))


def sig(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def hand_h(pc=PC, pr=PR, rc=RC, rr=RR):
    h_w = [a - b for a, b in zip(pc, rc)]
    h_l = [a - b for a, b in zip(pr, rr)]
    return h_w, h_l


def hand_margins(pc=PC, pr=PR, rc=RC, rr=RR):
    h_w, h_l = hand_h(pc, pr, rc, rr)
    return [w - l for w, l in zip(h_w, h_l)]


def t(values, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def inputs(pc=PC, pr=PR, rc=RC, rr=RR, grad: bool = False):
    return t(pc, grad), t(pr, grad), t(rc), t(rr)


def val(x: torch.Tensor) -> float:
    return float(x.detach())


def as_list(x: torch.Tensor) -> list[float]:
    return [float(v) for v in x.detach().flatten()]


def approx_list(values):
    return pytest.approx(values, rel=REL, abs=1e-12)


def test_hand_margins_have_both_signs():
    m = hand_margins()
    assert m == [2.0, -2.0, 2.25, -4.0]
    assert len(set(m)) == len(m)


# ----------------------------------------------------------------------------- sigmoid

@pytest.mark.parametrize("beta", BETAS)
def test_sigmoid_matches_hand(beta):
    m = hand_margins()
    per = [neg_log_sigmoid(beta * mi) for mi in m]
    out = preference_loss("sigmoid", *inputs(), beta)
    assert as_list(out["per_pair"]) == approx_list(per)
    assert val(out["loss"]) == pytest.approx(sum(per) / len(per), rel=REL)
    assert out["loss"].dim() == 0


@pytest.mark.parametrize("beta", BETAS)
def test_sigmoid_gradient_matches_hand(beta):
    pc, pr, rc, rr = inputs(grad=True)
    preference_loss("sigmoid", pc, pr, rc, rr, beta)["loss"].backward()
    m = hand_margins()
    n = len(m)
    assert as_list(pc.grad) == approx_list([-beta * sig(-beta * mi) / n for mi in m])
    assert as_list(pr.grad) == approx_list([beta * sig(-beta * mi) / n for mi in m])


# ----------------------------------------------------------------------------- cal_batch_mean

@pytest.mark.parametrize("beta", BETAS)
def test_cal_batch_mean_matches_hand(beta):
    m = hand_margins()
    mu = sum(m) / len(m)
    per = [neg_log_sigmoid(beta * (mi - mu)) for mi in m]
    out = preference_loss("cal_batch_mean", *inputs(), beta)
    assert as_list(out["per_pair"]) == approx_list(per)
    assert val(out["loss"]) == pytest.approx(sum(per) / len(per), rel=REL)


@pytest.mark.parametrize("beta", BETAS)
def test_cal_batch_mean_mean_is_detached(beta):
    pc, pr, rc, rr = inputs(grad=True)
    preference_loss("cal_batch_mean", pc, pr, rc, rr, beta)["loss"].backward()
    m = hand_margins()
    n = len(m)
    mu = sum(m) / n
    # mean(m) treated as a constant
    detached = [-beta * sig(-beta * (mi - mu)) / n for mi in m]
    assert as_list(pc.grad) == approx_list(detached)
    assert as_list(pr.grad) == approx_list([-g for g in detached])
    # had the mean NOT been detached, each gradient would lose the average of the others and
    # the gradients would sum to zero; make sure the fixture distinguishes the two cases
    attached = [g - sum(detached) / n for g in detached]
    assert sum(attached) == pytest.approx(0.0, abs=1e-15)
    assert sum(as_list(pc.grad)) != pytest.approx(0.0, abs=1e-6)
    assert as_list(pc.grad) != approx_list(attached)


def test_cal_batch_mean_single_pair_is_log2():
    out = preference_loss("cal_batch_mean", t([-3.0]), t([-1.0]), t([-2.0]), t([-4.0]), 0.1)
    assert val(out["loss"]) == pytest.approx(math.log(2.0), rel=REL)


# ----------------------------------------------------------------------------- cal_paper

@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("cal_weight", (1.0, 0.3))
def test_cal_paper_matches_hand(beta, cal_weight):
    h_w, h_l = hand_h()
    target = 1.0 / (2.0 * beta)
    per = [neg_log_sigmoid(w - l) + cal_weight * 0.5 * ((w - target) ** 2 + (l + target) ** 2)
           for w, l in zip(h_w, h_l)]
    out = preference_loss("cal_paper", *inputs(), beta, cal_weight=cal_weight)
    assert as_list(out["per_pair"]) == approx_list(per)
    assert val(out["loss"]) == pytest.approx(sum(per) / len(per), rel=REL)


def test_cal_paper_default_cal_weight_is_one():
    a = preference_loss("cal_paper", *inputs(), 0.1)
    b = preference_loss("cal_paper", *inputs(), 0.1, cal_weight=1.0)
    assert val(a["loss"]) == pytest.approx(val(b["loss"]), rel=REL)


@pytest.mark.parametrize("beta", BETAS)
def test_cal_paper_dpo_term_not_scaled_by_beta(beta):
    m = hand_margins()
    out = preference_loss("cal_paper", *inputs(), beta, cal_weight=0.0)
    unscaled = [neg_log_sigmoid(mi) for mi in m]
    scaled = [neg_log_sigmoid(beta * mi) for mi in m]
    assert as_list(out["per_pair"]) == approx_list(unscaled)
    assert as_list(out["per_pair"]) != approx_list(scaled)


@pytest.mark.parametrize("beta", BETAS)
def test_cal_paper_penalty_vanishes_at_target(beta):
    # h_w = 1/(2b), h_l = -1/(2b): only the DPO term -log sigmoid(1/b) remains
    target = 1.0 / (2.0 * beta)
    out = preference_loss("cal_paper", t([target - 5.0]), t([-target - 7.0]), t([-5.0]), t([-7.0]), beta,
                          cal_weight=1.0)
    assert val(out["loss"]) == pytest.approx(neg_log_sigmoid(2.0 * target), rel=1e-9)


# ----------------------------------------------------------------------------- dr_drop_top

# 20 pairs, distinct margins in a shuffled order (some positive, some negative)
DROP_MARGINS = [0.7, -3.1, 2.4, -0.2, 5.5, -6.3, 1.1, -1.8, 3.9, 0.05,
                -4.4, 2.9, -0.9, 7.2, -2.6, 1.6, -5.1, 4.6, -0.45, 3.3]
DROP_BETA = 0.1


def drop_inputs(idx=None, grad: bool = False):
    margins = DROP_MARGINS if idx is None else [DROP_MARGINS[i] for i in idx]
    n = len(margins)
    # spread the margin over all four inputs so every input matters:
    # h_w = pc - rc = m/2 + 1, h_l = pr - rr = -m/2 + 1
    pc = [-10.0 - i + mi / 2 + 1 for i, mi in enumerate(margins)]
    rc = [-10.0 - i for i in range(n)]
    pr = [-20.0 + i - mi / 2 + 1 for i, mi in enumerate(margins)]
    rr = [-20.0 + i for i in range(n)]
    assert hand_margins(pc, pr, rc, rr) == pytest.approx(margins, rel=1e-12, abs=1e-12)
    return inputs(pc, pr, rc, rr, grad=grad)


def drop_losses(idx=None):
    margins = DROP_MARGINS if idx is None else [DROP_MARGINS[i] for i in idx]
    return [neg_log_sigmoid(DROP_BETA * mi) for mi in margins]


def top3_indices():
    losses = drop_losses()
    return sorted(range(len(losses)), key=lambda i: losses[i], reverse=True)[:3]


def test_drop_threshold_fraction_015_of_20_drops_exactly_top3():
    losses = drop_losses()
    assert len(losses) == 20 and len(set(losses)) == 20
    thr = drop_threshold(t(losses), 0.15)
    ordered = sorted(losses, reverse=True)
    # strictly between the 3rd and 4th largest losses
    assert ordered[3] < thr < ordered[2]
    assert sum(1 for x in losses if x > thr) == 3


def test_dr_drop_top_full_batch():
    top3 = top3_indices()
    assert sorted(top3) == [5, 10, 16]  # the three most negative margins
    losses = drop_losses()
    thr = drop_threshold(t(losses), 0.15)
    out = preference_loss("dr_drop_top", *drop_inputs(), DROP_BETA, threshold=thr)
    kept_hand = [x for i, x in enumerate(losses) if i not in top3]
    assert out["dropped"] == 3
    assert isinstance(out["dropped"], int)
    assert out["kept"].dtype == torch.bool
    assert out["kept"].tolist() == [i not in top3 for i in range(20)]
    assert val(out["loss"]) == pytest.approx(sum(kept_hand) / 17, rel=REL)
    # per_pair holds every pair's loss, dropped ones included
    assert as_list(out["per_pair"]) == approx_list(losses)


def test_dr_drop_top_gradient_only_through_kept_pairs():
    top3 = top3_indices()
    thr = drop_threshold(t(drop_losses()), 0.15)
    pc, pr, rc, rr = drop_inputs(grad=True)
    preference_loss("dr_drop_top", pc, pr, rc, rr, DROP_BETA, threshold=thr)["loss"].backward()
    expected = [0.0 if i in top3 else -DROP_BETA * sig(-DROP_BETA * mi) / 17
                for i, mi in enumerate(DROP_MARGINS)]
    assert as_list(pc.grad) == approx_list(expected)
    assert as_list(pr.grad) == approx_list([-g for g in expected])


def test_dr_drop_top_micro_batch_uses_global_threshold():
    # a micro-batch of 4 pairs holding one of the globally dropped pairs
    thr = drop_threshold(t(drop_losses()), 0.15)
    idx = [0, 5, 7, 13]
    out = preference_loss("dr_drop_top", *drop_inputs(idx), DROP_BETA, threshold=thr)
    losses = drop_losses(idx)
    assert out["dropped"] == 1
    assert out["kept"].tolist() == [True, False, True, True]
    assert val(out["loss"]) == pytest.approx((losses[0] + losses[2] + losses[3]) / 3, rel=REL)


@pytest.mark.parametrize("fraction", (0.0, 0.01, 0.04, 0.0499))
def test_drop_threshold_nothing_to_drop_is_inf(fraction):
    losses = drop_losses()
    assert math.floor(fraction * 20) == 0
    thr = drop_threshold(t(losses), fraction)
    assert thr == math.inf
    out = preference_loss("dr_drop_top", *drop_inputs(), DROP_BETA, threshold=thr)
    assert out["dropped"] == 0
    assert bool(out["kept"].all())
    assert val(out["loss"]) == pytest.approx(sum(losses) / 20, rel=REL)


def test_dr_drop_top_default_threshold_keeps_everything():
    out = preference_loss("dr_drop_top", *drop_inputs(), DROP_BETA)
    assert out["dropped"] == 0
    assert val(out["loss"]) == pytest.approx(sum(drop_losses()) / 20, rel=REL)


def test_drop_threshold_fraction_one_drops_all():
    losses = drop_losses()
    thr = drop_threshold(t(losses), 1.0)
    assert thr < min(losses)
    out = preference_loss("dr_drop_top", *drop_inputs(), DROP_BETA, threshold=thr)
    assert out["dropped"] == 20


def test_dr_drop_top_all_dropped_is_zero_and_backpropagates():
    top3 = top3_indices()
    thr = drop_threshold(t(drop_losses()), 0.15)
    pc, pr, rc, rr = drop_inputs(top3, grad=True)
    out = preference_loss("dr_drop_top", pc, pr, rc, rr, DROP_BETA, threshold=thr)
    assert out["dropped"] == 3
    assert not bool(out["kept"].any())
    assert val(out["loss"]) == 0.0
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert pc.grad is not None and pr.grad is not None
    assert as_list(pc.grad) == [0.0, 0.0, 0.0]
    assert as_list(pr.grad) == [0.0, 0.0, 0.0]


def test_drop_threshold_ignores_input_shape_and_grad():
    losses = drop_losses()
    scores = t(losses, grad=True).reshape(4, 5)
    thr = drop_threshold(scores, 0.15)
    assert isinstance(thr, float)
    assert sum(1 for x in losses if x > thr) == 3


def test_drop_threshold_keeps_precision_of_float64_scores():
    # 10 scores, fraction 0.1 -> exactly one (the largest) should go
    scores = [1.0 + 3e-8, 1.0 + 2e-8, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    thr = drop_threshold(t(scores), 0.1)
    assert sum(1 for x in scores if x > thr) == 1  # a float32 midpoint would round to 1.0 and drop both


# ----------------------------------------------------------------------------- dr_paper

def hand_dr_paper(per, dr_beta):
    n = len(per)
    return -dr_beta * math.log(sum(math.exp(-x / dr_beta) for x in per) / n)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dr_beta", (1.0, 0.5))
def test_dr_paper_matches_hand(beta, dr_beta):
    m = hand_margins()
    per = [neg_log_sigmoid(beta * mi) for mi in m]
    out = preference_loss("dr_paper", *inputs(), beta, dr_beta=dr_beta)
    assert as_list(out["per_pair"]) == approx_list(per)
    expected = hand_dr_paper(per, dr_beta)
    assert val(out["loss"]) == pytest.approx(expected, rel=REL)
    # Jensen: the soft-min aggregate never exceeds the plain mean
    assert val(out["loss"]) <= sum(per) / len(per) + 1e-15
    assert expected < sum(per) / len(per)


def test_dr_paper_default_dr_beta_is_one():
    a = preference_loss("dr_paper", *inputs(), 0.1)
    b = preference_loss("dr_paper", *inputs(), 0.1, dr_beta=1.0)
    assert val(a["loss"]) == pytest.approx(val(b["loss"]), rel=REL)


@pytest.mark.parametrize("beta", BETAS)
def test_dr_paper_large_dr_beta_approaches_mean(beta):
    m = hand_margins()
    per = [neg_log_sigmoid(beta * mi) for mi in m]
    out = preference_loss("dr_paper", *inputs(), beta, dr_beta=1e4)
    assert val(out["loss"]) == pytest.approx(sum(per) / len(per), abs=1e-3)
    assert val(out["loss"]) <= sum(per) / len(per) + 1e-12


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dr_beta", (1.0, 0.5, 0.01))
def test_dr_paper_batch_of_one_is_plain_dpo(beta, dr_beta):
    out = preference_loss("dr_paper", t([-3.0]), t([-1.0]), t([-2.5]), t([-4.0]), beta, dr_beta=dr_beta)
    m = (-3.0 - -2.5) - (-1.0 - -4.0)
    assert val(out["loss"]) == pytest.approx(neg_log_sigmoid(beta * m), rel=REL)


@pytest.mark.parametrize("dr_beta", (1.0, 0.5))
def test_dr_paper_gradient_matches_hand(dr_beta):
    beta = 0.5
    pc, pr, rc, rr = inputs(grad=True)
    preference_loss("dr_paper", pc, pr, rc, rr, beta, dr_beta=dr_beta)["loss"].backward()
    m = hand_margins()
    per = [neg_log_sigmoid(beta * mi) for mi in m]
    z = sum(math.exp(-x / dr_beta) for x in per)
    weights = [math.exp(-x / dr_beta) / z for x in per]  # d loss / d loss_i
    expected = [-w * beta * sig(-beta * mi) for w, mi in zip(weights, m)]
    assert as_list(pc.grad) == approx_list(expected)


# ----------------------------------------------------------------------------- rpo

@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("alpha", (0.0, 0.5, 1.0))
def test_rpo_matches_hand(beta, alpha):
    m = hand_margins()
    per = [neg_log_sigmoid(beta * mi) + alpha * (-pc / n) for mi, pc, n in zip(m, PC, NW)]
    out = preference_loss("rpo", *inputs(), beta, rpo_alpha=alpha, chosen_tokens=torch.tensor(NW))
    assert as_list(out["per_pair"]) == approx_list(per)
    assert val(out["loss"]) == pytest.approx(sum(per) / len(per), rel=REL)


def test_rpo_default_alpha_is_one():
    a = preference_loss("rpo", *inputs(), 0.1, chosen_tokens=torch.tensor(NW))
    b = preference_loss("rpo", *inputs(), 0.1, rpo_alpha=1.0, chosen_tokens=torch.tensor(NW))
    assert val(a["loss"]) == pytest.approx(val(b["loss"]), rel=REL)


@pytest.mark.parametrize("alpha", (0.5, 2.0))
def test_rpo_gradient_matches_hand(alpha):
    beta = 0.1
    pc, pr, rc, rr = inputs(grad=True)
    preference_loss("rpo", pc, pr, rc, rr, beta, rpo_alpha=alpha, chosen_tokens=torch.tensor(NW))["loss"].backward()
    m = hand_margins()
    k = len(m)
    # the NLL term adds -alpha / |y_w| to d/d log pi(y_w); the rejected side is plain DPO
    assert as_list(pc.grad) == approx_list([(-beta * sig(-beta * mi) - alpha / n) / k for mi, n in zip(m, NW)])
    assert as_list(pr.grad) == approx_list([beta * sig(-beta * mi) / k for mi in m])


def test_rpo_without_token_counts_is_an_error():
    with pytest.raises(ValueError, match="loss 'rpo' needs chosen_tokens"):
        preference_loss("rpo", *inputs(), 0.1)


# ----------------------------------------------------------------------------- dispatch / dict

@pytest.mark.parametrize("kind", ("dpo", "", "Sigmoid", "ipo", "cal"))
def test_unknown_loss_raises(kind):
    with pytest.raises(ValueError, match="unknown loss"):
        preference_loss(kind, *inputs(), 0.1)


def test_losses_tuple():
    assert set(LOSSES) == {"sigmoid", "cal_batch_mean", "cal_paper", "dr_drop_top", "dr_paper", "rpo"}


@pytest.mark.parametrize("kind", LOSSES)
def test_returned_dict_entries(kind):
    out = preference_loss(kind, *inputs(), 0.1, chosen_tokens=torch.tensor(NW))
    assert set(out) >= {"loss", "per_pair", "kept", "dropped", "h_w", "h_l"}
    h_w, h_l = hand_h()
    assert out["h_w"].shape == (4,) and out["h_l"].shape == (4,)
    assert out["h_w"].dtype == torch.float64
    assert as_list(out["h_w"]) == approx_list(h_w)
    assert as_list(out["h_l"]) == approx_list(h_l)
    assert out["per_pair"].shape == (4,)
    assert out["per_pair"].dtype == torch.float64
    assert out["loss"].shape == ()
    assert out["kept"].shape == (4,) and out["kept"].dtype == torch.bool
    assert bool(out["kept"].all())
    assert out["dropped"] == 0


@pytest.mark.parametrize("kind", [k for k in LOSSES if k != "dr_drop_top"])
def test_threshold_ignored_by_other_losses(kind):
    a = preference_loss(kind, *inputs(), 0.1, chosen_tokens=torch.tensor(NW))
    b = preference_loss(kind, *inputs(), 0.1, threshold=-1.0, chosen_tokens=torch.tensor(NW))
    assert b["dropped"] == 0 and bool(b["kept"].all())
    assert val(a["loss"]) == pytest.approx(val(b["loss"]), rel=REL)


@pytest.mark.parametrize("kind", LOSSES)
def test_inputs_are_not_modified(kind):
    pc, pr, rc, rr = inputs()
    before = [x.clone() for x in (pc, pr, rc, rr)]
    preference_loss(kind, pc, pr, rc, rr, 0.1, threshold=0.5, chosen_tokens=torch.tensor(NW))
    for x, y in zip((pc, pr, rc, rr), before):
        assert torch.equal(x, y)


# ----------------------------------------------------------------------------- dr_drop_top with NaN pairs
# The first Qwen run logged "threshold nan drops 0": torch.sort puts NaN first, so one NaN noise
# score made the threshold NaN and the Dr filter silently dropped nothing.

def test_drop_threshold_nan_score_counts_as_noisiest():
    losses = drop_losses()
    losses[7] = float("nan")
    thr = drop_threshold(t(losses), 0.15)
    assert math.isfinite(thr)
    finite = sorted((x for x in losses if not math.isnan(x)), reverse=True)
    # the NaN pair and the two largest finite losses are the top 3
    assert finite[2] < thr < finite[1]
    assert sum(1 for x in losses if not x <= thr) == 3


def test_drop_threshold_more_nan_than_the_fraction_keeps_every_finite_pair():
    losses = drop_losses()
    for i in (1, 4, 9, 12):
        losses[i] = float("nan")
    thr = drop_threshold(t(losses), 0.15)  # k = 3 < 4 NaN pairs
    assert math.isfinite(thr)
    assert all(x <= thr for x in losses if not math.isnan(x))


def test_drop_threshold_with_an_infinite_score_drops_exactly_k():
    losses = drop_losses()
    losses[0] = float("inf")
    thr = drop_threshold(t(losses), 0.15)
    assert math.isfinite(thr)
    assert sum(1 for x in losses if x > thr) == 3


def test_dr_drop_top_nan_pair_is_dropped_and_loss_and_gradients_stay_finite():
    thr = drop_threshold(t(drop_losses()), 0.15)
    pc, pr, rc, rr = drop_inputs([0, 7, 13], grad=True)
    with torch.no_grad():
        pc[1] = float("nan")  # one pair's policy log-prob is NaN
    out = preference_loss("dr_drop_top", pc, pr, rc, rr, DROP_BETA, threshold=thr)
    assert out["kept"].tolist() == [True, False, True]
    losses = drop_losses([0, 7, 13])
    assert val(out["loss"]) == pytest.approx((losses[0] + losses[2]) / 2, rel=REL)
    out["loss"].backward()
    assert bool(torch.isfinite(pc.grad).all()) and bool(torch.isfinite(pr.grad).all())
    assert float(pc.grad[1]) == 0.0


def test_the_config_schema_lists_exactly_the_registry():
    """The schema validates loss names before any rule runs; it must name the registry's forms, in order."""
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    from clarify.dpo_schedule import LOSS_FORMS, SCHEDULE_PRESETS

    phase_c = schema["properties"]["phase_c"]["properties"]
    assert phase_c["schedule"]["items"]["properties"]["loss"]["enum"] == list(LOSSES)
    # the schedule module names the forms without importing torch; the schema lists its presets
    assert list(LOSS_FORMS) == list(LOSSES)
    assert phase_c["schedule"]["then"]["enum"] == list(SCHEDULE_PRESETS)
