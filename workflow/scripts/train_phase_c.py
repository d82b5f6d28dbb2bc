"""Rule train_phase_c: one round of preference optimisation with the configured schedule.

Every epoch (and epoch 0, the initial adapter) is scored on the dev split in
``phase_c.dev_mode``; the best epoch is kept and the collapse guard can stop the run.
"""

from pathlib import Path

import torch

from clarify.splits import first_questions
from clarify.dpo import train_dpo
from clarify.errors import one_line_errors
from clarify.io import read_jsonl
from clarify.logs import setup_logging
from clarify.models import read_manifest


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    torch.set_num_threads(smk.threads)
    settings = smk.params.settings
    train_dpo(
        manifest=read_manifest(Path(smk.input.student) / "manifest.json"),
        student=smk.params.student,
        quantization=smk.params.quantization,
        settings=settings,
        pairs=read_jsonl(smk.input.pairs),
        init_adapter=smk.input.init_adapter,
        output_dir=smk.output.adapter,
        work_dir=smk.params.work_dir,
        dev_records=first_questions(smk.input.dev, settings["dev_max_questions"]),
        eval_settings=smk.params.eval,
    )


main(snakemake)  # noqa: F821
