# Before any job: the config is validated (defaults filled from the schema) and preflighted.
# Then the helpers the rules share: what each kind of job declares, and what each job depends on.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake_interface_executor_plugins.settings import ExecMode

from clarify import preflight
from clarify import teacher as teacher_backends
from clarify.config import validate_config
from clarify.evaluation import MODES, mode_settings
from clarify.variants import resolve_variants
from clarify.errors import InputError

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
try:
    validate_config(config, SCHEMA)
    # every variant of the grid is the main config with its overrides, checked the same way
    VARIANTS = resolve_variants(config, validate=lambda merged: validate_config(merged, SCHEMA))
    if config["phase_b"]["self_train_rounds"]:
        raise InputError("config key phase_b.self_train_rounds: self-training runs as a variant of the grid, "
                         "e.g. variants: [{name: self_train, phase_b: {self_train_rounds: 1}}]")
except InputError as exc:
    raise WorkflowError(str(exc)) from None

# Keys, the student and its LoRA targets, checked without loading weights. A dry run only warns
# (it must work without an API key); a real run stops in onstart, before its first job, on those
# that concern a job it is about to run.
# Jobs on a cluster re-read this file: the main process has checked already.
PREFLIGHT = preflight.check(config) if workflow.exec_mode == ExecMode.DEFAULT else []
for _finding in PREFLIGHT:
    logger.warning(f"preflight: {_finding}")


onstart:
    try:
        preflight.stop_on_problems(PREFLIGHT, {job.rule.name for job in workflow.dag.needrun_jobs()})
    except InputError as exc:
        raise WorkflowError(str(exc)) from None


# --- What every job declares besides its inputs, outputs and params ---------------------------
CPU_ENV = "../../envs/cpu.yaml"  # paths relative to workflow/rules/, where every rule lives
GPU_ENV = "../../envs/gpu.yaml"


def log_path(name):
    return f"logs/{name}.log"


def benchmark_path(name):
    return f"logs/benchmarks/{name}.tsv"


def model_resources(wildcards, attempt):
    return config["resources"]["mem_mb"] * attempt


# Scheduler requests by kind of job (threads are their own directive). Model jobs load the student.
LIGHT_JOB = {"mem_mb": 1000, "runtime": 5}
DATA_JOB = {"mem_mb": 2000, "runtime": 10}
MODEL_THREADS = config["resources"]["threads"]
MODEL_GPUS = config["resources"]["gpu"]
MODEL_JOB = {"mem_mb": model_resources, "runtime": config["resources"]["runtime_min"], "gpu": MODEL_GPUS}


def env_for(gpus):
    """The conda environment of a job that asks for ``gpus`` GPUs."""
    return GPU_ENV if gpus else CPU_ENV


def backend_needs_gpu(name):
    """Whether a teacher/judge backend runs a local model (else it calls an API or needs nothing):
    the backend registry's own flag (clarify.teacher.BACKENDS), the one place rules decide this."""
    return teacher_backends.backend_needs_gpu(name)


def backend_threads(name):
    return MODEL_THREADS if backend_needs_gpu(name) else 1


def backend_job(name):
    """Scheduler requests of a teacher/judge job: a model job for a local model, else a small one."""
    if backend_needs_gpu(name):
        return MODEL_JOB
    return {"mem_mb": 2000, "runtime": config["resources"]["runtime_min"], "gpu": 0}


def backend_env(name):
    return env_for(backend_job(name)["gpu"])


def pick(section, *keys):
    """The named settings of one config section: a rule's rerun trigger is exactly these."""
    return {key: config[section][key] for key in keys}


# Every model scored, and where its adapter comes from (the base model has none). Phase C is
# its last round; earlier rounds are scored too, so the report shows accuracy per round.
ROUNDS = config["phase_c"]["rounds"]
ADAPTERS = {
    "base": None,
    "phaseA": "models/baseline_phaseA",
    "phaseB": "models/cot_phaseB",
    **{f"phaseC_round{k}": f"models/dpo_phaseC/round{k}" for k in range(1, ROUNDS)},
    "phaseC": f"models/dpo_phaseC/round{ROUNDS}",
    **{f"variant_{name}": variant.adapter for name, variant in VARIANTS.items()},
}
SCORED_MODELS = list(ADAPTERS)
EVAL_MODES = list(MODES)
VARIANT_NAMES = "|".join(VARIANTS) or "(?!)"  # a wildcard that matches no name when there is no variant


