"""Rule prepare_data: load the labelled set from any supported source and normalise it."""

import logging

from clarify import data, splits
from clarify.errors import one_line_errors
from clarify.io import write_json, write_jsonl
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    log = logging.getLogger("clarify.prepare_data")
    settings = smk.params.data
    records = data.load_records(settings["source"], fmt=settings["format"], hf_split=settings["hf_split"])
    mix = splits.class_mix(records)
    meta = {"source": settings["source"], "format": settings["format"], "rows": len(records), **mix,
            "with_decomposition": sum(1 for r in records if r["decomposition"])}
    if smk.input.source:
        meta["sha256"] = splits.file_sha256(smk.input.source[0])
    write_jsonl(smk.output.raw, records)
    write_json(smk.output.meta, meta)
    log.info("loaded %d questions from %s: %d yes / %d no", len(records), settings["source"], mix["yes"], mix["no"])


main(snakemake)  # noqa: F821
