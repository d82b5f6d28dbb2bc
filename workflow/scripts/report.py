"""Rule report: render results/report.md from the artifacts the DAG produced."""

from clarify.errors import one_line_errors
from clarify.io import write_text
from clarify.logs import setup_logging
from clarify.report import build_report


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    text = build_report(
        title=smk.params.report["title"],
        source_meta=smk.input.meta,
        splits={"train": smk.input.train, "dev": smk.input.dev, "test": smk.input.test},
        sample=smk.input.sample,
        score_files=list(smk.input.scores),
        config=smk.params.config,
    )
    write_text(smk.output.report, text)


main(snakemake)  # noqa: F821
