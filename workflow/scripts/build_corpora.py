"""Rules that build training corpora (label-balanced by construction): every declared output is built.

Outputs it knows (the rule declares the ones it wants):

* ``baseline``: Track A (input ``sample``);
* ``cot``: Track B (input ``teacher``);
* ``phase_b``: what Phase B trains on: Track B, plus Track A when ``params.mix_answer_only``
  (multi-task Phase B; inputs ``sample`` and ``teacher``);
* ``self_train``: a self-training round's corpus (inputs ``samples`` from sample_own.py and
  ``teacher``; ``params.fallback``), with its accounting in output ``accounting`` (JSON).
"""

import logging

from clarify.corpora import build_baseline, build_cot, corpus_summary, mix_answer_only
from clarify.own_corpora import self_training_corpus
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_json, write_jsonl
from clarify.logs import setup_logging


def baseline(smk, settings):
    return build_baseline(read_jsonl(smk.input.sample), settings["balance"], settings["seed"]), None


def cot(smk, settings):
    return build_cot(read_jsonl(smk.input.teacher), settings["balance"], settings["seed"]), None


def phase_b(smk, settings):
    rows, _ = cot(smk, settings)
    if smk.params.get("mix_answer_only", False):
        rows = mix_answer_only(rows, baseline(smk, settings)[0], settings["balance"], settings["seed"])
    return rows, None


def self_train(smk, settings):
    return self_training_corpus(read_jsonl(smk.input.samples), read_jsonl(smk.input.teacher),
                                smk.params.fallback, settings["seed"], settings["balance"])


BUILDERS = {"baseline": baseline, "cot": cot, "phase_b": phase_b, "self_train": self_train}


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.build_corpora")
    settings = smk.params.corpus
    for name, build in BUILDERS.items():
        if name not in smk.output.keys():
            continue
        rows, accounting = build(smk, settings)
        log.info("%s corpus: %s", name, corpus_summary(rows))
        if accounting is not None:
            log.info("%s accounting: %s", name, accounting)
            write_json(smk.output.accounting, accounting)
        write_jsonl(smk.output[name], rows)


main(snakemake)  # noqa: F821
