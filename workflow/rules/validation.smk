# Validation experiments: draft ablations, integrated-gradients attribution, LLM judge.


rule ablation:
    input:
        unpack(adapter_input),
        drafts="results/scores/{model}/draft.parquet",
        questions=eval_questions,
        student=rules.prepare_student.output.student,
    output:
        scores="results/ablations/{model}.parquet",
    params:
        eval=pick("eval", "split", "batch_size", "max_questions"),
        ablations=config["ablations"],
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        model="|".join(SCORED_MODELS),
    log:
        log_path("ablation/{model}"),
    benchmark:
        benchmark_path("ablation_{model}")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/ablation.py"


rule ablation_table:
    input:
        scores=expand("results/ablations/{model}.parquet", model=SCORED_MODELS),
    output:
        table=report("results/ablations.csv", caption="../report/ablations_table.rst", category="4. Tables"),
    params:
        min_drop_pp=config["report"]["targets"]["no_draft_drop_pp"],
        alpha=config["report"]["targets"]["alpha"],
    log:
        log_path("ablation_table"),
    benchmark:
        benchmark_path("ablation_table")
    resources:
        **LIGHT_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/ablation_table.py"


rule attribution:
    input:
        unpack(adapter_input),
        drafts="results/scores/{model}/draft.parquet",
        questions=eval_questions,
        student=rules.prepare_student.output.student,
    output:
        table="results/attribution/{model}.csv",
    params:
        attribution={key: value for key, value in config["attribution"].items() if key != "models"},
        eval=pick("eval", "split", "max_questions"),
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        model="|".join(SCORED_MODELS),
    log:
        log_path("attribution/{model}"),
    benchmark:
        benchmark_path("attribution_{model}")
    threads: MODEL_THREADS
    resources:
        **MODEL_JOB,
    conda:
        env_for(MODEL_GPUS)
    script:
        "../scripts/attribution.py"


rule attribution_table:
    input:
        tables=expand("results/attribution/{model}.csv", model=ATTRIBUTED_MODELS),
    output:
        table=report("results/attribution.csv", caption="../report/attribution_table.rst", category="4. Tables"),
    log:
        log_path("attribution_table"),
    benchmark:
        benchmark_path("attribution_table")
    resources:
        **LIGHT_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/attribution_table.py"


rule judge:
    input:
        unpack(judge_inputs),
    output:
        verdicts=report("results/judge.csv", caption="../report/judge_table.rst", category="4. Tables"),
        summary="results/judge_summary.json",
    params:
        judge=config["judge"],
    log:
        log_path("judge"),
    benchmark:
        benchmark_path("judge")
    threads: backend_threads(config["judge"]["backend"])
    resources:
        **backend_job(config["judge"]["backend"]),
    conda:
        backend_env(config["judge"]["backend"])
    script:
        "../scripts/judge.py"
