"""Rules student_drafts / redraft_round: the student's first guess and clarifying sub-questions.

The base student drafts for the harvest; in self-guided rounds the previous round's adapter drafts.
"""

import logging

import torch

from clarify.drafts import draft_summary, generate_drafts
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.logs import setup_logging
from clarify.models import load_student


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.student_drafts")
    torch.set_num_threads(smk.threads)
    model, tokenizer = load_student(smk.input.student, smk.params.student, smk.params.quantization,
                                    adapter=smk.input.get("adapter"))
    rows = generate_drafts(model, tokenizer, read_jsonl(smk.input.sample), smk.params.drafts)
    summary = draft_summary(rows)
    log.info("drafts: %(n)d, parsed %(parse_ok)d, guesses %(guess_yes)d yes / %(guess_no)d no, "
             "%(guess_correct)d correct, %(hit_limit)d hit the length limit, %(mean_tokens).1f tokens on average",
             summary)
    write_jsonl(smk.output.drafts, rows)


main(snakemake)  # noqa: F821
