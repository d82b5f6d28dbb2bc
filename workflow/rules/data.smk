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
        "logs/prepare_data.log",
    benchmark:
        "logs/benchmarks/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
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
        "logs/split_data.log",
    benchmark:
        "logs/benchmarks/split_data.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
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
        "logs/sample_train.log",
    benchmark:
        "logs/benchmarks/sample_train.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/sample_train.py"
