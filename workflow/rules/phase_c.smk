# Phase C: preference optimisation, optionally in self-guided rounds. Round 1 trains from the
# Phase B adapter on data/pairs.jsonl; round k>1 redrafts the train sample with round k-1's
# model, rebuilds the pairs and trains on from round k-1.


rule redraft_round:
    input:
        sample=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=lambda wildcards: f"models/dpo_phaseC/round{int(wildcards.round) - 1}",
    output:
        drafts="data/student_drafts_round{round}.jsonl",
    params:
        drafts=config["drafts"],
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        round="[2-9]|10",
    log:
        "logs/redraft_round{round}.log",
    benchmark:
        "logs/benchmarks/redraft_round{round}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/student_drafts.py"


rule rebuild_pairs_round:
    input:
        teacher=rules.teacher_harvest.output.outputs,
        drafts="data/student_drafts_round{round}.jsonl",
    output:
        pairs="data/pairs_round{round}.jsonl",
    params:
        corpus=config["corpus"],
    wildcard_constraints:
        round="[2-9]|10",
    log:
        "logs/rebuild_pairs_round{round}.log",
    benchmark:
        "logs/benchmarks/rebuild_pairs_round{round}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/build_pairs.py"


rule train_phase_c:
    input:
        pairs=round_pairs,
        init_adapter=round_init_adapter,
        student=rules.prepare_student.output.student,
    output:
        adapter=directory("models/dpo_phaseC/round{round}"),
    params:
        settings=phase_c_settings(),
        student=config["student"],
        quantization=config["quantization"],
        work_dir=lambda wildcards: f"models/checkpoints/phase_c_round{wildcards.round}",
    wildcard_constraints:
        round="[1-9]|10",
    log:
        "logs/train_phase_c_round{round}.log",
    benchmark:
        "logs/benchmarks/train_phase_c_round{round}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/train_phase_c.py"


rule train_phase_c_variant:
    input:
        pairs=rules.build_pairs.output.pairs,
        init_adapter=rules.train_phase_b.output.adapter,
        student=rules.prepare_student.output.student,
    output:
        adapter=directory("models/dpo_phaseC/compare_{loss}"),
    params:
        settings=lambda wildcards: phase_c_settings(wildcards.loss),
        student=config["student"],
        quantization=config["quantization"],
        work_dir=lambda wildcards: f"models/checkpoints/phase_c_{wildcards.loss}",
    wildcard_constraints:
        loss="sigmoid|cal_batch_mean|cal_paper|dr_drop_top|dr_paper",
    log:
        "logs/train_phase_c_{loss}.log",
    benchmark:
        "logs/benchmarks/train_phase_c_{loss}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/train_phase_c.py"
