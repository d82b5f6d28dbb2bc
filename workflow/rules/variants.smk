# The variant grid (config `variants:`): each named recipe is one more scored model. A variant
# trains only what its overrides change (clarify.variants): its own Phase B (multi-task corpus or
# self-training rounds) from the main Phase A, and/or its own pairs and Phase C from its Phase B.
# Every job's params are the variant's own merged settings, so changing one variant reruns it alone.


use rule student_drafts as variant_drafts with:
    output:
        drafts="data/variants/{name}/student_drafts.jsonl",
    params:
        drafts=lambda wildcards: variant(wildcards).config["drafts"],
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/student_drafts"),
    benchmark:
        benchmark_path("variants/{name}/student_drafts")


use rule build_phase_b_corpus as variant_phase_b_corpus with:
    output:
        phase_b="data/variants/{name}/train_phase_b.jsonl",
    params:
        corpus=lambda wildcards: variant(wildcards).config["corpus"],
        mix_answer_only=lambda wildcards: variant(wildcards).config["phase_b"]["mix_answer_only"],
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/build_phase_b_corpus"),
    benchmark:
        benchmark_path("variants/{name}/build_phase_b_corpus")


use rule train_phase_b as variant_phase_b with:
    input:
        corpus=variant_phase_b_corpus,
        dev=rules.split_data.output.dev,
        student=rules.prepare_student.output.student,
        init_adapter=rules.train_phase_a.output.adapter,
    output:
        adapter=directory("models/variants/{name}/phase_b"),
    params:
        phase="phase_b",
        settings=lambda wildcards: phase_b_settings(variant(wildcards).config["phase_b"]),
        lora=config["lora"],
        student=config["student"],
        quantization=config["quantization"],
        eval=lambda wildcards: training_eval_settings(variant(wildcards).config["phase_b"]),
        checkpoints=lambda wildcards: f"models/checkpoints/variants/{wildcards.name}/phase_b",
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/train_phase_b"),
    benchmark:
        benchmark_path("variants/{name}/train_phase_b")


# Self-training round r: own reasonings of round r-1's model (round 0 = the main Phase B), the
# correct ones kept (phase_b.self_train_fallback for the rest), a Phase B trained on them.
use rule sample_own_pairs as variant_self_train_samples with:
    input:
        records=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=variant_self_train_input,
    output:
        samples="data/variants/{name}/self_train_round{round}_samples.jsonl",
    params:
        purpose="self_train",
        settings=lambda wildcards: variant(wildcards).config["phase_b"],
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        name=VARIANT_NAMES,
        round=r"\d+",
    log:
        log_path("variants/{name}/self_train_round{round}_samples"),
    benchmark:
        benchmark_path("variants/{name}/self_train_round{round}_samples")


use rule build_corpora as variant_self_train_corpus with:
    input:
        samples="data/variants/{name}/self_train_round{round}_samples.jsonl",
        teacher=rules.teacher_harvest.output.outputs,
    output:
        self_train="data/variants/{name}/self_train_round{round}.jsonl",
        accounting="data/variants/{name}/self_train_round{round}_accounting.json",
    params:
        corpus=lambda wildcards: variant(wildcards).config["corpus"],
        fallback=lambda wildcards: variant(wildcards).config["phase_b"]["self_train_fallback"],
    wildcard_constraints:
        name=VARIANT_NAMES,
        round=r"\d+",
    log:
        log_path("variants/{name}/self_train_round{round}_corpus"),
    benchmark:
        benchmark_path("variants/{name}/self_train_round{round}_corpus")


use rule variant_phase_b as variant_self_train_phase_b with:
    input:
        corpus="data/variants/{name}/self_train_round{round}.jsonl",
        dev=rules.split_data.output.dev,
        student=rules.prepare_student.output.student,
        init_adapter=rules.train_phase_a.output.adapter,
    output:
        adapter=directory("models/variants/{name}/phase_b_round{round}"),
    params:
        phase="phase_b",
        settings=lambda wildcards: phase_b_settings(variant(wildcards).config["phase_b"]),
        lora=config["lora"],
        student=config["student"],
        quantization=config["quantization"],
        eval=lambda wildcards: training_eval_settings(variant(wildcards).config["phase_b"]),
        checkpoints=lambda wildcards: f"models/checkpoints/variants/{wildcards.name}/phase_b_round{wildcards.round}",
    wildcard_constraints:
        name=VARIANT_NAMES,
        round=r"\d+",
    log:
        log_path("variants/{name}/train_phase_b_round{round}"),
    benchmark:
        benchmark_path("variants/{name}/train_phase_b_round{round}")


use rule sample_own_pairs as variant_own_samples with:
    input:
        records=rules.sample_train.output.sample,
        student=rules.prepare_student.output.student,
        adapter=lambda wildcards: variant(wildcards).phase_b_adapter,
    output:
        samples="data/variants/{name}/own_samples.jsonl",
    params:
        purpose="pairs",
        settings=lambda wildcards: variant(wildcards).config["pairs"],
        student=config["student"],
        quantization=config["quantization"],
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/own_samples"),
    benchmark:
        benchmark_path("variants/{name}/own_samples")


use rule build_pairs as variant_pairs with:
    input:
        unpack(variant_pair_inputs),
    output:
        pairs="data/variants/{name}/pairs.jsonl",
        accounting="data/variants/{name}/pairs_accounting.json",
    params:
        corpus=lambda wildcards: variant(wildcards).config["corpus"],
        pairs=lambda wildcards: variant(wildcards).config["pairs"],
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/build_pairs"),
    benchmark:
        benchmark_path("variants/{name}/build_pairs")


use rule train_phase_c as variant_phase_c with:
    input:
        pairs=lambda wildcards: variant(wildcards).pairs_file,
        init_adapter=lambda wildcards: variant(wildcards).phase_b_adapter,
        student=rules.prepare_student.output.student,
        dev=rules.split_data.output.dev,
    output:
        adapter=directory("models/variants/{name}/phase_c"),
    params:
        settings=lambda wildcards: phase_c_settings(section=variant(wildcards).config["phase_c"]),
        eval=lambda wildcards: training_eval_settings(variant(wildcards).config["phase_c"]),
        student=config["student"],
        quantization=config["quantization"],
        work_dir=lambda wildcards: f"models/checkpoints/variants/{wildcards.name}/phase_c",
    wildcard_constraints:
        name=VARIANT_NAMES,
    log:
        log_path("variants/{name}/train_phase_c"),
    benchmark:
        benchmark_path("variants/{name}/train_phase_c")
