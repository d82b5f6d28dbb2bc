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
        eval=training_eval_settings(),
        checkpoints="models/checkpoints/phase_a",
    log:
        "logs/train_phase_a.log",
    benchmark:
        "logs/benchmarks/train_phase_a.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/train_phase.py"


rule train_phase_b:
    input:
        corpus=rules.build_corpora.output.cot,
        dev=rules.split_data.output.dev,
        student=rules.prepare_student.output.student,
        init_adapter=rules.train_phase_a.output.adapter,
    output:
        adapter=directory("models/cot_phaseB"),
    params:
        phase="phase_b",
        settings=config["phase_b"],
        lora=config["lora"],
        student=config["student"],
        quantization=config["quantization"],
        eval=training_eval_settings(),
        checkpoints="models/checkpoints/phase_b",
    log:
        "logs/train_phase_b.log",
    benchmark:
        "logs/benchmarks/train_phase_b.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/train_phase.py"
