"""Rule ablation_table: results/ablations.csv, one row per model and condition."""

import logging

import pandas as pd

from clarify.ablations import ablation_table
from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    results = {}
    for path in smk.input.scores:
        frame = pd.read_parquet(path)
        results[frame.attrs.get("model") or path.rsplit("/", 1)[-1].removesuffix(".parquet")] = frame
    table = ablation_table(results, min_drop_pp=smk.params.min_drop_pp, alpha=smk.params.alpha)
    logging.getLogger("clarify.ablation_table").info("\n%s", table.to_string(index=False))
    with atomic_path(smk.output.table) as tmp:
        table.to_csv(tmp, index=False)


main(snakemake)  # noqa: F821
