# Validation experiments: draft ablations, integrated-gradients attribution, LLM judge.


rule ablation:
    input:
        unpack(adapter_input),
        drafts="results/scores/{model}/draft.parquet",
        questions=lambda wildcards: f"data/splits/{config['eval']['split']}.jsonl",
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
        "logs/ablation/{model}.log",
    benchmark:
        "logs/benchmarks/ablation_{model}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        gpu=config["resources"]["gpu"],
        runtime=config["resources"]["runtime_min"],
    conda:
        "../../envs/cpu.yaml"
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
        "logs/ablation_table.log",
    benchmark:
        "logs/benchmarks/ablation_table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/ablation_table.py"


rule attribution:
    input:
        unpack(adapter_input),
        drafts="results/scores/{model}/draft.parquet",
        questions=lambda wildcards: f"data/splits/{config['eval']['split']}.jsonl",
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
        "logs/attribution/{model}.log",
    benchmark:
        "logs/benchmarks/attribution_{model}.tsv"
    threads: config["resources"]["threads"]
    resources:
        mem_mb=model_resources,
        gpu=config["resources"]["gpu"],
        runtime=config["resources"]["runtime_min"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/attribution.py"


rule attribution_table:
    input:
        tables=expand("results/attribution/{model}.csv", model=ATTRIBUTED_MODELS),
    output:
        table=report("results/attribution.csv", caption="../report/attribution_table.rst", category="4. Tables"),
    log:
        "logs/attribution_table.log",
    benchmark:
        "logs/benchmarks/attribution_table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
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
        "logs/judge.log",
    benchmark:
        "logs/benchmarks/judge.tsv"
    threads: config["resources"]["threads"] if config["judge"]["backend"] == "hf" else 1
    resources:
        mem_mb=lambda wildcards, attempt: model_resources(wildcards, attempt) if config["judge"]["backend"] == "hf" else 2000,
        runtime=config["resources"]["runtime_min"],
        gpu=config["resources"]["gpu"] if config["judge"]["backend"] == "hf" else 0,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/judge.py"
