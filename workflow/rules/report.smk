# The report: every number in it is read from an artifact above.


def pairs_accounting_files():
    """Each Phase C run's pairs accounting, by the label the report gives it: the main rounds, then
    every variant with pairs of its own."""
    files = {f"Phase C round {k}": "data/pairs_accounting.json" if k == 1 else f"data/pairs_accounting_round{k}.json"
             for k in range(1, ROUNDS + 1)}
    files.update({f"variant {name}": f"data/variants/{name}/pairs_accounting.json"
                  for name, v in VARIANTS.items() if v.own_pairs})
    return files


def self_train_accounting_files(v):
    return [f"data/variants/{v.name}/self_train_round{r}_accounting.json" for r in range(1, v.self_train_rounds + 1)]


def report_variants():
    """What the report's variant section needs of each variant, from clarify.variants.Variant."""
    return [{"name": name, "until": v.until, "overrides": v.overrides, "adapter": v.adapter,
             "self_train_accounting": self_train_accounting_files(v)} for name, v in VARIANTS.items()]


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
