"""Rule ablation: one model's answer-slot scores with its own, no, and another question's draft."""

import logging

import pandas as pd
import torch

from clarify.ablations import run_ablation
from clarify.data import first_questions
from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.logs import setup_logging
from clarify.models import load_student
from clarify.stats import accuracy


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.ablation")
    torch.set_num_threads(smk.threads)
    settings = smk.params.eval
    questions = first_questions(smk.input.questions, settings["max_questions"])
    drafts = pd.read_parquet(smk.input.drafts)
    model, tokenizer = load_student(smk.input.student, smk.params.student, smk.params.quantization,
                                    adapter=smk.input.get("adapter"))
    frame = run_ablation(model, tokenizer, questions, drafts, seed=smk.params.ablations["seed"],
                         batch_size=settings["batch_size"])
    frame.attrs = {"model": smk.wildcards.model, "split": settings["split"]}
    for condition, rows in frame.groupby("condition", sort=False):
        log.info("%s %s: %s", smk.wildcards.model, condition, accuracy(rows["correct"]))
    with atomic_path(smk.output.scores) as tmp:
        frame.to_parquet(tmp, index=False)


main(snakemake)  # noqa: F821
