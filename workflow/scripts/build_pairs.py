"""Rule build_pairs (and its self-guided rounds): Phase C preference pairs, by ``pairs.source``.

* ``own_samples``: a correct own reasoning against a wrong one (input ``samples``, written by
  sample_own.py from the Phase B model or the last round's); accounting to output ``accounting``.
* ``teacher_vs_draft``: the seed's teacher reasoning against the student's wrong draft (inputs
  ``teacher`` and ``drafts``).
"""

import logging

from clarify.corpora import build_pairs, corpus_summary
from clarify.own_corpora import pairs_from_own_samples
from clarify.errors import InputError, one_line_errors
from clarify.io import read_jsonl, write_json, write_jsonl
from clarify.logs import setup_logging


def own_samples(smk, corpus, pairs):
    return pairs_from_own_samples(read_jsonl(smk.input.samples), pairs["seed"], mode=corpus["balance"],
                                  pairs_per_question=pairs["pairs_per_question"])


def teacher_vs_draft(smk, corpus, pairs):
    drafts = {row["qid"]: row for row in read_jsonl(smk.input.drafts)}
    rows = build_pairs(read_jsonl(smk.input.teacher), drafts, corpus["seed"], mode=corpus["balance"])
    return rows, corpus_summary(rows)


SOURCES = {"own_samples": own_samples, "teacher_vs_draft": teacher_vs_draft}


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.build_pairs")
    # a rule that passes no pairs settings (the seed's rule) builds the seed's pairs
    corpus, pairs = smk.params.corpus, smk.params.get("pairs") or {"source": "teacher_vs_draft"}
    if pairs["source"] not in SOURCES:
        raise InputError(f"config: pairs.source: {pairs['source']!r} is not one of {list(SOURCES)}")
    rows, accounting = SOURCES[pairs["source"]](smk, corpus, pairs)
    log.info("pairs (%s): %s", pairs["source"], corpus_summary(rows))
    log.info("pairs accounting: %s", accounting)
    if "accounting" in smk.output.keys():
        write_json(smk.output.accounting, {"source": pairs["source"], **accounting})
    write_jsonl(smk.output.pairs, rows)


main(snakemake)  # noqa: F821
