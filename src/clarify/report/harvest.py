"""The harvest section: student drafts, teacher responses and their accounting, the corpora."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..drafts import draft_summary
from ..io import read_jsonl
from .data import mix_row
from .format import markdown_table


def harvest_section(drafts: str | Path, teacher: str | Path, accounting: str | Path,
                    corpora: dict[str, str | Path]) -> str:
    d = draft_summary(read_jsonl(drafts))
    teacher_rows = read_jsonl(teacher)
    table = pd.read_csv(accounting)
    samples = sum(len(r["samples"]) for r in teacher_rows)
    prompt_tokens = sum(s["prompt_tokens"] for r in teacher_rows for s in r["samples"])
    completion_tokens = sum(s["completion_tokens"] for r in teacher_rows for s in r["samples"])
    cost = sum(s["cost_usd"] for r in teacher_rows for s in r["samples"])
    backend = f"{teacher_rows[0]['backend']} / {teacher_rows[0]['model']}" if teacher_rows else "none"
    status_columns = [c for c in ["total", "agreed", "rationalized", "kept_gold", "dropped", "invalid_vote"]
                      if c in table.columns]
    drop_columns = [c for c in table.columns if c.startswith("drop_") and table[c].sum() > 0]
    accounting_rows = [[row["label"], *[int(row[c]) for c in status_columns + drop_columns]]
                       for _, row in table.iterrows()]
    corpus_rows = []
    for name, path in corpora.items():
        rows = read_jsonl(path)
        label = "gold" if name == "pairs" else "answer"
        corpus_rows.append(mix_row(name, rows, label))
    pairs = read_jsonl(corpora["pairs"]) if "pairs" in corpora else []
    rejected = pd.Series([p["rejected_from"] for p in pairs]).value_counts().to_dict() if pairs else {}
    return "\n".join([
        "## Harvest: drafts, teacher, corpora",
        "",
        f"Student drafts: {d['n']} questions, {d['parse_ok']} parsed in the draft format; guesses "
        f"{d['guess_yes']} yes / {d['guess_no']} no, {d['guess_correct']} correct; {d['hit_limit']} hit the "
        f"length limit; {d['mean_tokens']:.1f} generated tokens on average.",
        "",
        f"Teacher `{backend}`: {samples} responses, {prompt_tokens} prompt + {completion_tokens} completion "
        f"tokens, ${cost:.4f} (what the responses cost when they were made; a rerun served from the cache pays "
        "nothing, see logs/teacher_harvest.log).",
        "Every sampled question is accounted for (no silent filtering):",
        "",
        markdown_table(["gold label", *status_columns, *drop_columns], accounting_rows),
        "",
        "Corpora, label-balanced by construction:",
        "",
        markdown_table(["corpus", "examples", "yes", "no", "yes share"], corpus_rows),
        "",
        "Preference pairs by origin of the rejected side: "
        + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "none") + ".",
    ])
