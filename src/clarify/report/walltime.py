"""The wall-time section: one row per job from Snakemake's ``benchmark:`` files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .format import markdown_table


def walltime_section(benchmark_dir: str | Path) -> str:
    rows, total = [], 0.0
    for path in sorted(Path(benchmark_dir).glob("*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        if frame.empty:
            continue
        seconds = float(frame["s"].iloc[-1])
        total += seconds
        rss = frame["max_rss"].iloc[-1] if "max_rss" in frame else float("nan")
        rows.append([path.stem, f"{seconds:.1f}", "-" if pd.isna(rss) or rss == "-" else f"{float(rss):.0f}"])
    if not rows:
        return "## Wall time\n\nNo benchmark files found."
    return "\n".join([
        "## Wall time per job",
        "",
        f"From Snakemake's `benchmark:` files (`logs/benchmarks/`), as they were when this report was rendered; a "
        f"job that did not rerun keeps the time of its last run. Sum: {total:.0f} s.",
        "",
        markdown_table(["job", "wall time (s)", "max RSS (MB)"], rows),
    ])
