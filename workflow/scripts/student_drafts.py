"""Rules student_drafts / redraft_round: the student's first guess and clarifying sub-questions.

The base student drafts for the harvest; in self-guided rounds the previous round's adapter drafts.
"""



from clarify.drafts import draft_summary, generate_drafts
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.rule_jobs import start_model_job, job_student


@one_line_errors
def main(smk):
    log = start_model_job(smk, "student_drafts")
    model, tokenizer = job_student(smk)
    rows = generate_drafts(model, tokenizer, read_jsonl(smk.input.sample), smk.params.drafts)
    summary = draft_summary(rows)
    log.info("drafts: %(n)d, parsed %(parse_ok)d, guesses %(guess_yes)d yes / %(guess_no)d no, "
             "%(guess_correct)d correct, %(hit_limit)d hit the length limit, %(mean_tokens).1f tokens on average",
             summary)
    write_jsonl(smk.output.drafts, rows)


main(snakemake)  # noqa: F821
