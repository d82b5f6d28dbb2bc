"""Turn generate.py's raw replies into the fixtures, and print the parse rates old vs new.

    python tests/data/replies/expect.py RAW_DIR [OLD_REV]

Writes ``teacher.jsonl`` and ``judge.jsonl`` beside this file: each raw reply with an ``id``
and ``expected`` filled in by the current parsers (teacher: final, steps, reason; judge:
verdict, reason). Read every reply and correct ``expected`` where the parser is wrong before
committing: the expected values are what the reply says, not what the parser makes of it.

The parse rates compare the current parsers with the old ones at OLD_REV (default: the commit
that moved them unchanged into ``src/clarify/parsing.py``; that module needs only ``re``, so it
is loaded straight from git).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
OLD_REV = "b2085f9"  # "parsing: parse_teacher, parse_verdict and their helpers move unchanged ..."


def old_parsers(rev: str) -> types.ModuleType:
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:src/clarify/parsing.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("old_parsing")
    exec(compile(source, f"{rev}:src/clarify/parsing.py", "exec"), module.__dict__)
    return module


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "src"))
    from clarify.parsing import parse_judge_reply, parse_teacher_reply

    raw, rev = Path(argv[0]), argv[1] if len(argv) > 1 else OLD_REV
    old = old_parsers(rev)
    teacher, judge = _read(raw / "raw_teacher.jsonl"), _read(raw / "raw_judge.jsonl")
    keep = ("id", "kind", "qid", "question", "gold", "model", "finish_reason", "reply", "expected")
    for i, record in enumerate(teacher):
        reply = parse_teacher_reply(record["reply"])
        record.update(id=f"t{i:02d}-{record['kind']}-{record['qid'][:8]}",
                      expected={"final": reply.final, "steps": reply.steps, "reason": reply.reason})
    for i, record in enumerate(judge):
        reply = parse_judge_reply(record["reply"])
        record.update(id=f"j{i:02d}-{record['qid'][:8]}", expected={"verdict": reply.verdict, "reason": reply.reason})
    for name, records in (("teacher.jsonl", teacher), ("judge.jsonl", judge)):
        (HERE / name).write_text("".join(json.dumps({k: r[k] for k in keep if k in r}) + "\n" for r in records))

    def rate(ok: list[bool]) -> str:
        return f"{sum(ok)}/{len(ok)} ({100 * sum(ok) / max(1, len(ok)):.0f}%)"

    old_ok = [(lambda f, s: f is not None and bool(s))(*old.parse_teacher(r["reply"])) for r in teacher]
    new_ok = [parse_teacher_reply(r["reply"]).reason is None for r in teacher]
    print(f"teacher replies parsed (answer and steps): old {rate(old_ok)}, new {rate(new_ok)}")
    old_v = [old.parse_verdict(r["reply"]) != "invalid" for r in judge]
    new_v = [parse_judge_reply(r["reply"]).verdict != "invalid" for r in judge]
    print(f"judge replies with a verdict: old {rate(old_v)}, new {rate(new_v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
