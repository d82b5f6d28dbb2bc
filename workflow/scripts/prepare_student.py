"""Rule prepare_student: locate the student model; convert a GGUF once to a transformers folder."""

import logging
from pathlib import Path

from clarify.errors import one_line_errors
from clarify.logs import setup_logging
from clarify.models import prepare_student


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    out = Path(smk.output.student)
    manifest = prepare_student(smk.params.student["model"], out / "hf", out / "manifest.json")
    logging.getLogger("clarify.prepare_student").info("student %s -> %s", manifest["spec"], manifest["path"])


main(snakemake)  # noqa: F821
