"""Rule attribution: integrated gradients of one model's answer-slot margin on its draft-mode prompts."""

import logging

import numpy as np
import pandas as pd
import torch

from clarify.attribution import attribute
from clarify.data import first_questions
from clarify.drafts import draft_from_raw
from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.logs import setup_logging
from clarify.models import load_student
from clarify.prompts import draft_context


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.attribution")
    torch.set_num_threads(smk.threads)
    settings = smk.params.attribution
    questions = first_questions(smk.input.questions, smk.params.eval["max_questions"])
    drafts = pd.read_parquet(smk.input.drafts).set_index("qid")
    # The same seeded subset for every model, so per-model shares are paired.
    rng = np.random.default_rng(settings["seed"])
    picked = sorted(rng.choice(len(questions), size=min(settings["max_questions"], len(questions)), replace=False))
    records = [questions[i] for i in picked]
    contexts = [draft_context(draft_from_raw(drafts.loc[r["qid"], "generated"])) for r in records]
    # Gradients along the path need float32: in bf16 the completeness error swamps the margin.
    student = {**smk.params.student, "dtype": "float32"}
    model, tokenizer = load_student(smk.input.student, student, smk.params.quantization,
                                    adapter=smk.input.get("adapter"))
    frame = attribute(model, tokenizer, records, contexts, steps=settings["steps"], baseline=settings["baseline"],
                      batch_size=settings["batch_size"], method=settings["method"],
                      keep_first_token=settings["keep_first_token"])
    frame.insert(0, "model", smk.wildcards.model)
    log.info("%s: %d questions, mean draft share %.3f, question share %.3f; completeness error max %.2e, "
             "mean relative %.2e", smk.wildcards.model, len(frame), frame["draft_share"].mean(),
             frame["question_share"].mean(), frame["completeness_error"].max(), frame["relative_error"].mean())
    with atomic_path(smk.output.table) as tmp:
        frame.to_csv(tmp, index=False)


main(snakemake)  # noqa: F821
