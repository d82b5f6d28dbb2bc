# Harvest: the student drafts each sampled question, the teacher answers (voted, rationalised).


rule student_drafts:
    input:
        sample=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
    output:
        drafts="data/student_drafts.jsonl",
    params:
        drafts=config["drafts"],
        student=config["student"],
        quantization=config["quantization"],
    log:
        "logs/student_drafts.log",
    benchmark:
        "logs/benchmarks/student_drafts.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/student_drafts.py"


rule teacher_harvest:
    input:
        sample=rules.sample_train.output.sample,
        drafts=rules.student_drafts.output.drafts,
    output:
        outputs="data/teacher_outputs.jsonl",
        accounting="data/teacher_accounting.csv",
    params:
        teacher=config["teacher"],
    log:
        "logs/teacher_harvest.log",
    benchmark:
        "logs/benchmarks/teacher_harvest.tsv"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: model_resources(wildcards, attempt) if config["teacher"]["backend"] == "hf" else 2000,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"] if config["teacher"]["backend"] == "hf" else 0,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/teacher_harvest.py"
