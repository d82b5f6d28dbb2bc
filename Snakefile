# StrategyQA self-questioning student: the whole pipeline, stage by stage.
#   snakemake --cores 1 results/report.md      everything that is stale, in order
#   snakemake -n results/report.md             what would run, and why
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/harvest.smk"
include: "workflow/rules/corpora.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/phase_c.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/validation.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.md",
