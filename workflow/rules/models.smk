# The student model, made quick to load: a GGUF is dequantised once into a transformers folder.


rule prepare_student:
    output:
        student=directory("models/student"),
    params:
        student=pick("student", "model"),
    log:
        "logs/prepare_student.log",
    benchmark:
        "logs/benchmarks/prepare_student.tsv"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/prepare_student.py"
