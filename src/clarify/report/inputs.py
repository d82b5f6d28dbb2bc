"""What the report is rendered from: the artifact paths (:class:`ReportInputs`) and their loaders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

PathLike = str | Path


@dataclass(frozen=True)
class ReportInputs:
    """Every artifact the report reads, by the section that reads it; optional parts may be None."""

    title: str
    config: dict                      # the run's config: report targets, attribution settings, the config section
    source_meta: PathLike             # data
    splits: dict[str, PathLike]
    sample: PathLike
    drafts: PathLike                  # harvest
    teacher: PathLike
    accounting: PathLike
    corpora: dict[str, PathLike]      # name -> corpus; "pairs" counts its "gold" label
    adapters: dict[str, PathLike]     # training: model name -> adapter dir with training_log.json
    dpo_rounds: list[PathLike]        # phase C: round dirs with dpo_log.json
    score_files: list[PathLike]       # evaluation: results/scores/{model}/{mode}.parquet
    loss_variants: list[PathLike] = field(default_factory=list)
    ablations: PathLike | None = None  # validation
    attribution: PathLike | None = None
    judge_summary: PathLike | None = None
    judge_verdicts: PathLike | None = None
    benchmark_dir: PathLike | None = None  # wall time


def load_training_logs(adapters: dict[str, PathLike]) -> dict[str, dict]:
    return {name: json.loads((Path(path) / "training_log.json").read_text()) for name, path in adapters.items()}


def load_dpo_logs(rounds: list[PathLike]) -> list[dict]:
    return [json.loads((Path(path) / "dpo_log.json").read_text()) for path in rounds]


def load_scores(score_files: list[PathLike]) -> dict[tuple[str, str], pd.DataFrame]:
    """(model, mode) -> per-question scores; names from the frame's attrs, else from the path."""
    frames = {}
    for path in score_files:
        frame = pd.read_parquet(path)
        model = frame.attrs.get("model", Path(path).parts[-2])
        mode = frame.attrs.get("mode", Path(path).stem)
        frames[(model, mode)] = frame
    return frames


def load_judge(summary_path: PathLike | None, verdicts_path: PathLike | None):
    if not summary_path:
        return None, None
    summary = json.loads(Path(summary_path).read_text())
    verdicts = pd.read_csv(verdicts_path) if verdicts_path else None
    return summary, verdicts
