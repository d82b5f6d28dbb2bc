# Corpora: Track A (question -> answer), Track B (question -> reasoning -> answer), what Phase B
# trains on (Track B, or multi-task: Track B + Track A), DPO pairs; all label-balanced by construction.


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


use rule build_corpora as build_phase_b_corpus with:
    output:
        phase_b="data/train_phase_b.jsonl",
    params:
        corpus=config["corpus"],
        mix_answer_only=config["phase_b"]["mix_answer_only"],
    log:
        log_path("build_phase_b_corpus"),
    benchmark:
        benchmark_path("build_phase_b_corpus")


# Phase C's pairs (pairs.source): the Phase B model's own correct vs wrong reasoning
# (own_samples, sampled by sample_own_pairs), or the seed's teacher text vs the student's draft.
rule build_pairs:
    input:
        unpack(lambda wildcards: pair_inputs(config["pairs"]["source"], "data/own_samples.jsonl",
                                             "data/teacher_outputs.jsonl", "data/student_drafts.jsonl")),
    output:
        pairs="data/pairs.jsonl",
        accounting="data/pairs_accounting.json",
    params:
        corpus=config["corpus"],
        pairs=config["pairs"],
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
