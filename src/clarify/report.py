"""``results/report.md``: rendered only from artifacts the DAG produced.

Each section reads its numbers from files (splits, drafts, teacher outputs, corpora,
training logs, score parquets) so every figure in the report traces back to one artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from .data import class_mix
from .drafts import draft_summary
from .io import read_jsonl
from .report_format import format_accuracy, format_p, markdown_table, pct  # noqa: F401 (re-exported)
from .report_validation import (ablation_figure, ablation_section, attribution_figure, attribution_section,
                                attribution_summary, executive_section, judge_section, load_judge,
                                walltime_section)
from .stats import accuracy, mcnemar

#: Display names of the scored models, and the paired comparisons the report makes.
MODEL_NAMES = {"base": "base", "phaseA": "Phase A (answer-only SFT)", "phaseB": "Phase B (CoT distillation)",
               "phaseC": "Phase C (DPO)"}
COMPARISONS = [("phaseA", "base"), ("phaseB", "phaseA"), ("phaseB", "base"), ("phaseC", "phaseA"),
               ("phaseC", "phaseB")]


def display_name(model: str) -> str:
    if model.startswith("phaseC_round"):
        return f"Phase C round {model.removeprefix('phaseC_round')}"
    if model.startswith("phaseC_"):
        return f"Phase C, {model.removeprefix('phaseC_')} only"
    return MODEL_NAMES.get(model, model)


def mix_row(name: str, rows: list[dict], label: str = "answer") -> list:
    mix = class_mix([{"answer": r[label]} for r in rows])
    return [name, mix["n"], mix["yes"], mix["no"], pct(mix["yes_frac"])]


# --- data and harvest ------------------------------------------------------------------------

def data_section(source_meta: str | Path, splits: dict[str, str | Path], sample: str | Path) -> str:
    meta = json.loads(Path(source_meta).read_text())
    rows = [mix_row(name, read_jsonl(path)) for name, path in [*splits.items(), ("train sample", sample)]]
    checksum = f", sha256 `{meta['sha256']}`" if meta.get("sha256") else ""
    return "\n".join([
        "## Data",
        "",
        f"Source: `{meta['source']}` (format {meta['format']}{checksum}): {meta['rows']} labelled questions, "
        f"{meta['yes']} yes / {meta['no']} no, {meta['with_decomposition']} with human decompositions.",
        "",
        markdown_table(["split", "questions", "yes", "no", "yes share"], rows),
    ])


def harvest_section(drafts: str | Path, teacher: str | Path, accounting: str | Path,
                    corpora: dict[str, str | Path]) -> str:
    d = draft_summary(read_jsonl(drafts))
    teacher_rows = read_jsonl(teacher)
    table = pd.read_csv(accounting)
    samples = sum(len(r["samples"]) for r in teacher_rows)
    prompt_tokens = sum(s["prompt_tokens"] for r in teacher_rows for s in r["samples"])
    completion_tokens = sum(s["completion_tokens"] for r in teacher_rows for s in r["samples"])
    cost = sum(s["cost_usd"] for r in teacher_rows for s in r["samples"])
    backend = f"{teacher_rows[0]['backend']} / {teacher_rows[0]['model']}" if teacher_rows else "none"
    status_columns = [c for c in ["total", "agreed", "rationalized", "kept_gold", "dropped", "invalid_vote"]
                      if c in table.columns]
    drop_columns = [c for c in table.columns if c.startswith("drop_") and table[c].sum() > 0]
    accounting_rows = [[row["label"], *[int(row[c]) for c in status_columns + drop_columns]]
                       for _, row in table.iterrows()]
    corpus_rows = []
    for name, path in corpora.items():
        rows = read_jsonl(path)
        label = "gold" if name == "pairs" else "answer"
        corpus_rows.append(mix_row(name, rows, label))
    pairs = read_jsonl(corpora["pairs"]) if "pairs" in corpora else []
    rejected = pd.Series([p["rejected_from"] for p in pairs]).value_counts().to_dict() if pairs else {}
    return "\n".join([
        "## Harvest: drafts, teacher, corpora",
        "",
        f"Student drafts: {d['n']} questions, {d['parse_ok']} parsed in the draft format; guesses "
        f"{d['guess_yes']} yes / {d['guess_no']} no, {d['guess_correct']} correct; {d['hit_limit']} hit the "
        f"length limit; {d['mean_tokens']:.1f} generated tokens on average.",
        "",
        f"Teacher `{backend}`: {samples} responses, {prompt_tokens} prompt + {completion_tokens} completion "
        f"tokens, ${cost:.4f} (what the responses cost when they were made; a rerun served from the cache pays "
        "nothing, see logs/teacher_harvest.log).",
        "Every sampled question is accounted for (no silent filtering):",
        "",
        markdown_table(["gold label", *status_columns, *drop_columns], accounting_rows),
        "",
        "Corpora, label-balanced by construction:",
        "",
        markdown_table(["corpus", "examples", "yes", "no", "yes share"], corpus_rows),
        "",
        "Preference pairs by origin of the rejected side: "
        + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "none") + ".",
    ])


# --- training ----------------------------------------------------------------------------------

def load_training_logs(adapters: dict[str, str | Path]) -> dict[str, dict]:
    return {name: json.loads((Path(path) / "training_log.json").read_text()) for name, path in adapters.items()}


def training_figure(logs: dict[str, dict], out_path: str | Path) -> None:
    """Training loss per step and dev accuracy per epoch, one column per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, max(1, len(logs)), figsize=(5 * max(1, len(logs)), 6), squeeze=False)
    for column, (name, log) in enumerate(logs.items()):
        losses = log["loss_history"]
        axes[0][column].plot([h["step"] for h in losses], [h["loss"] for h in losses])
        axes[0][column].set(title=f"{display_name(name)}: training loss", xlabel="step", ylabel="loss")
        dev = log["dev_history"]
        epochs = [h["epoch"] for h in dev]
        acc = [100 * h["dev_accuracy"] for h in dev]
        low = [100 * h["dev_ci"][0] for h in dev]
        high = [100 * h["dev_ci"][1] for h in dev]
        axes[1][column].errorbar(epochs, acc, yerr=[[a - lo for a, lo in zip(acc, low)],
                                                    [hi - a for a, hi in zip(acc, high)]], marker="o", capsize=3)
        axes[1][column].axvline(log["best_epoch"], color="grey", linestyle=":", label="kept")
        axes[1][column].set(title=f"dev accuracy ({log['dev_mode']} mode)", xlabel="epoch", ylabel="%")
        axes[1][column].legend()
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def skipped_steps(log: dict) -> str:
    """Optimizer steps skipped for non-finite gradients (clarify.numerics), with their numbers."""
    steps = log.get("nonfinite_steps", [])
    if not steps:
        return "0"
    shown = ", ".join(str(s) for s in steps[:5]) + (", ..." if len(steps) > 5 else "")
    return f"{len(steps)} (step {shown})"


