"""Rules train_phase_a / train_phase_b: one phase's LoRA adapter, best dev epoch kept."""

from pathlib import Path

import torch

from clarify.splits import first_questions
from clarify.errors import one_line_errors
from clarify.io import read_jsonl
from clarify.logs import setup_logging
from clarify.models import read_manifest
from clarify.training import train_phase


@one_line_errors
def main(smk):
    setup_logging(smk.log[0])
    torch.set_num_threads(smk.threads)
    settings = smk.params.settings
    dev = first_questions(smk.input.dev, settings["dev_max_questions"])
    train_phase(
        phase=smk.params.phase,
        manifest=read_manifest(Path(smk.input.student) / "manifest.json"),
        student=smk.params.student,
        quantization=smk.params.quantization,
        lora=smk.params.lora,
        settings=settings,
        eval_settings=smk.params.eval,
        train_rows=read_jsonl(smk.input.corpus),
        dev_records=dev,
        output_dir=smk.output.adapter,
        checkpoint_dir=smk.params.checkpoints,
        init_adapter=smk.input.get("init_adapter"),
        # Read from the config, not params: turning the curves on or off is no reason to retrain.
        tensorboard_dir=f"logs/tensorboard/{smk.rule}" if smk.config["logging"]["tensorboard"] else None,
    )


main(snakemake)  # noqa: F821
