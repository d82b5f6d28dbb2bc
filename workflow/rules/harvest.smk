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
        log_path("student_drafts"),
    benchmark:
        benchmark_path("student_drafts")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
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
        log_path("teacher_harvest"),
    benchmark:
        benchmark_path("teacher_harvest")
    resources:
        **backend_job(config["teacher"]["backend"]),
    conda:
        backend_env(config["teacher"]["backend"])
    script:
        "../scripts/teacher_harvest.py"