def training_section(logs: dict[str, dict], figure: str | None) -> str:
    rows = []
    for name, log in logs.items():
        best = next(h for h in log["dev_history"] if h["epoch"] == log["best_epoch"])
        params = log["parameters"]
        rows.append([
            display_name(name), log["train_examples"], f"{log['epochs_run']} ({log['steps']} steps)",
            log["best_epoch"],
            f"{pct(best['dev_accuracy'])} [{100 * best['dev_ci'][0]:.1f}, {100 * best['dev_ci'][1]:.1f}] ({log['dev_mode']})",
            f"{params['trainable']:,} / {params['total']:,} ({100 * params['trainable'] / params['total']:.2f}%)",
            ", ".join(log["lora_targets"]), f"{log['device']}{', 4-bit' if log['load_in_4bit'] else ''}"
            f"{', bf16' if log['bf16'] else ''}", skipped_steps(log), f"{log['wall_time_s']:.0f} s",
        ])
    lines = [
        "## Training",
        "",
        "Each phase keeps its best epoch by dev accuracy (early stopping on dev; the test split is never used).",
        "",
        markdown_table(["phase", "examples", "epochs run", "kept epoch", "dev accuracy [95% CI]",
                        "trainable / total parameters", "LoRA targets", "device", "steps skipped (NaN/inf)",
                        "wall time"], rows),
    ]
    if figure:
        lines += ["", f"![training curves]({figure})"]
    return "\n".join(lines)


# --- evaluation --------------------------------------------------------------------------------

def load_scores(score_files: list[str | Path]) -> dict[tuple[str, str], pd.DataFrame]:
    frames = {}
    for path in score_files:
        frame = pd.read_parquet(path)
        model = frame.attrs.get("model", Path(path).parts[-2])
        mode = frame.attrs.get("mode", Path(path).stem)
        frames[(model, mode)] = frame
    return frames


