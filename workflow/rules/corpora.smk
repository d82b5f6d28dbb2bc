# Corpora: Track A (question -> answer), Track B (question -> reasoning -> answer), DPO pairs;
# all label-balanced by construction.


rule build_corpora:
    input:
        sample=rules.sample_train.output.sample,
        teacher=rules.teacher_harvest.output.outputs,
    output:
        baseline="data/train_baseline.jsonl",
        cot="data/train_cot.jsonl",
    params:
        corpus=config["corpus"],
    log:
        log_path("build_corpora"),
    benchmark:
        benchmark_path("build_corpora")
    resources:
        **LIGHT_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/build_corpora.py"


rule build_pairs:
    input:
        teacher=rules.teacher_harvest.output.outputs,
        drafts=rules.student_drafts.output.drafts,
    output:
        pairs="data/pairs.jsonl",
    params:
        corpus=config["corpus"],
    log:
        log_path("build_pairs"),
    benchmark:
        benchmark_path("build_pairs")
    resources:
        **LIGHT_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/build_pairs.py"
