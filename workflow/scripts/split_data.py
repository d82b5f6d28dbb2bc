"""Rule split_data: seeded, label-stratified train/dev/test splits, disjoint by question."""

import logging

from clarify.splits import class_mix, split_records
from clarify.errors import one_line_errors
from clarify.io import read_jsonl, write_jsonl
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.split_data")
    settings = smk.params.split
    splits = split_records(
        read_jsonl(smk.input.raw),
        test_fraction=settings["test_fraction"],
        dev_fraction=settings["dev_fraction"],
        seed=settings["split_seed"],
        max_questions=settings["max_questions"],
    )
    for name, records in splits.items():
        mix = class_mix(records)
        log.info("%-5s %5d questions: %d yes / %d no (%.1f%% yes)",
                 name, mix["n"], mix["yes"], mix["no"], 100 * mix["yes_frac"])
    for name, records in splits.items():
        write_jsonl(smk.output[name], records)


main(snakemake)  # noqa: F821
