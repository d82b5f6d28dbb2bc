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
        pairs_accounting=list(pairs_accounting_files().values()),
        variant_adapters=[v.adapter for v in VARIANTS.values()],
        self_train_accounting=[f for v in VARIANTS.values() for f in self_train_accounting_files(v)],
        scores=score_files(),
        ablations=rules.ablation_table.output.table,
        attribution=rules.attribution_table.output.table,
        **({"judge_summary": rules.judge.output.summary, "judge_verdicts": rules.judge.output.verdicts} if JUDGE_ON else {}),
    output:
        report=report("results/report.md", caption="../report/report.rst", category="1. Report"),
        training_curves=report("results/figures/training_curves.png", caption="../report/training_curves.rst", category="2. Training"),
        dpo_curves=report("results/figures/dpo_curves.png", caption="../report/dpo_curves.rst", category="2. Training"),
        ablations=report("results/figures/ablations.png", caption="../report/ablations.rst", category="3. Validation"),
        attribution=report("results/figures/attribution.png", caption="../report/attribution.rst", category="3. Validation"),
    params:
        report=config["report"],
        pairs_accounting=pairs_accounting_files(),
        variants=report_variants(),
        config={key: value for key, value in config.items() if key != "resources"},
    log:
        log_path("report"),
    benchmark:
        benchmark_path("report")
    resources:
        **DATA_JOB,
    conda:
        CPU_ENV
    script:
        "../scripts/report.py"
