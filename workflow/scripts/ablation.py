"""Rule ablation: one model's answer-slot scores with its own, no, and another question's draft."""


import pandas as pd

from clarify.ablations import run_ablation
from clarify.splits import first_questions
from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.rule_jobs import start_model_job, job_student
from clarify.stats import accuracy


@one_line_errors
def main(smk):
    log = start_model_job(smk, "ablation")
    settings = smk.params.eval
    questions = first_questions(smk.input.questions, settings["max_questions"])
    drafts = pd.read_parquet(smk.input.drafts)
    model, tokenizer = job_student(smk)
    frame = run_ablation(model, tokenizer, questions, drafts, seed=smk.params.ablations["seed"],
                         batch_size=settings["batch_size"])
    frame.attrs = {"model": smk.wildcards.model, "split": settings["split"]}
    for condition, rows in frame.groupby("condition", sort=False):
        log.info("%s %s: %s", smk.wildcards.model, condition, accuracy(rows["correct"]))
    with atomic_path(smk.output.scores) as tmp:
        frame.to_parquet(tmp, index=False)


main(snakemake)  # noqa: F821