def evaluation_section(score_files: list[str | Path]) -> str:
    frames = load_scores(score_files)
    rows, token_notes = [], set()
    for (model, mode), frame in frames.items():
        acc = accuracy(frame["correct"])
        generated = "-"
        if "gen_tokens" in frame:
            generated = f"{frame['gen_tokens'].mean():.1f} tokens, {int(frame['hit_limit'].sum())} at limit"
        rows.append([display_name(model), mode, acc.n, format_accuracy(acc),
                     pct(frame["pred"].mean()), pct(frame["gold"].mean()), generated])
        ids = frame.attrs.get("answer_token_ids")
        if ids:
            token_notes.add(f"Yes={ids['yes']}, No={ids['no']}")
    split = next(iter(frames.values())).attrs.get("split", "?") if frames else "?"
    lines = [
        "## Evaluation",
        "",
        f"Answer-slot scoring on the {split} split: the prediction is whichever of log P(\" Yes\") and "
        "log P(\" No\") is larger at the answer position; intervals are Wilson 95%. "
        "\"predicted yes\" shows the class balance of the predictions beside the gold share: a model "
        "that answers one class to everything shows 0% or 100% there.",
        "",
        markdown_table(["model", "mode", "n", "accuracy [95% CI]", "predicted yes", "gold yes", "generated"], rows),
    ]
    if token_notes:
        lines += ["", "Answer token ids: " + "; ".join(sorted(token_notes)) + "."]
    comparisons = []
    modes = sorted({mode for _, mode in frames}, key=["direct", "draft", "cot"].index)
    for a, b in COMPARISONS:
        for mode in modes:
            if (a, mode) not in frames or (b, mode) not in frames:
                continue
            fa, fb = frames[(a, mode)], frames[(b, mode)]
            if list(fa["qid"]) != list(fb["qid"]):
                raise ValueError(f"{a}/{mode} and {b}/{mode} were scored on different questions")
            test = mcnemar(fa["correct"], fb["correct"])
            diff = fa["correct"].mean() - fb["correct"].mean()
            comparisons.append([f"{display_name(a)} vs {display_name(b)}", mode,
                                f"{100 * diff:+.1f} pp", test["a_only"], test["b_only"], format_p(test["p_value"])])
    if comparisons:
        lines += ["", "Paired comparisons on the same questions (exact McNemar test; "
                  "\"only first right\" counts questions the first model gets right and the second wrong):", "",
                  markdown_table(["comparison", "mode", "difference", "only first right", "only second right",
                                  "p-value"], comparisons)]
    return "\n".join(lines)


def load_dpo_logs(rounds: list[str | Path]) -> list[dict]:
    return [json.loads((Path(path) / "dpo_log.json").read_text()) for path in rounds]


