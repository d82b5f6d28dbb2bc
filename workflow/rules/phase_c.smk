# Phase C: preference optimisation, optionally in self-guided rounds. Round 1 trains from the
# Phase B adapter on data/pairs.jsonl; round k>1 resamples (own_samples) or redrafts
# (teacher_vs_draft) the train sample with round k-1's model, rebuilds the pairs and trains on
# from round k-1 (loss forms are compared as variants of the grid: variants.smk). Every run
# scores dev after each epoch (epoch 0 = where it starts) and keeps the best epoch.


rule sample_own_pairs:
    input:
        records=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=rules.train_phase_b.output.adapter,
    output:
        samples="data/own_samples.jsonl",
    params:
        purpose="pairs",
        settings=config["pairs"],
        student=config["student"],
        quantization=config["quantization"],
    log:
        log_path("sample_own_pairs"),
    benchmark:
        benchmark_path("sample_own_pairs")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/sample_own.py"


use rule sample_own_pairs as resample_own_round with:
    input:
        records=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=previous_round_adapter,
    output:
        samples="data/own_samples_round{round}.jsonl",
    wildcard_constraints:
        round="[2-9]|10",
    log:
        log_path("resample_own_round{round}"),
    benchmark:
        benchmark_path("resample_own_round{round}")


use rule student_drafts as redraft_round with:
    input:
        sample=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=previous_round_adapter,
    output:
        drafts="data/student_drafts_round{round}.jsonl",
    wildcard_constraints:
        round="[2-9]|10",
    log:
        log_path("redraft_round{round}"),
    benchmark:
        benchmark_path("redraft_round{round}")


use rule build_pairs as rebuild_pairs_round with:
    input:
        unpack(round_pair_inputs),
    output:
        pairs="data/pairs_round{round}.jsonl",
        accounting="data/pairs_accounting_round{round}.json",
    wildcard_constraints:
        round="[2-9]|10",
    log:
        log_path("rebuild_pairs_round{round}"),
    benchmark:
        benchmark_path("rebuild_pairs_round{round}")


rule train_phase_c:
    input:
        pairs=round_pairs,
        init_adapter=round_init_adapter,
        student=rules.prepare_student.output.student,
        dev=rules.split_data.output.dev,
    output:
        adapter=directory("models/dpo_phaseC/round{round}"),
    params:
        settings=phase_c_settings(),
        eval=training_eval_settings(config["phase_c"]),
        student=config["student"],
        quantization=config["quantization"],
        work_dir=lambda wildcards: f"models/checkpoints/phase_c_round{wildcards.round}",
    wildcard_constraints:
        round="[1-9]|10",
    log:
        log_path("train_phase_c_round{round}"),
    benchmark:
        benchmark_path("train_phase_c_round{round}")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/train_phase_c.py"
