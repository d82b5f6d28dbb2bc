# StrategyQA self-questioning student: the whole pipeline, stage by stage.
#   snakemake --cores 1 results/report.md      everything that is stale, in order
#   snakemake -n results/report.md             what would run, and why
import gc

from snakemake.utils import min_version

# Snakemake and its plugins have imported ~1200 modules by now, none of them garbage: moved to the
# permanent generation, they are not walked again by later collections nor by the one at exit,
# ~0.7 s of a dry run's ~4 s on 2 cores (docs/decisions.md, "Dry-run speed").
gc.freeze()

min_version("9.0")


configfile: "config.yaml"  # what differs from the schema's defaults (docs/config.md lists them all)


include: "workflow/rules/common.smk"  # config validation, preflight, helpers shared by the rules
include: "workflow/rules/data.smk"  # labelled set -> splits -> balanced train sample
include: "workflow/rules/models.smk"  # the student, made quick to load
include: "workflow/rules/harvest.smk"  # student drafts, teacher answers
include: "workflow/rules/corpora.smk"  # Track A / Track B corpora, preference pairs
include: "workflow/rules/train.smk"  # Phase A (answer-only SFT), Phase B (CoT distillation)
include: "workflow/rules/phase_c.smk"  # Phase C (DPO), its self-guided rounds and loss comparison
include: "workflow/rules/variants.smk"  # the variant grid: named Phase B / Phase C recipes
include: "workflow/rules/evaluate.smk"  # every model x eval mode, scored at the answer slot
include: "workflow/rules/validation.smk"  # draft ablations, attribution, LLM judge
include: "workflow/rules/report.smk"  # results/report.md and its figures


rule all:
    default_target: True
    input:
        "results/report.md",
