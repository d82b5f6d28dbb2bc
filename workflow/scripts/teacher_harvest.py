"""Rule teacher_harvest: teacher samples per question, majority vote, rationalisation, accounting."""

import logging

import pandas as pd

from clarify.errors import one_line_errors
from clarify.harvest import harvest
from clarify.io import atomic_path, read_jsonl, write_jsonl
from clarify.logs import setup_logging
from clarify.teacher import make_teacher


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.teacher_harvest")
    settings = smk.params.teacher
    records = read_jsonl(smk.input.sample)
    drafts = {row["qid"]: row for row in read_jsonl(smk.input.drafts)}
    teacher = make_teacher(settings)
    rows, accounting = harvest(records, drafts, teacher, settings)
    spend = teacher.spend
    log.info("teacher %s/%s: %d requests made, %d from cache, %d retries, %d prompt + %d completion tokens, $%.4f",
             teacher.backend, teacher.model, spend.requests_made, spend.cache_hits, spend.retries,
             spend.prompt_tokens, spend.completion_tokens, spend.cost_usd)
    write_jsonl(smk.output.outputs, rows)
    with atomic_path(smk.output.accounting) as tmp:
        pd.DataFrame(accounting).to_csv(tmp, index=False)


main(snakemake)  # noqa: F821
