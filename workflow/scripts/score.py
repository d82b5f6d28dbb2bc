"""Rule score: answer-slot scores of one model in one eval mode on the eval split."""



from clarify.splits import first_questions
from clarify.errors import one_line_errors
from clarify.evaluation import evaluate
from clarify.io import atomic_path
from clarify.rule_jobs import start_model_job, job_student
from clarify.scoring import answer_tokens
from clarify.stats import accuracy


@one_line_errors
def main(smk):
    log = start_model_job(smk, "score")
    model_name, mode = smk.wildcards.model, smk.wildcards.mode
    settings = smk.params.eval
    questions = first_questions(smk.input.questions, settings["max_questions"])
    model, tokenizer = job_student(smk)
    tokens = answer_tokens(tokenizer)
    log.info("answer token ids: Yes=%s No=%s (%s)", list(tokens.yes), list(tokens.no),
             tokenizer.convert_ids_to_tokens(list(tokens.yes + tokens.no)))
    scores = evaluate(model, tokenizer, questions, mode, settings)
    scores.attrs = {"model": model_name, "mode": mode, "split": settings["split"],
                    "answer_token_ids": {"yes": list(tokens.yes), "no": list(tokens.no)}}
    with atomic_path(smk.output.scores) as tmp:
        scores.to_parquet(tmp, index=False)
    extra = ""
    if "hit_limit" in scores:
        extra = f"; {int(scores['hit_limit'].sum())} generations hit the length limit"
    if "sc_samples" in scores:
        k = int(scores["sc_samples"].iloc[0])
        unanimous = ((scores["sc_yes_votes"] == 0) | (scores["sc_yes_votes"] == k)).mean()
        extra += (f"; {k} samples per question at T={settings['sc_temperature']} (seed {settings['sc_seed']}), "
                  f"unanimous on {100 * unanimous:.1f}% of questions")
    log.info("%s/%s on %s: %s; predicted yes %.1f%%%s", model_name, mode, settings["split"],
             accuracy(scores["correct"]), 100 * scores["pred"].mean(), extra)


main(snakemake)  # noqa: F821
