# The report: every number in it is read from an artifact above.


rule report:
    input:
        meta=rules.prepare_data.output.meta,
        train=rules.split_data.output.train,
        dev=rules.split_data.output.dev,
        test=rules.split_data.output.test,
        sample=rules.sample_train.output.sample,
        drafts=rules.student_drafts.output.drafts,
        teacher=rules.teacher_harvest.output.outputs,
        accounting=rules.teacher_harvest.output.accounting,
        baseline=rules.build_corpora.output.baseline,
        cot=rules.build_corpora.output.cot,
        pairs=rules.build_pairs.output.pairs,
        phase_a=rules.train_phase_a.output.adapter,
        phase_b=rules.train_phase_b.output.adapter,
        dpo_rounds=expand("models/dpo_phaseC/round{round}", round=range(1, ROUNDS + 1)),
        loss_variants=expand("models/dpo_phaseC/compare_{loss}", loss=config["phase_c"]["compare_losses"]),
        scores=score_files(),
    output:
        report="results/report.md",
        training_curves="results/figures/training_curves.png",
        dpo_curves="results/figures/dpo_curves.png",
    params:
        report=config["report"],
        config={key: value for key, value in config.items() if key != "resources"},
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/report.py"
