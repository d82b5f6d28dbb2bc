"""``results/report.md``: rendered only from artifacts the DAG produced.

Each section reads its numbers from files (splits, drafts, teacher outputs, corpora,
training logs, score parquets) so every figure in the report traces back to one artifact;
:class:`~clarify.report.inputs.ReportInputs` names them all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .data import data_section
from .evaluation import evaluation_section
from .executive import executive_section
from .figures import ablation_figure, attribution_figure, dpo_figure, training_figure
from .format import display_name
from .harvest import harvest_section
from .inputs import (ReportInputs, load_dpo_logs, load_judge, load_pairs_accounting, load_scores, load_training_logs,
                     load_variant_runs)
from .phase_c import dev_selection_section, dpo_section, pairs_accounting_section
from .training import training_section
from .validation import ablation_section, attribution_section, attribution_summary, judge_section
from .variants import variant_section
from .walltime import walltime_section

def config_section(config: dict) -> str:
    return "\n".join(["## Configuration", "", "The settings that produced these results:", "",
                      "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```"])


def render_report(inputs: ReportInputs, figures: dict[str, str | Path], figure_links: dict[str, str]) -> str:
    """Render the whole report; writes the figures to the paths in ``figures``.

    ``figures`` and ``figure_links`` map figure names (training_curves, dpo_curves, ablations,
    attribution) to the PNG to write and to its link from the report. The config's own report
    section gives the primary modes and the targets of the executive table.
    """
    config = inputs.config
    logs = load_training_logs(inputs.adapters)
    training_figure(logs, figures["training_curves"])
    dpo_logs = load_dpo_logs(inputs.dpo_rounds)
    dpo_figure(dpo_logs, figures["dpo_curves"])
    frames = load_scores(inputs.score_files)
    ablation_frame = pd.read_csv(inputs.ablations) if inputs.ablations else None
    if ablation_frame is not None:
        ablation_figure(ablation_frame, figures["ablations"])
    attribution_frame = None
    if inputs.attribution:
        attribution_frame = attribution_summary(pd.read_csv(inputs.attribution), seed=config["attribution"]["seed"])
        attribution_figure(attribution_frame, figures["attribution"])
    judge, verdicts = load_judge(inputs.judge_summary, inputs.judge_verdicts)
    report_settings = config["report"]
    variant_runs = load_variant_runs(inputs.variants)
    variant_dpo_logs = {run.name: run.log for run in variant_runs if run.until == "phase_c" and run.log is not None}
    phase_c_runs = {**{f"Phase C round {k}": log for k, log in enumerate(dpo_logs, start=1)},
                    **{f"variant {name}": log for name, log in variant_dpo_logs.items()}}
    accountings = load_pairs_accounting(inputs.pairs_accounting)
    sections = [
        f"# {inputs.title}",
        executive_section(frames, ablation_frame, attribution_frame, judge, report_settings["primary_modes"],
                          report_settings["targets"], config.get("attribution"), variant_runs),
        data_section(inputs.source_meta, inputs.splits, inputs.sample),
        harvest_section(inputs.drafts, inputs.teacher, inputs.accounting, inputs.corpora),
        training_section(logs, figure_links["training_curves"]),
        dpo_section(dpo_logs, figure_links["dpo_curves"], variant_dpo_logs),
        *([dev_selection_section(phase_c_runs)] if phase_c_runs else []),
        *([pairs_accounting_section(accountings)] if accountings else []),
        evaluation_section(frames),
        *([variant_section(variant_runs, frames, report_settings["primary_modes"], report_settings["targets"])]
          if variant_runs else []),
        *([ablation_section(ablation_frame, figure_links.get("ablations"), display_name)]
          if ablation_frame is not None else []),
        *([attribution_section(attribution_frame, config["attribution"], figure_links.get("attribution"),
                               display_name)] if attribution_frame is not None else []),
        judge_section(judge, verdicts, display_name),
        *([walltime_section(inputs.benchmark_dir)] if inputs.benchmark_dir else []),
        config_section(config),
    ]
    return "\n\n".join(sections) + "\n"
