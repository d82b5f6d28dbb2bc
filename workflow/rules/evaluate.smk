# Evaluation: answer-slot scores for every model x eval mode on the eval split.


rule score:
    input:
        unpack(adapter_input),
        questions=eval_questions,
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
        log_path("score/{model}_{mode}"),
    benchmark:
        benchmark_path("score_{model}_{mode}")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/score.py"
