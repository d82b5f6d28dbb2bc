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


# Every model scored, and where its adapter comes from (the base model has none). Phase C is
# its last round; earlier rounds are scored too, so the report shows accuracy per round.
ROUNDS = config["phase_c"]["rounds"]
ADAPTERS = {
    "base": None,
    "phaseA": "models/baseline_phaseA",
    "phaseB": "models/cot_phaseB",
    **{f"phaseC_round{k}": f"models/dpo_phaseC/round{k}" for k in range(1, ROUNDS)},
    "phaseC": f"models/dpo_phaseC/round{ROUNDS}",
    **{f"phaseC_{loss}": f"models/dpo_phaseC/compare_{loss}" for loss in config["phase_c"]["compare_losses"]},
}
SCORED_MODELS = list(ADAPTERS)
EVAL_MODES = ["direct", "draft", "cot"]


def score_files():
    return expand("results/scores/{model}/{mode}.parquet", model=SCORED_MODELS, mode=config["eval"]["modes"])


def adapter_input(wildcards):
    adapter = ADAPTERS[wildcards.model]
    return {"adapter": adapter} if adapter else {}


def eval_settings(wildcards):
    """What a score job depends on: generation settings only for the modes that generate."""
    settings = pick("eval", "split", "batch_size", "max_questions")
    if wildcards.mode == "draft":
        settings["drafts"] = config["drafts"]
    if wildcards.mode == "cot":
        settings["cot_max_new_tokens"] = config["eval"]["cot_max_new_tokens"]
    return settings


def training_eval_settings():
    """What the per-epoch dev check needs: generation settings (it scores in the phase's batch size)."""
    return {**pick("eval", "cot_max_new_tokens"), "drafts": config["drafts"]}


def local_data_source(wildcards):
    """The data file as an input when it is local, so editing it reruns the data stage."""
    source = config["data"]["source"]
    return [source] if Path(source).exists() else []


# Phase C rounds: round 1 starts from Phase B and its pairs, round k from round k-1.
def round_number(wildcards):
    return int(wildcards.round)


def round_pairs(wildcards):
    k = round_number(wildcards)
    return "data/pairs.jsonl" if k == 1 else f"data/pairs_round{k}.jsonl"


def round_init_adapter(wildcards):
    k = round_number(wildcards)
    return "models/cot_phaseB" if k == 1 else f"models/dpo_phaseC/round{k - 1}"


def phase_c_settings(loss=None):
    """Phase C's settings for a training job; with ``loss``, that loss form in every epoch."""
    settings = {key: value for key, value in config["phase_c"].items() if key not in ("rounds", "compare_losses")}
    if loss:
        settings["schedule"] = [{"beta": epoch["beta"], "loss": loss} for epoch in settings["schedule"]]
    return settings


# Validation experiments: which models are attributed and which pairs the judge compares.
def _known_models(names, key):
    unknown = [name for name in names if name not in ADAPTERS]
    if unknown:
        raise WorkflowError(f"config key {key}: unknown model {unknown[0]!r} (scored models: {', '.join(SCORED_MODELS)})")
    return list(names)


ATTRIBUTED_MODELS = _known_models(config["attribution"]["models"] or SCORED_MODELS, "attribution.models")
JUDGE_ON = config["judge"]["backend"] != "none"
JUDGE_PAIRS = [_known_models(pair, "judge.pairs") for pair in config["judge"]["pairs"]]
for _pair in JUDGE_PAIRS:
    if _pair[0] == _pair[1]:
        raise WorkflowError(f"config key judge.pairs: {_pair} compares a model with itself")


def judge_inputs(wildcards):
    models = sorted({model for pair in JUDGE_PAIRS for model in pair})
    inputs = {f"drafts_{model}": f"results/scores/{model}/draft.parquet" for model in models}
    inputs["questions"] = f"data/splits/{config['eval']['split']}.jsonl"
    if config["judge"]["backend"] == "hf" and config["judge"]["model"] == "student":
        inputs["student"] = "models/student"
    return inputs
