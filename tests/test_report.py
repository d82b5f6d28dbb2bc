"""The report's validation sections and executive table, rendered from hand-made artifacts."""

import json

import pandas as pd
import pytest

from clarify.ablations import ablation_table
from clarify.report.executive import executive_section
from clarify.report.format import display_name
from clarify.report.validation import attribution_section, attribution_summary, judge_section
from clarify.report.walltime import walltime_section
from clarify.stats import mcnemar

TARGETS = {"phase_a_accuracy": 0.60, "phase_b_gain_pp": 7.0, "phase_c_gain_pp": 10.0, "no_draft_drop_pp": 3.0,
           "attribution_draft_share": 0.20, "attribution_max_relative_error": 0.05, "judge_win_rate": 0.60,
           "alpha": 0.05}
MODES = {"phaseA": "direct", "phaseB": "cot", "phaseC": "cot"}


def scores(flags: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"qid": [f"q{i:03d}" for i in range(len(flags))], "correct": flags, "pred": flags,
                         "gold": [True] * len(flags)})


def executive_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| goal"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture()
def artifacts():
    n = 100
    a = [True] * 70 + [False] * 30                      # 70%
    b = a[:68] + [False] * 2 + [False] * 30              # 68%: 2 fewer, not a gain
    c = [True] * 95 + [False] * 5                        # 95%: +25 pp over A, 25 discordant one way
    frames = {("phaseA", "direct"): scores(a), ("phaseB", "cot"): scores(b), ("phaseC", "cot"): scores(c)}
    ablation = {"phaseC": pd.concat([
        scores(c).assign(condition="draft"),
        scores([True] * 60 + [False] * 40).assign(condition="no_draft"),
        scores([True] * 59 + [False] * 41).assign(condition="shuffled_draft"),
    ], ignore_index=True)}
    ablations = ablation_table(ablation, min_drop_pp=3.0, alpha=0.05)
    attribution = pd.DataFrame({"model": ["phaseC"] * 4, "qid": ["q1", "q2", "q3", "q4"],
                                "draft_share": [0.1, 0.2, 0.3, 0.2], "question_share": [0.5, 0.4, 0.4, 0.5],
                                "template_share": [0.4, 0.4, 0.3, 0.3], "completeness_error": [1e-4, 2e-4, 5e-5, 0.0],
                                "relative_error": [1e-3, 1e-3, 1e-3, 1e-3], "draft_tokens": [20, 22, 18, 20]})
    return n, frames, ablations, attribution_summary(attribution, seed=0)


def test_executive_table_states_met_not_met_and_not_measured(artifacts):
    n, frames, ablations, attribution = artifacts
    text = executive_section(frames, ablations, attribution, None, MODES, TARGETS)
    rows = executive_rows(text)
    assert rows["Phase A (answer-only SFT)"][1].startswith("70.0% [")
    assert rows["Phase A (answer-only SFT)"][2] == "met"
    assert rows["Phase B (CoT distillation)"][1].startswith("-2.0 pp")
    assert rows["Phase B (CoT distillation)"][2] == "not met"
    p_c = mcnemar(frames[("phaseC", "cot")]["correct"], frames[("phaseA", "direct")]["correct"])["p_value"]
    assert rows["Phase C (DPO)"][1].startswith("+25.0 pp (95.0% [") and rows["Phase C (DPO)"][2] == "met"
    assert f"p={p_c:.1e}" in rows["Phase C (DPO)"][3]
    assert rows["No-draft ablation (Phase C)"][1] == "+35.0 pp drop" and rows["No-draft ablation (Phase C)"][2] == "met"
    # 60% -> 59%: one question, not a significant further drop.
    assert rows["Shuffled-draft ablation (Phase C)"][1] == "+1.0 pp further drop"
    assert rows["Shuffled-draft ablation (Phase C)"][2] == "not met"
    assert rows["Attribution (Phase C)"][1].startswith("20.0% [") and rows["Attribution (Phase C)"][2] == "met"
    # The same shares from attributions that do not add up to the margin change are no measurement.
    sloppy = attribution.assign(mean_relative_error=0.4)
    rows = executive_rows(executive_section(frames, ablations, sloppy, None, MODES, TARGETS))
    assert rows["Attribution (Phase C)"][2] == "not measured" and "raise attribution.steps" in rows["Attribution (Phase C)"][3]
    assert rows["Judge: sub-question quality"][1:] == ["-", "not measured", "no judge configured"]


def test_a_gain_that_meets_the_target_but_not_the_paired_test_is_not_met(artifacts):
    n, frames, ablations, attribution = artifacts
    small = {("phaseA", "direct"): scores([True] * 6 + [False] * 4),
             ("phaseB", "cot"): scores([True] * 7 + [False] * 3), ("phaseC", "cot"): scores([True] * 8 + [False] * 2)}
    rows = executive_rows(executive_section(small, None, None, None, MODES, TARGETS))
    assert rows["Phase C (DPO)"][1].startswith("+20.0 pp") and rows["Phase C (DPO)"][2] == "not met"
    assert "not significant at 0.05" in rows["Phase C (DPO)"][3]
    assert rows["No-draft ablation (Phase C)"][2] == "not measured"
    assert rows["Attribution (Phase C)"][2] == "not measured"
    missing = executive_rows(executive_section({}, None, None, None, MODES, TARGETS))
    assert missing["Phase A (answer-only SFT)"][2] == "not measured"


