"""The report's figures (PNG, matplotlib's Agg backend): training, Phase C, ablations, attribution."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..attribution import SHARE_COLUMNS
from .format import device, display_name
from .validation import CONDITION_NAMES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_figure(logs: dict[str, dict], out_path: str | Path) -> None:
    """Training loss per step and dev accuracy per epoch, one column per phase."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, max(1, len(logs)), figsize=(5 * max(1, len(logs)), 6), squeeze=False)
    for column, (name, log) in enumerate(logs.items()):
        losses = log["loss_history"]
        axes[0][column].plot([h["step"] for h in losses], [h["loss"] for h in losses])
        axes[0][column].set(title=f"{display_name(name)}: training loss ({device(log)})", xlabel="step", ylabel="loss")
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


def dpo_figure(logs: list[dict], out_path: str | Path) -> None:
    """Reward margin and implicit-reward accuracy per step, one line per round."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for number, log in enumerate(logs, start=1):
        steps = [s["step"] for s in log["steps"]]
        label = f"round {number} ({device(log)})"
        axes[0].plot(steps, [s["margin"] for s in log["steps"]], label=label)
        axes[1].plot(steps, [s["implicit_accuracy"] for s in log["steps"]], label=label)
    axes[0].set(title="reward margin (beta x log-ratio, chosen - rejected)", xlabel="step")
    axes[1].set(title="implicit reward accuracy", xlabel="step", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def ablation_figure(table: pd.DataFrame, out_path: str | Path) -> None:
    plt = _pyplot()
    models = list(dict.fromkeys(table["model"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models)), 4))
    width = 0.8 / 3
    for k, condition in enumerate(CONDITION_NAMES):
        rows = table[table["condition"] == condition].set_index("model").loc[models]
        x = [i + (k - 1) * width for i in range(len(models))]
        acc = 100 * rows["accuracy"]
        err = [acc - 100 * rows["ci_low"], 100 * rows["ci_high"] - acc]
        ax.bar(x, acc, width, yerr=err, capsize=3, label=CONDITION_NAMES[condition])
    ax.set_xticks(range(len(models)), models)
    ax.set(ylabel="accuracy (%)", title="draft ablations (Wilson 95% intervals)", ylim=(0, 100))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


#: Legend labels of the attribution shares (clarify.attribution.SHARE_COLUMNS), bottom to top.
SHARE_LABELS = {"guess_share": "draft: guess", "subquestions_share": "draft: sub-questions",
                "draft_unsplit_share": "draft: unsplit", "question_share": "question", "template_share": "template"}


def attribution_figure(summary: pd.DataFrame, out_path: str | Path) -> None:
    """Stacked shares of |attribution| per model (over its converged questions), one bar per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(summary)), 4))
    models = [display_name(m) for m in summary["model"]]
    bottom = [0.0] * len(summary)
    for column in SHARE_COLUMNS:
        values = [0.0 if pd.isna(v) else 100 * v for v in summary[column]]
        ax.bar(models, values, bottom=bottom, label=SHARE_LABELS[column])
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(ylabel="share of |attribution| (%)", ylim=(0, 100),
           title="integrated gradients of the answer margin (converged questions)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)
