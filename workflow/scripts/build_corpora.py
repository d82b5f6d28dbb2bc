"""Rule build_corpora: Track A and Track B training corpora, label-balanced by construction."""

import logging

from clarify.corpora import build_baseline, build_cot, corpus_summary
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.build_corpora")
    settings = smk.params.corpus
    corpora = {
        "baseline": build_baseline(read_jsonl(smk.input.sample), settings["balance"], settings["seed"]),
        "cot": build_cot(read_jsonl(smk.input.teacher), settings["balance"], settings["seed"]),
    }
    for name, rows in corpora.items():
        log.info("%s corpus: %s", name, corpus_summary(rows))
        write_jsonl(smk.output[name], rows)


main(snakemake)  # noqa: F821
