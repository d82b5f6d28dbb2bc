"""Rule judge: an LLM judge compares two models' clarifying sub-questions, in both orders."""

import logging
from pathlib import Path

import pandas as pd

from clarify.drafts import draft_from_raw
from clarify.errors import one_line_errors
from clarify.io import atomic_path, read_jsonl, write_json
from clarify.judge import judge_pairs, make_judge, summarize
from clarify.logs import setup_logging
from clarify.models import read_manifest


def draft_questions(path: str, max_questions) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    if max_questions:
        frame = frame.iloc[:max_questions]
    return pd.DataFrame({"qid": frame["qid"], "questions": [draft_from_raw(raw)["questions"]
                                                           for raw in frame["generated"]]})


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.judge")
    settings = dict(smk.params.judge)
    if settings["backend"] == "hf" and settings["model"] == "student":
        settings["model"] = read_manifest(Path(smk.input.student) / "manifest.json")["path"]
    judge = make_judge(settings)
    question_text = {r["qid"]: r["question"] for r in read_jsonl(smk.input.questions)}
    frames, summaries = [], []
    with judge:
        for first, second in settings["pairs"]:
            a = draft_questions(smk.input[f"drafts_{first}"], settings["max_questions"])
            b = draft_questions(smk.input[f"drafts_{second}"], settings["max_questions"])
            if list(a["qid"]) != list(b["qid"]):
                raise ValueError(f"judge: {first} and {second} drafted different questions")
            items = [{"qid": qid, "question": question_text[qid], "questions_a": qa, "questions_b": qb}
                     for qid, qa, qb in zip(a["qid"], a["questions"], b["questions"])]
            frame = judge_pairs(judge, items)
            frame.insert(0, "model_a", first)
            frame.insert(1, "model_b", second)
            frames.append(frame)
            summary = {"model_a": first, "model_b": second, **summarize(frame, seed=settings["seed"])}
            summaries.append(summary)
            log.info("judge %s vs %s: %s", first, second, summary)
        spend = judge.spend.as_dict()
    table = pd.concat(frames, ignore_index=True)
    with atomic_path(smk.output.verdicts) as tmp:
        table.to_csv(tmp, index=False)
    write_json(smk.output.summary, {"backend": settings["backend"], "model": smk.params.judge["model"],
                                    "pairs": summaries, "spend_this_run": spend})


main(snakemake)  # noqa: F821
