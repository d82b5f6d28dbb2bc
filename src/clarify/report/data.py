"""The data section: the labelled source and the class mix of every split."""

from __future__ import annotations

import json
from pathlib import Path

from ..splits import class_mix
from ..io import read_jsonl
from .format import markdown_table, pct


def mix_row(name: str, rows: list[dict], label: str = "answer") -> list:
    mix = class_mix([{"answer": r[label]} for r in rows])
    return [name, mix["n"], mix["yes"], mix["no"], pct(mix["yes_frac"])]


def data_section(source_meta: str | Path, splits: dict[str, str | Path], sample: str | Path) -> str:
    meta = json.loads(Path(source_meta).read_text())
    rows = [mix_row(name, read_jsonl(path)) for name, path in [*splits.items(), ("train sample", sample)]]
    checksum = f", sha256 `{meta['sha256']}`" if meta.get("sha256") else ""
    return "\n".join([
        "## Data",
        "",
        f"Source: `{meta['source']}` (format {meta['format']}{checksum}): {meta['rows']} labelled questions, "
        f"{meta['yes']} yes / {meta['no']} no, {meta['with_decomposition']} with human decompositions.",
        "",
        markdown_table(["split", "questions", "yes", "no", "yes share"], rows),
    ])
