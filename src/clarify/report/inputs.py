"""What the report is rendered from: the artifact paths (:class:`ReportInputs`) and their loaders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .variants import VariantRun

PathLike = str | Path


@dataclass(frozen=True)
class VariantInputs:
    """One variant of the grid: its recipe (clarify.variants.Variant) and the artifacts it made."""

    name: str
    until: str                        # phase_b | phase_c
    overrides: dict
    adapter: PathLike                 # the scored adapter: training_log.json (phase_b) or dpo_log.json (phase_c)
    self_train_accounting: list[PathLike] = field(default_factory=list)  # round 1 first


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
    pairs_accounting: dict[str, PathLike] = field(default_factory=dict)  # run label -> pairs_accounting.json
    variants: list[VariantInputs] = field(default_factory=list)         # the grid, in config order
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
    """(model, mode) -> per-question scores, named by their path ``.../{model}/{mode}.parquet`` (the
    DAG's contract; a frame's attrs may carry an older name, e.g. a variant's without ``variant_``)."""
    frames = {}
    for path in score_files:
        frame = pd.read_parquet(path)
        model, mode = Path(path).parts[-2], Path(path).stem
        frames[(model, mode)] = frame
    return frames


def load_judge(summary_path: PathLike | None, verdicts_path: PathLike | None):
    if not summary_path:
        return None, None
    summary = json.loads(Path(summary_path).read_text())
    verdicts = pd.read_csv(verdicts_path) if verdicts_path else None
    return summary, verdicts


#: The log a variant's scored adapter holds, by the stage it ends with.
VARIANT_LOGS = {"phase_b": "training_log.json", "phase_c": "dpo_log.json"}


def _json_or_none(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def load_variant_runs(variants: list[VariantInputs]) -> list[VariantRun]:
    """Each variant with its training log (None where it was not trained) and self-training accounting."""
    return [VariantRun(name=v.name, until=v.until, overrides=v.overrides,
                       log=_json_or_none(Path(v.adapter) / VARIANT_LOGS[v.until]),
                       self_train=[json.loads(Path(p).read_text()) for p in v.self_train_accounting])
            for v in variants]


def load_pairs_accounting(files: dict[str, PathLike]) -> dict[str, dict]:
    return {label: json.loads(Path(path).read_text()) for label, path in files.items()}
