"""Rule build_pairs: Phase C preference pairs (teacher reasoning vs the student's wrong draft)."""

import logging

from clarify.corpora import build_pairs, corpus_summary
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    drafts = {row["qid"]: row for row in read_jsonl(smk.input.drafts)}
    settings = smk.params.corpus
    pairs = build_pairs(read_jsonl(smk.input.teacher), drafts, settings["seed"], mode=settings["balance"])
    logging.getLogger("clarify.build_pairs").info("pairs: %s", corpus_summary(pairs))
    write_jsonl(smk.output.pairs, pairs)


main(snakemake)  # noqa: F821
