# The student model, made quick to load: a GGUF is dequantised once into a transformers folder.


rule prepare_student:
    output:
        student=directory("models/student"),
    params:
        student=pick("student", "model"),
    log:
        log_path("prepare_student"),
    benchmark:
        benchmark_path("prepare_student")
    resources:
        mem_mb=model_resources,
        runtime=60,
    conda:
        CPU_ENV
    script:
        "../scripts/prepare_student.py"
