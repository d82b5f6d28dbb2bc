# Training: Phase A (answer-only SFT) and Phase B (CoT distillation, continuing Phase A).


rule train_phase_a:
    input:
        corpus=rules.build_corpora.output.baseline,
        dev=rules.split_data.output.dev,
        student=rules.prepare_student.output.student,
    output:
        adapter=directory("models/baseline_phaseA"),
    params:
        phase="phase_a",
        settings=config["phase_a"],
        lora=config["lora"],
        student=config["student"],
        quantization=config["quantization"],
        eval=training_eval_settings(config["phase_a"]),
        checkpoints="models/checkpoints/phase_a",
    log:
        log_path("train_phase_a"),
    benchmark:
        benchmark_path("train_phase_a")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/train_phase.py"


use rule train_phase_a as train_phase_b with:
    input:
        corpus=rules.build_phase_b_corpus.output.phase_b,
        dev=rules.split_data.output.dev,
        student=rules.prepare_student.output.student,
        init_adapter=rules.train_phase_a.output.adapter,
    output:
        adapter=directory("models/cot_phaseB"),
    params:
        phase="phase_b",
        settings=phase_b_settings(),
        lora=config["lora"],
        student=config["student"],
        quantization=config["quantization"],
        eval=training_eval_settings(config["phase_b"]),
        checkpoints="models/checkpoints/phase_b",
    log:
        log_path("train_phase_b"),
    benchmark:
        benchmark_path("train_phase_b")
