"""Rule sample_own (pairs / self-training rounds): k sampled reasonings per question from a model,
each scored at its answer slot as the cot mode scores it.

params: ``purpose`` (``pairs`` or ``self_train``) and ``settings`` (that purpose's config
section: ``pairs``, or ``phase_b`` for self-training, whose ``self_train_fallback: rationalize``
adds hinted samples for the questions with no correct one). input: ``student``, ``records``,
optional ``adapter`` (Phase B, or the last round's model). output: ``samples``.
"""



from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.rule_jobs import start_model_job, job_student
from clarify.own_samples import sample_own_reasonings, sample_summary, sampling_settings, self_training_samples


@one_line_errors
def main(smk):
    log = start_model_job(smk, "sample_own")
    purpose, section = smk.params.purpose, smk.params.settings
    settings = sampling_settings(purpose, section)
    model, tokenizer = job_student(smk)
    records = read_jsonl(smk.input.records)
    if purpose == "self_train":
        rows = self_training_samples(model, tokenizer, records, settings, section["self_train_fallback"])
    else:
        rows = sample_own_reasonings(model, tokenizer, records, settings)
    log.info("own samples (%s, %s): %s", purpose, settings, sample_summary([r for r in rows if not r["hinted"]]))
    write_jsonl(smk.output.samples, rows)


main(snakemake)  # noqa: F821
