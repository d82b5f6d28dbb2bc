"""A teacher harvest in its own process, for the SIGKILL test (and the requests it uses).

    OPENAI_API_KEY=... python tests/harvest_child.py BASE_URL CACHE N CONCURRENCY [OUT.json]

Runs the openai backend over :func:`make_requests` (N) against ``BASE_URL`` with the cache
``CACHE`` and writes the completion texts to ``OUT.json`` when it finishes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def teacher_defaults() -> dict:
    """The ``teacher`` settings with the schema's defaults (exactly the schema's keys)."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return {key: spec.get("default") for key, spec in schema["properties"]["teacher"]["properties"].items()}


def make_requests(n: int, samples: int = 2):
    """``n`` requests: n // samples synthetic questions x ``samples`` samples each."""
    from clarify.prompts import teacher_prompt
    from clarify.teacher import Request

    requests = []
    for i in range(n):
        q, s = divmod(i, samples)
        record = {"qid": f"q{q:04d}", "question": f"Is synthetic thing number {q} real?", "answer": q % 2 == 0,
                  "facts": [], "decomposition": []}
        requests.append(Request(record, teacher_prompt(record["question"]), s))
    return requests


def main(argv: list[str]) -> int:
    from clarify.teacher import make_teacher

    base_url, cache, n, concurrency = argv[0], argv[1], int(argv[2]), int(argv[3])
    out = argv[4] if len(argv) > 4 else None
    settings = dict(teacher_defaults(), backend="openai", base_url=base_url, concurrency=concurrency,
                    timeout_s=5.0, max_retries=2)
    with make_teacher(settings, cache_path=cache) as teacher:
        completions = teacher.complete_many(make_requests(n), progress=False)
    if out:
        Path(out).write_text(json.dumps([c.text for c in completions]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
