"""The training section: Phase A/B, each with its kept (best dev) epoch."""

from __future__ import annotations

from .format import device, display_name, markdown_table, pct, peak_memory, skipped_steps


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
            ", ".join(log["lora_targets"]), f"{device(log)}{', 4-bit' if log['load_in_4bit'] else ''}"
            f"{', bf16' if log['bf16'] else ''}", skipped_steps(log), f"{log['wall_time_s']:.0f} s", peak_memory(log),
        ])
    lines = [
        "## Training",
        "",
        "Each phase keeps its best epoch by dev accuracy (early stopping on dev; the test split is never used).",
        "",
        markdown_table(["phase", "examples", "epochs run", "kept epoch", "dev accuracy [95% CI]",
                        "trainable / total parameters", "LoRA targets", "device", "steps skipped (NaN/inf)",
                        "wall time", "peak GPU memory"], rows),
    ]
    if figure:
        lines += ["", f"![training curves]({figure})"]
    return "\n".join(lines)