def dpo_figure(logs: list[dict], out_path: str | Path) -> None:
    """Reward margin and implicit-reward accuracy per step, one line per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for number, log in enumerate(logs, start=1):
        steps = [s["step"] for s in log["steps"]]
        axes[0].plot(steps, [s["margin"] for s in log["steps"]], label=f"round {number}")
        axes[1].plot(steps, [s["implicit_accuracy"] for s in log["steps"]], label=f"round {number}")
    axes[0].set(title="reward margin (beta x log-ratio, chosen - rejected)", xlabel="step")
    axes[1].set(title="implicit reward accuracy", xlabel="step", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def dpo_section(logs: list[dict], figure: str | None) -> str:
    rows = []
    for number, log in enumerate(logs, start=1):
        steps = log["steps"]
        epochs = {}
        for step in steps:
            epochs.setdefault(int(-(-step["epoch"] // 1)), []).append(step)
        schedule = ", ".join(f"{e['loss']} b={e['beta']}" for e in log["schedule"])
        first, last = steps[0], steps[-1]
        dropped = sum(s["dropped_pairs"] or 0 for s in steps)
        rows.append([number, log["pairs"], schedule, log["micro_batch_pairs"], len(steps),
                     f"{first['margin']:.4f} -> {last['margin']:.4f}",
                     f"{first['implicit_accuracy']:.2f} -> {last['implicit_accuracy']:.2f}",
                     int(dropped), skipped_steps(log), f"{log['wall_time_s']:.0f} s"])
    lines = [
        "## Phase C: preference optimisation",
        "",
        "Reference model: the Phase B policy (a frozen copy of its adapter); each round continues the last. "
        "Margins and accuracies are those of the first and last logged steps.",
        "",
        markdown_table(["round", "pairs", "schedule (per epoch)", "pairs per micro-batch", "steps", "reward margin",
                        "implicit accuracy", "pair-steps dropped (Dr)", "steps skipped (NaN/inf)", "wall time"], rows),
    ]
    if figure:
        lines += ["", f"![DPO curves]({figure})"]
    return "\n".join(lines)


def loss_comparison_section(variants: list[str | Path], score_files: list[str | Path]) -> str:
    """One row per loss form trained from Phase B (``phase_c.compare_losses``)."""
    frames = load_scores(score_files)
    modes = sorted({mode for _, mode in frames}, key=["direct", "draft", "cot"].index)
    rows = []
    for path in variants:
        log = json.loads((Path(path) / "dpo_log.json").read_text())
        loss = Path(path).name.removeprefix("compare_")
        steps = log["steps"]
        row = [loss, ", ".join(str(e["beta"]) for e in log["schedule"]),
               f"{steps[0]['margin']:.4f} -> {steps[-1]['margin']:.4f}",
               f"{steps[-1]['implicit_accuracy']:.2f}", int(sum(s["dropped_pairs"] or 0 for s in steps))]
        for mode in modes:
            frame = frames.get((f"phaseC_{loss}", mode))
            row.append(format_accuracy(accuracy(frame["correct"])) if frame is not None else "-")
        row.append(f"{log['wall_time_s']:.0f} s")
        rows.append(row)
    return "\n".join([
        "### Loss forms compared",
        "",
        "Each row trains one round from Phase B on the same pairs with the schedule's betas and that loss in "
        "every epoch; accuracies on the eval split with Wilson 95% intervals.",
        "",
        markdown_table(["loss", "betas", "reward margin", "final implicit accuracy", "pair-steps dropped",
                        *[f"accuracy ({m})" for m in modes], "wall time"], rows),
    ])


def config_section(config: dict) -> str:
    return "\n".join(["## Configuration", "", "The settings that produced these results:", "",
                      "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```"])


def build_report(*, title: str, source_meta, splits, sample, drafts, teacher, accounting, corpora: dict,
                 adapters: dict, dpo_rounds: list, score_files: list, config: dict, figures: dict,
                 figure_links: dict, loss_variants: list | None = None, ablations=None, attribution=None,
                 judge_summary=None, judge_verdicts=None, benchmark_dir=None) -> str:
    """Render the whole report; writes the figures to the paths in ``figures``.

    ``config`` is the run's config (the report's own section gives the primary modes and the
    targets of the executive table; attribution's its settings).
    """
    logs = load_training_logs(adapters)
    training_figure(logs, figures["training_curves"])
    dpo_logs = load_dpo_logs(dpo_rounds)
    dpo_figure(dpo_logs, figures["dpo_curves"])
    ablation_frame = pd.read_csv(ablations) if ablations else None
    if ablation_frame is not None:
        ablation_figure(ablation_frame, figures["ablations"])
    attribution_frame = None
    if attribution:
        attribution_frame = attribution_summary(pd.read_csv(attribution), seed=config["attribution"]["seed"])
        attribution_figure(attribution_frame, figures["attribution"])
    judge, verdicts = load_judge(judge_summary, judge_verdicts)
    report_settings = config["report"]
    sections = [
        f"# {title}",
        executive_section(load_scores(score_files), ablation_frame, attribution_frame, judge,
                          report_settings["primary_modes"], report_settings["targets"]),
        data_section(source_meta, splits, sample),
        harvest_section(drafts, teacher, accounting, corpora),
        training_section(logs, figure_links["training_curves"]),
        dpo_section(dpo_logs, figure_links["dpo_curves"]),
        *([loss_comparison_section(loss_variants, score_files)] if loss_variants else []),
        evaluation_section(score_files),
        *([ablation_section(ablation_frame, figure_links.get("ablations"), display_name)]
          if ablation_frame is not None else []),
        *([attribution_section(attribution_frame, config["attribution"], figure_links.get("attribution"),
                               display_name)] if attribution_frame is not None else []),
        judge_section(judge, verdicts, display_name),
        *([walltime_section(benchmark_dir)] if benchmark_dir else []),
        config_section(config),
    ]
    return "\n\n".join(sections) + "\n"
