"""How the real-reply fixtures were made: teacher and judge prompts sent to a real chat model.

    OPENAI_API_KEY=local python tests/data/replies/generate.py STRATEGYQA_JSON OUT_DIR openai MODEL BASE_URL
    python tests/data/replies/generate.py STRATEGYQA_JSON OUT_DIR hf PATH/TO/MODEL.gguf

``openai``: BASE_URL is an OpenAI-compatible server (llama-cpp-python's
``python -m llama_cpp.server`` serving the Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF on
127.0.0.1, or vLLM); ``hf``: the same GGUF through transformers (on a GPU). Requests go through
the project's own teacher backends (:func:`clarify.teacher.make_teacher`, the config's teacher
defaults: temperature 0.3, max_tokens 400), with a call cache in OUT_DIR so an interrupted run
resumes. Writes ``raw_teacher.jsonl`` and ``raw_judge.jsonl`` (one record per reply: kind, qid,
question, gold answer, prompt, reply, finish_reason, model) to OUT_DIR, batch by batch.
``expect.py`` then turns them into the committed ``teacher.jsonl`` / ``judge.jsonl``; the
expected answer, steps and verdict of each are checked by reading the reply.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/ for harvest_child.teacher_defaults

N_QUESTIONS = 15        # x 2 samples = 30 teacher replies
N_RATIONALIZE = 4
N_JUDGE = 10
SEED = 18


def _draft(row: dict, rng: random.Random) -> dict | None:
    """A student draft like the pipeline's: a guess (right or wrong) and sub-questions."""
    if rng.random() < 0.2:
        return None
    questions = [q for q in row["decomposition"] if "#" not in q][:3] or row["decomposition"][:1]
    guess = row["answer"] if rng.random() < 0.5 else not row["answer"]
    return {"guess": guess, "reason": "", "questions": questions}


def _weak_set(row: dict, rng: random.Random) -> list[str]:
    """A worse set of sub-questions to judge against the human decomposition."""
    choices = [[f"What is {row.get('term', 'it')}?"], [row["question"]], [], row["decomposition"][:1]]
    return rng.choice(choices)


def main(argv: list[str]) -> int:
    from clarify.judge import judge_prompt
    from clarify.prompts import rationalization_prompt, teacher_prompt
    from clarify.teacher import Request, make_teacher
    from harvest_child import teacher_defaults

    if len(argv) < 4 or argv[2] not in ("openai", "hf") or (argv[2] == "openai" and len(argv) < 5):
        raise SystemExit(__doc__)
    data, out, backend, model = Path(argv[0]), Path(argv[1]), argv[2], argv[3]
    base_url = argv[4] if backend == "openai" else None
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(data.read_text())
    rng = random.Random(SEED)
    picked = rng.sample(rows, N_QUESTIONS + N_JUDGE)
    teach_rows, judge_rows = picked[:N_QUESTIONS], picked[N_QUESTIONS:]

    requests, meta = [], []
    for row in teach_rows:
        draft = _draft(row, rng)
        for sample in range(2):
            requests.append(Request(row, teacher_prompt(row["question"], draft), sample))
            meta.append("teacher")
    for row in teach_rows[:N_RATIONALIZE]:
        draft = _draft(row, rng)
        requests.append(Request(row, rationalization_prompt(row["question"], draft, row["answer"]), 0,
                                kind="rationalize", hint=row["answer"]))
        meta.append("rationalize")
    for i, row in enumerate(judge_rows):
        human, weak = row["decomposition"], _weak_set(row, rng)
        first, second = (human, weak) if i % 2 == 0 else (weak, human)
        requests.append(Request(row, judge_prompt(row["question"], first, second), 0))
        meta.append("judge")

    settings = dict(teacher_defaults(), backend=backend, base_url=base_url, model=model,
                    concurrency=1, timeout_s=900.0, max_retries=1)
    batch_size = 2 if backend == "openai" else 16
    files = {"teacher": out / "raw_teacher.jsonl", "rationalize": out / "raw_teacher.jsonl",
             "judge": out / "raw_judge.jsonl"}
    for path in set(files.values()):
        path.write_text("")
    with make_teacher(settings, cache_path=out / "cache.sqlite") as teacher:
        for start in range(0, len(requests), batch_size):
            batch = requests[start:start + batch_size]
            for request, kind, completion in zip(batch, meta[start:start + batch_size],
                                                 teacher.complete_many(batch, progress=False)):
                record = {"kind": kind, "qid": request.record["qid"], "question": request.record["question"],
                          "gold": request.record["answer"], "sample": request.sample_index,
                          "model": model, "finish_reason": completion.finish_reason,
                          "completion_tokens": completion.completion_tokens,
                          "latency_s": round(completion.latency_s, 1),
                          "prompt": request.prompt, "reply": completion.text}
                with files[kind].open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{start}: {kind} {request.record['qid']} {completion.completion_tokens} tokens "
                      f"{completion.latency_s:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