def test_judge_numbers_come_from_its_summary_and_no_judge_is_said_plainly(artifacts):
    n, frames, ablations, attribution = artifacts
    judge = {"backend": "openai", "model": "gpt-x", "spend_this_run": {"requests_made": 8, "cache_hits": 2,
                                                                       "total_tokens": 1234, "cost_usd": 0.0123},
             "pairs": [{"model_a": "phaseC", "model_b": "phaseA", "n": 5, "wins_a": 4, "wins_b": 0, "ties": 1,
                        "no_questions": 0, "position_flips": 1, "invalid": 0, "win_rate": 0.9, "ci_low": 0.7,
                        "ci_high": 1.0, "p_value": 0.125}]}
    verdicts = pd.DataFrame({"prompt_tokens": [100, 200], "completion_tokens": [10, 20], "cost_usd": [0.001, 0.002]})
    text = judge_section(judge, verdicts, display_name)
    assert "| Phase C (DPO) vs Phase A (answer-only SFT) | 5 | 4 | 0 | 1 | 0 | 1 | 0 | 90.0% [70.0, 100.0] | 0.125 |" in text
    assert "8 calls made, 2 from the cache, 1234 tokens, $0.0123" in text
    assert "300 prompt + 30 completion tokens, $0.0030" in text
    assert "No judge configured" in judge_section(None, None, display_name)
    rows = executive_rows(executive_section(frames, ablations, attribution, judge, MODES, TARGETS))
    # 90% meets the 60% target, but 4-0 is not significant by the sign test (p=0.125): not met.
    assert rows["Judge: sub-question quality"][1] == "90.0% [70.0, 100.0]"
    assert rows["Judge: sub-question quality"][2] == "not met"


def test_attribution_section_restates_the_csv(artifacts):
    *_, attribution = artifacts
    text = attribution_section(attribution, {"steps": 50, "baseline": "pad", "method": "gausslegendre"}, "figures/attribution.png", display_name)
    row = next(line for line in text.splitlines() if line.startswith("| Phase C (DPO)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "4" and cells[2] == "20.0" and cells[3].startswith("20.0% [")
    assert cells[4] == "45.0%" and cells[5] == "35.0%" and cells[6] == "2.00e-04"
    assert "50 gausslegendre points from a pad baseline" in text and "![attribution shares](figures/attribution.png)" in text


def test_walltime_reads_the_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "train_phase_a.tsv").write_text(header + "72.5\t0:01:12\t1500.2\t1\t1\t1\t0\t0\t0\t10\n")
    (tmp_path / "report.tsv").write_text(header + "1.25\t0:00:01\t-\t-\t-\t-\t-\t-\t-\t-\n")
    text = walltime_section(tmp_path)
    assert "| train_phase_a | 72.5 | 1500 |" in text and "| report | 1.2 | - |" in text
    assert "Sum: 74 s" in text
    assert "No benchmark files" in walltime_section(tmp_path / "none")


def test_report_settings_in_the_schema_match_the_targets_used_here():
    from clarify.config import schema_defaults
    from pathlib import Path

    schema = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    defaults = schema_defaults(schema)
    assert defaults["report"]["targets"] == TARGETS
    assert defaults["report"]["primary_modes"] == MODES
    assert defaults["judge"]["backend"] == "none" and defaults["attribution"]["steps"] == 50
    json.dumps(defaults)  # plain data: it is printed in the report's config section


def test_skipped_nonfinite_steps_are_shown_per_phase_and_round():
    from clarify.report.phase_c import dpo_section

    step = {"epoch": 1.0, "margin": 0.5, "implicit_accuracy": 1.0, "dropped_pairs": 0}
    log = {"steps": [{**step, "margin": 0.0}, step], "schedule": [{"loss": "sigmoid", "beta": 0.1}], "pairs": 8,
           "micro_batch_pairs": 4, "wall_time_s": 3.0}
    clean = dpo_section([log], None)
    skipped = dpo_section([{**log, "nonfinite_steps": [5, 6, 7, 8, 9, 12]}], None)
    assert "| steps skipped (NaN/inf) |" in clean and "| 0 | 3 s |" in clean
    assert "| 6 (step 5, 6, 7, 8, 9, ...) | 3 s |" in skipped


def test_a_new_eval_mode_and_variant_models_appear_without_report_changes(tmp_path):
    """Modes and models come from the score files: ``cot_sc`` and ``variant_*`` need no code here."""
    from clarify.report.evaluation import evaluation_section
    from clarify.report.phase_c import loss_comparison_section

    a, b = [True] * 6 + [False] * 4, [True] * 8 + [False] * 2
    frames = {(model, mode): scores(flags) for mode in ("cot_sc", "direct", "cot")
              for model, flags in [("phaseA", a), ("phaseB", b), ("variant_no_guess", b), ("phaseC_rpo", a)]}
    text = evaluation_section(frames)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert "| variant no_guess | cot_sc | 10 | 80.0% [" in text
    comparisons = [line.split(" | ")[:2] for line in table if " vs " in line]
    assert comparisons[:3] == [["| Phase B (CoT distillation) vs Phase A (answer-only SFT)", m] for m in
                               ("direct", "cot", "cot_sc")]  # known modes in their order, new ones after
    assert ["| variant no_guess vs Phase A (answer-only SFT)", "cot_sc"] in comparisons
    assert ["| variant no_guess vs Phase B (CoT distillation)", "direct"] in comparisons
    variant = tmp_path / "compare_rpo"
    variant.mkdir()
    step = {"epoch": 1.0, "margin": 0.5, "implicit_accuracy": 1.0, "dropped_pairs": 0}
    (variant / "dpo_log.json").write_text(json.dumps({"steps": [step], "schedule": [{"loss": "rpo", "beta": 0.1}],
                                                      "wall_time_s": 2.0}))
    losses = loss_comparison_section([variant], frames)
    assert "| accuracy (direct) | accuracy (cot) | accuracy (cot_sc) | wall time |" in losses
    assert "| rpo | 0.1 | 0.5000 -> 0.5000 | 1.00 | 0 | 60.0% [" in losses
