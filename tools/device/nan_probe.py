"""Device probe (issue 8): where does Phase C's NaN come from, and does a fixed first token fix IG on Qwen?

The full Qwen2.5-1.5B run went NaN at Phase C step 5 (bf16, H100). This probe trains a short DPO
run from the base model (a fresh LoRA, so policy = reference at step 1) on the run's own pairs in
three numeric set-ups and records, per set-up, the steps clarify.numerics skipped, the margins,
the wall time and the peak memory:

    bf16        the profile's set-up (bf16 weights, bf16 autocast, SDPA attention)
    bf16_eager  the same with eager attention
    fp32        float32 weights, no autocast

It then measures integrated-gradients completeness on a few test questions with the pad
baseline as configured and with the prompt's first token kept at its real embedding (Qwen has
no BOS, so its first token is the attention sink that the pad baseline replaces).

    python tools/device/nan_probe.py --student models/student --pairs data/pairs.jsonl \
        --questions data/splits/test.jsonl --out probe.json [--steps 40] [--ig-questions 6]

Results are written to --out after every set-up, so a probe cut short still reports.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from clarify import attribution, dpo
from clarify.config import schema_defaults
from clarify.io import read_jsonl
from clarify.models import load_model, load_tokenizer, read_manifest
from clarify.numerics import NonFiniteError

REPO = Path(__file__).resolve().parents[2]
SETUPS = {
    "bf16": ({"dtype": "bfloat16"}, True, None),
    "bf16_eager": ({"dtype": "bfloat16"}, True, "eager"),
    "fp32": ({"dtype": "float32"}, False, None),
}


def fresh_adapter(manifest: dict, out: Path, seed: int = 42) -> str:
    from peft import LoraConfig, get_peft_model

    from clarify.models import resolve_lora_targets

    torch.manual_seed(seed)
    model = load_model(manifest, {"dtype": "float32"})
    if torch.cuda.is_available():
        model.to("cpu")
    targets = resolve_lora_targets(model, "all-linear")
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=targets,
                                                  task_type="CAUSAL_LM", bias="none"))
    peft_model.save_pretrained(out)
    return str(out)


def dpo_probe(manifest, pairs, init_adapter, student, bf16, attn, steps, work) -> dict:
    settings = {**schema_defaults(REPO / "workflow/schemas/config.schema.yaml")["phase_c"],
                "schedule": [{"beta": 0.05, "loss": "sigmoid"}], "learning_rate": 2e-5, "batch_size": 8,
                "gradient_checkpointing": False, "bf16": bf16}
    original = dpo.load_for_training

    def load(*args, **kwargs):
        model = original(*args, **kwargs)
        if attn:
            model.set_attn_implementation(attn)
        return model

    dpo.load_for_training = load
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    result = {"student": student, "bf16_autocast": bf16, "attention": attn or "default (sdpa)"}
    try:
        log = dpo.train_dpo(manifest=manifest, student=student, quantization={"load_in_4bit": False},
                            settings=settings, pairs=pairs[:8 * steps], init_adapter=init_adapter,
                            output_dir=work / "out", work_dir=work / "w", progress=False)
        margins = [s["margin"] for s in log["steps"]]
        result.update(status="finished", nonfinite_steps=log["nonfinite_steps"], steps=len(margins),
                      margins_first_10=margins[:10], margin_last=margins[-1],
                      losses_first_10=[s["loss"] for s in log["steps"][:10]])
    except NonFiniteError as exc:
        result.update(status="diverged", error=str(exc))
    finally:
        dpo.load_for_training = original
    result["wall_s"] = round(time.time() - started, 1)
    if torch.cuda.is_available():
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def ig_probe(manifest, questions, n, steps) -> dict:
    model = load_model(manifest, {"dtype": "float32"})
    tokenizer = load_tokenizer(manifest["path"])
    out = {}
    for name, keep_first in (("pad", False), ("pad_keep_first", True)):
        rows = []
        for record in questions[:n]:
            prompt, _ = attribution.draft_prompt(record["question"], None)
            r = attribution.integrated_gradients(model, tokenizer, prompt, steps=steps, baseline="pad",
                                                 keep_first_token=keep_first)
            change = r["margin"] - r["baseline_margin"]
            rows.append({"qid": record["qid"], "margin": r["margin"], "baseline_margin": r["baseline_margin"],
                         "error": r["completeness_error"], "relative_error": r["completeness_error"] / max(abs(change), 1e-8)})
        rel = [row["relative_error"] for row in rows]
        out[name] = {"steps": steps, "questions": rows, "relative_error_mean": float(np.mean(rel)),
                     "relative_error_median": float(np.median(rel))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--ig-questions", type=int, default=6)
    parser.add_argument("--ig-steps", type=int, default=128)
    parser.add_argument("--setups", default=",".join(SETUPS))
    args = parser.parse_args()
    manifest = read_manifest(Path(args.student) / "manifest.json")
    pairs = read_jsonl(args.pairs)
    out_path, work = Path(args.out), Path(args.out).with_suffix(".work")
    report = {"pairs": len(pairs), "dpo": {}}
    init = fresh_adapter(manifest, work / "init")
    for name in args.setups.split(","):
        student, bf16, attn = SETUPS[name]
        report["dpo"][name] = dpo_probe(manifest, pairs, init, student, bf16, attn, args.steps, work / name)
        print(name, json.dumps(report["dpo"][name]), flush=True)
        out_path.write_text(json.dumps(report, indent=2))
    if args.ig_questions:
        report["ig"] = ig_probe(manifest, read_jsonl(args.questions), args.ig_questions, args.ig_steps)
        print("ig", json.dumps({k: (v["relative_error_mean"], v["relative_error_median"]) for k, v in report["ig"].items()}))
        out_path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
