"""Rule report: render results/report.md (and its figures) from the artifacts the DAG produced."""

import contextlib
import os

from clarify.errors import one_line_errors
from clarify.io import atomic_path, write_text
from clarify.logs import setup_logging
from clarify.report.document import render_report
from clarify.report.inputs import ReportInputs, VariantInputs

FIGURES = ("training_curves", "dpo_curves", "ablations", "attribution")


def report_inputs(smk) -> ReportInputs:
    inp = smk.input
    return ReportInputs(
        title=smk.params.report["title"],
        config=smk.params.config,
        source_meta=inp.meta,
        splits={"train": inp.train, "dev": inp.dev, "test": inp.test},
        sample=inp.sample,
        drafts=inp.drafts,
        teacher=inp.teacher,
        accounting=inp.accounting,
        corpora={"Track A (baseline)": inp.baseline, "Track B (cot)": inp.cot, "pairs": inp.pairs},
        adapters={"phaseA": inp.phase_a, "phaseB": inp.phase_b},
        dpo_rounds=list(inp.dpo_rounds),
        pairs_accounting=dict(smk.params.pairs_accounting),
        variants=[VariantInputs(**variant) for variant in smk.params.variants],
        score_files=list(inp.scores),
        ablations=inp.ablations,
        attribution=inp.attribution,
        judge_summary=inp.get("judge_summary"),
        judge_verdicts=inp.get("judge_verdicts"),
        benchmark_dir="logs/benchmarks",
    )


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    report_dir = os.path.dirname(smk.output.report)
    with contextlib.ExitStack() as stack:
        figures = {name: stack.enter_context(atomic_path(smk.output[name])) for name in FIGURES}
        text = render_report(report_inputs(smk), figures,
                             {name: os.path.relpath(smk.output[name], report_dir) for name in FIGURES})
    write_text(smk.output.report, text)


main(snakemake)  # noqa: F821
