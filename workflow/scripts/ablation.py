"""Rule ablation: one model's answer-slot scores with its own, no, and another question's draft."""

import logging
from pathlib import Path

import pandas as pd
import torch

from clarify.ablations import run_ablation
from clarify.errors import one_line_errors
from clarify.io import atomic_path, read_jsonl
from clarify.logs import setup_logging
from clarify.models import load_model, load_tokenizer, read_manifest
from clarify.stats import accuracy


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.ablation")
    torch.set_num_threads(smk.threads)
    settings = smk.params.eval
    questions = sorted(read_jsonl(smk.input.questions), key=lambda r: r["qid"])
    if settings["max_questions"]:
        questions = questions[: settings["max_questions"]]
    drafts = pd.read_parquet(smk.input.drafts)
    manifest = read_manifest(Path(smk.input.student) / "manifest.json")
    tokenizer = load_tokenizer(manifest["path"])
    model = load_model(manifest, smk.params.student, smk.params.quantization, adapter=smk.input.get("adapter"))
    frame = run_ablation(model, tokenizer, questions, drafts, seed=smk.params.ablations["seed"],
                         batch_size=settings["batch_size"])
    frame.attrs = {"model": smk.wildcards.model, "split": settings["split"]}
    for condition, rows in frame.groupby("condition", sort=False):
        log.info("%s %s: %s", smk.wildcards.model, condition, accuracy(rows["correct"]))
    with atomic_path(smk.output.scores) as tmp:
        frame.to_parquet(tmp, index=False)


main(snakemake)  # noqa: F821