def score_files():
    return expand("results/scores/{model}/{mode}.parquet", model=SCORED_MODELS, mode=config["eval"]["modes"])


def adapter_input(wildcards):
    adapter = ADAPTERS[wildcards.model]
    return {"adapter": adapter} if adapter else {}


def eval_questions(wildcards):
    return f"data/splits/{config['eval']['split']}.jsonl"


def model_config(model):
    """The config a scored model was made with: a variant's merged config, else the main one."""
    name = model.removeprefix("variant_")
    return VARIANTS[name].config if model.startswith("variant_") and name in VARIANTS else config


def eval_settings(wildcards):
    """What a score job depends on: the eval keys its mode reads (a variant's own draft settings)."""
    return {**pick("eval", "split", "batch_size", "max_questions"),
            **mode_settings(wildcards.mode, config["eval"], model_config(wildcards.model)["drafts"])}


def training_eval_settings(phase_settings):
    """What the per-epoch dev check needs (it scores in the phase's batch size): the generation
    settings every phase has had, and what its dev mode reads beyond them (cot_sc: eval.sc_*)."""
    return {**pick("eval", "cot_max_new_tokens"), "drafts": config["drafts"],
            **mode_settings(phase_settings["dev_mode"], config["eval"], config["drafts"])}


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


def pair_inputs(source, samples, teacher, drafts):
    """What a pair-building job reads: own samples, or the teacher's outputs and the drafts."""
    return {"samples": samples} if source == "own_samples" else {"teacher": teacher, "drafts": drafts}


def round_pair_inputs(wildcards):
    k = round_number(wildcards)
    return pair_inputs(config["pairs"]["source"], f"data/own_samples_round{k}.jsonl",
                       "data/teacher_outputs.jsonl", f"data/student_drafts_round{k}.jsonl")


def round_init_adapter(wildcards):
    k = round_number(wildcards)
    return "models/cot_phaseB" if k == 1 else f"models/dpo_phaseC/round{k - 1}"


def previous_round_adapter(wildcards):
    return f"models/dpo_phaseC/round{round_number(wildcards) - 1}"


def phase_c_settings(section=None):
    """Phase C's settings for a training job (the rounds are the DAG's, not the job's)."""
    section = config["phase_c"] if section is None else section
    return {key: value for key, value in section.items() if key != "rounds"}


def phase_b_settings(section=None):
    """Phase B's training settings (self-training's keys belong to the rules that sample)."""
    section = config["phase_b"] if section is None else section
    return {key: value for key, value in section.items() if not key.startswith("self_train")}


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
    if backend_needs_gpu(config["judge"]["backend"]) and config["judge"]["model"] == "student":
        inputs["student"] = "models/student"
    return inputs


# --- What the report reads of Phase C runs and the variant grid ------------------------------
def pairs_accounting_files():
    """Each Phase C run's pairs accounting, by the label the report gives it: the main rounds, then
    every variant with pairs of its own."""
    files = {f"Phase C round {k}": "data/pairs_accounting.json" if k == 1 else f"data/pairs_accounting_round{k}.json"
             for k in range(1, ROUNDS + 1)}
    files.update({f"variant {name}": f"data/variants/{name}/pairs_accounting.json"
                  for name, v in VARIANTS.items() if v.own_pairs})
    return files


def self_train_accounting_files(v):
    return [f"data/variants/{v.name}/self_train_round{r}_accounting.json" for r in range(1, v.self_train_rounds + 1)]


def report_variants():
    """What the report's variant section needs of each variant, from clarify.variants.Variant."""
    return [{"name": name, "until": v.until, "overrides": v.overrides, "adapter": v.adapter,
             "self_train_accounting": self_train_accounting_files(v)} for name, v in VARIANTS.items()]


# The variant grid (variants.smk): which variant a job belongs to, and what it reads.
def variant(wildcards):
    return VARIANTS[wildcards.name]


def variant_self_train_input(wildcards):
    v, r = variant(wildcards), int(wildcards.round)
    return v.phase_b_round(r - 1)


def variant_phase_b_corpus(wildcards):
    v = variant(wildcards)
    return f"data/variants/{v.name}/train_phase_b.jsonl"


def variant_pair_inputs(wildcards):
    v = variant(wildcards)
    return pair_inputs(v.config["pairs"]["source"], f"data/variants/{v.name}/own_samples.jsonl",
                       "data/teacher_outputs.jsonl", v.drafts_file)
