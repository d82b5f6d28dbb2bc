"""``results/report.md``: rendered only from artifacts the DAG produced.

Each section reads its numbers from files (splits, score parquets, metadata) so that every
figure in the report can be traced back to one artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from .data import class_mix
from .io import read_jsonl
from .stats import accuracy


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def format_accuracy(acc) -> str:
    """``56.6% [52.9, 60.3]``: accuracy with its Wilson 95% interval, in percent."""
    return f"{100 * acc.accuracy:.1f}% [{100 * acc.ci_low:.1f}, {100 * acc.ci_high:.1f}]"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def data_section(source_meta: str | Path, splits: dict[str, str | Path], sample: str | Path) -> str:
    meta = json.loads(Path(source_meta).read_text())
    rows = []
    for name, path in [*splits.items(), ("train sample", sample)]:
        mix = class_mix(read_jsonl(path))
        rows.append([name, mix["n"], mix["yes"], mix["no"], pct(mix["yes_frac"])])
    checksum = f", sha256 `{meta['sha256']}`" if meta.get("sha256") else ""
    return "\n".join([
        "## Data",
        "",
        f"Source: `{meta['source']}` (format {meta['format']}{checksum}): {meta['rows']} labelled questions, "
        f"{meta['yes']} yes / {meta['no']} no, {meta['with_decomposition']} with human decompositions.",
        "",
        markdown_table(["split", "questions", "yes", "no", "yes share"], rows),
    ])


def load_scores(score_files: list[str | Path]) -> list[pd.DataFrame]:
    frames = []
    for path in score_files:
        frame = pd.read_parquet(path)
        parts = Path(path).parts
        frame.attrs.setdefault("model", parts[-2])
        frame.attrs.setdefault("mode", Path(path).stem)
        frames.append(frame)
    return frames


def evaluation_section(score_files: list[str | Path]) -> str:
    frames = load_scores(score_files)
    rows, token_notes = [], set()
    for frame in frames:
        acc = accuracy(frame["correct"])
        rows.append([frame.attrs["model"], frame.attrs["mode"], acc.n, format_accuracy(acc),
                     pct(frame["pred"].mean()), pct(frame["gold"].mean())])
        ids = frame.attrs.get("answer_token_ids")
        if ids:
            token_notes.add(f"Yes={ids['yes']}, No={ids['no']}")
    split = frames[0].attrs.get("split", "?") if frames else "?"
    lines = [
        "## Evaluation",
        "",
        f"Answer-slot scoring on the {split} split: the prediction is whichever of log P(\" Yes\") and "
        "log P(\" No\") is larger at the answer position; intervals are Wilson 95%. "
        "\"predicted yes\" shows the class balance of the predictions beside the gold share.",
        "",
        markdown_table(["model", "mode", "n", "accuracy [95% CI]", "predicted yes", "gold yes"], rows),
    ]
    if token_notes:
        lines += ["", "Answer token ids: " + "; ".join(sorted(token_notes)) + "."]
    return "\n".join(lines)


def config_section(config: dict) -> str:
    return "\n".join(["## Configuration", "", "The settings that produced these results:", "",
                      "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```"])


def build_report(title: str, source_meta, splits, sample, score_files, config: dict) -> str:
    sections = [
        f"# {title}",
        data_section(source_meta, splits, sample),
        evaluation_section(score_files),
        config_section(config),
    ]
    return "\n\n".join(sections) + "\n"
