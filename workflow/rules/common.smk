# Config validation (before any job) and the helpers the rules share.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from clarify.config import validate_config
from clarify.errors import InputError

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except InputError as exc:
    raise WorkflowError(str(exc)) from None


def pick(section, *keys):
    """The named settings of one config section: a rule's rerun trigger is exactly these."""
    return {key: config[section][key] for key in keys}


def model_resources(wildcards, attempt):
    return config["resources"]["mem_mb"] * attempt


# The models and eval modes scored so far; later stages extend these lists.
SCORED_MODELS = ["base"]
EVAL_MODES = ["direct"]


def score_files():
    return expand("results/scores/{model}/{mode}.parquet", model=SCORED_MODELS, mode=EVAL_MODES)


def local_data_source(wildcards):
    """The data file as an input when it is local, so editing it reruns the data stage."""
    source = config["data"]["source"]
    return [source] if Path(source).exists() else []
