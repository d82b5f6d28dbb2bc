"""Rule sample_train: the label-balanced train sample the teacher harvest works on."""

import logging

from clarify import splits
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.sample_train")
    settings = smk.params.sample
    sample = splits.sample_balanced(read_jsonl(smk.input.train), settings["train_samples"], seed=settings["sample_seed"])
    mix = splits.class_mix(sample)
    log.info("sample: %d questions: %d yes / %d no (%.1f%% yes)", mix["n"], mix["yes"], mix["no"], 100 * mix["yes_frac"])
    write_jsonl(smk.output.sample, sample)


main(snakemake)  # noqa: F821
