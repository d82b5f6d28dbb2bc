# Data stage: normalised labelled set -> seeded stratified splits -> balanced train sample.


rule prepare_data:
    input:
        source=local_data_source,
    output:
        raw="data/raw/strategyqa.jsonl",
        meta="data/raw/source.json",
    params:
        data=pick("data", "source", "format", "hf_split"),
    log:
        log_path("prepare_data"),
    benchmark:
        benchmark_path("prepare_data")
    resources:
        **DATA_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/prepare_data.py"


rule split_data:
    input:
        raw=rules.prepare_data.output.raw,
    output:
        train="data/splits/train.jsonl",
        dev="data/splits/dev.jsonl",
        test="data/splits/test.jsonl",
    params:
        split=pick("data", "test_fraction", "dev_fraction", "split_seed", "max_questions"),
    log:
        log_path("split_data"),
    benchmark:
        benchmark_path("split_data")
    resources:
        **DATA_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/split_data.py"


rule sample_train:
    input:
        train=rules.split_data.output.train,
    output:
        sample="data/sample_train.jsonl",
    params:
        sample=pick("data", "train_samples", "sample_seed"),
    log:
        log_path("sample_train"),
    benchmark:
        benchmark_path("sample_train")
    resources:
        **LIGHT_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/sample_train.py"
