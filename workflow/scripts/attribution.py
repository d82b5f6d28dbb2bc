"""Rule attribution: integrated gradients of one model's answer-slot margin on its draft-mode prompts."""


import numpy as np
import pandas as pd

from clarify.attribution import attribute, check_settings, summarize_attribution
from clarify.splits import first_questions
from clarify.drafts import draft_from_raw
from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.rule_jobs import start_model_job
from clarify.models import load_student


@one_line_errors
def main(smk):
    log = start_model_job(smk, "attribution")
    settings = smk.params.attribution
    check_settings(settings)
    questions = first_questions(smk.input.questions, smk.params.eval["max_questions"])
    drafts = pd.read_parquet(smk.input.drafts).set_index("qid")
    # The same seeded subset for every model, so per-model shares are paired.
    rng = np.random.default_rng(settings["seed"])
    picked = sorted(rng.choice(len(questions), size=min(settings["max_questions"], len(questions)), replace=False))
    records = [questions[i] for i in picked]
    # The parsed drafts (not their context strings), so the shares split into guess and sub-questions.
    parsed = [draft_from_raw(drafts.loc[r["qid"], "generated"]) for r in records]
    # Gradients along the path need float32: in bf16 the completeness error swamps the margin.
    student = {**smk.params.student, "dtype": "float32"}
    model, tokenizer = load_student(smk.input.student, student, smk.params.quantization,
                                    adapter=smk.input.get("adapter"))
    frame = attribute(model, tokenizer, records, parsed, steps=settings["steps"], baseline=settings["baseline"],
                      batch_size=settings["batch_size"], method=settings["method"],
                      keep_first_token=settings["keep_first_token"], max_steps=settings["max_steps"],
                      tolerance=settings["tolerance"], min_margin_change=settings["min_margin_change"])
    frame.insert(0, "model", smk.wildcards.model)
    s = summarize_attribution(frame).iloc[0]
    log.info("%s: %d questions (%d with |margin change| < %g); %d/%d converged within %.0f%% (median %g points, "
             "max %d, %.0f gradients per question); error %.1f%% of the summed margin change; over converged: "
             "draft share %.3f = guess %.3f + sub-questions %.3f + unsplit %.3f, question %.3f",
             smk.wildcards.model, s["n"], s["n_small_change"], settings["min_margin_change"], s["n_converged"],
             s["n_measured"], 100 * settings["tolerance"], s["median_steps"], s["max_steps_used"], s["mean_points"],
             100 * s["error_share"], s["draft_share"], s["guess_share"], s["subquestions_share"],
             s["draft_unsplit_share"], s["question_share"])
    with atomic_path(smk.output.table) as tmp:
        frame.to_csv(tmp, index=False)


main(snakemake)  # noqa: F821
