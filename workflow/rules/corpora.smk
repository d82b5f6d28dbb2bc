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
        "logs/build_corpora.log",
    benchmark:
        "logs/benchmarks/build_corpora.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
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
        "logs/build_pairs.log",
    benchmark:
        "logs/benchmarks/build_pairs.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/build_pairs.py"
