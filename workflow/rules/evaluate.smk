# Evaluation: answer-slot scores for every model x eval mode on the eval split.


rule score:
    input:
        unpack(adapter_input),
        questions=lambda wildcards: f"data/splits/{config['eval']['split']}.jsonl",
        student=rules.prepare_student.output.student,
    output:
        scores="results/scores/{model}/{mode}.parquet",
    params:
        eval=eval_settings,
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        model="|".join(SCORED_MODELS),
        mode="|".join(EVAL_MODES),
    log:
        "logs/score/{model}_{mode}.log",
    benchmark:
        "logs/benchmarks/score_{model}_{mode}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        gpu=config["resources"]["gpu"],
        runtime=config["resources"]["runtime_min"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/score.py"
