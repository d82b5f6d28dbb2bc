"""Rule attribution_table: results/attribution.csv, every attributed model's questions in one file."""

import pandas as pd

from clarify.errors import one_line_errors
from clarify.io import atomic_path
from clarify.logs import setup_logging


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    table = pd.concat([pd.read_csv(path) for path in smk.input.tables], ignore_index=True)
    with atomic_path(smk.output.table) as tmp:
        table.to_csv(tmp, index=False)


main(snakemake)  # noqa: F821
