"""Rule judge: an LLM judge compares two models' clarifying sub-questions, in both orders."""

from clarify.errors import one_line_errors
from clarify.io import atomic_path, read_jsonl, write_json
from clarify.judge import judge_models, make_judge, resolve_model
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    settings = resolve_model(smk.params.judge, smk.input.get("student"))
    questions = {r["qid"]: r["question"] for r in read_jsonl(smk.input.questions)}
    drafts = {name: smk.input[f"drafts_{name}"] for pair in settings["pairs"] for name in pair}
    with make_judge(settings) as judge:
        table, summaries = judge_models(judge, questions, drafts, settings["pairs"],
                                        settings["max_questions"], settings["seed"])
        spend = judge.spend.as_dict()
    with atomic_path(smk.output.verdicts) as tmp:
        table.to_csv(tmp, index=False)
    write_json(smk.output.summary, {"backend": settings["backend"], "model": smk.params.judge["model"],
                                    "pairs": summaries, "spend_this_run": spend})


main(snakemake)  # noqa: F821
