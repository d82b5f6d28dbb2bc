"""Generation throughput of the generating eval modes (draft, cot, cot_sc) on one machine.

    PYTHONPATH=src python benchmarks/generation_benchmark.py MODEL [--questions 64] \
        [--modes draft cot cot_sc] [--batch-size 16] [--max-new-tokens 48] [--sc-samples 8]

MODEL is a prepared student folder (with manifest.json, as ``models/student``), a transformers
folder, a ``.gguf`` file or a ``pypi:`` spec. Each mode runs exactly as the score rule runs it
(clarify.evaluation.evaluate: generation, then answer-slot scoring) on the first N questions of
--data. Prints one JSON object: per mode the wall time, questions/s, generated tokens/s (tokens
kept up to each sequence's stop), generations at the length limit and peak memory, plus the
device and package versions. Run it with another checkout's ``src`` on PYTHONPATH to measure
that code ("before"); code without the cot_sc mode gets the naive equivalent (prompts repeated k
times, batch-seeded sampling, then scoring), which is what cot_sc replaced.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from clarify import evaluation
from clarify.data import load_records
from clarify.models import load_model, load_tokenizer, prepare_student, read_manifest

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategyqa" / "strategyqa_train.json"


def load(spec: str, dtype: str):
    path = Path(spec)
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path / "manifest.json")
    elif path.is_dir():
        manifest = {"path": str(path)}
    else:
        out = Path(tempfile.mkdtemp(prefix="genbench-"))
        manifest = prepare_student(spec, out / "hf", out / "manifest.json")
    return load_model(manifest, {"dtype": dtype}), load_tokenizer(manifest["path"])


def legacy_cot_sc(model, tokenizer, records, settings, progress):
    """cot_sc for code that predates it: k copies of each prompt through generate(do_sample)."""
    from clarify.generation import generate
    from clarify.prompts import reasoning_from_generation, reasoning_prompt
    from clarify.scoring import score_questions

    k = settings["sc_samples"]
    prompts = [reasoning_prompt(r["question"]) for r in records for _ in range(k)]
    outputs = generate(model, tokenizer, prompts, settings["cot_max_new_tokens"], batch_size=settings["batch_size"],
                       do_sample=True, temperature=settings["sc_temperature"], seed=settings["sc_seed"],
                       stop=evaluation.COT_STOP, progress=progress, desc="reasoning")
    flat = [r for r in records for _ in range(k)]
    scored = score_questions(model, tokenizer, flat, [reasoning_from_generation(o["text"]) for o in outputs],
                             batch_size=settings["batch_size"], progress=progress)
    votes = (scored["margin"].to_numpy().reshape(len(records), k) > 0).sum(1)
    frame = scored.iloc[::k].reset_index(drop=True)
    frame["pred"] = 2 * votes > k
    frame["gen_tokens"] = np.array([o["n_tokens"] for o in outputs]).reshape(len(records), k).mean(1)
    frame["hit_limit"] = np.array([o["hit_limit"] for o in outputs]).reshape(len(records), k).sum(1)
    frame["sc_samples"] = k
    return frame


def run_mode(model, tokenizer, records, mode, settings, progress):
    if mode == "cot_sc" and "cot_sc" not in getattr(evaluation, "MODES", ()):
        return legacy_cot_sc(model, tokenizer, records, settings, progress)
    return evaluation.evaluate(model, tokenizer, records, mode, settings, progress=progress)


def peak_memory_gib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, process peak RSS


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["draft", "cot", "cot_sc"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="cot and cot_sc reasoning length limit")
    parser.add_argument("--draft-tokens", type=int, default=40)
    parser.add_argument("--sc-samples", type=int, default=8)
    parser.add_argument("--sc-temperature", type=float, default=0.7)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default=None, help="generation_config.cache_implementation, e.g. static")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the fastest is reported")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    records = load_records(args.data)[:args.questions]
    model, tokenizer = load(args.model, args.dtype)
    if args.cache:
        model.generation_config.cache_implementation = args.cache
    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    settings = {"batch_size": args.batch_size, "cot_max_new_tokens": args.max_new_tokens,
                "sc_samples": args.sc_samples, "sc_temperature": args.sc_temperature, "sc_seed": 0,
                "drafts": {"max_new_tokens": args.draft_tokens, "batch_size": args.batch_size, "do_sample": False,
                           "temperature": 0.7, "seed": 42}}
    result = {
        "model": args.model, "questions": len(records), "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "cache_implementation": args.cache, "code": str(Path(evaluation.__file__).resolve().parents[2]), "modes": {},
    }
    for mode in args.modes:
        best = None
        for _ in range(args.repeat):
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            frame = run_mode(model, tokenizer, records, mode, settings, args.progress)
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            if best is None or wall < best[0]:
                best = (wall, frame)
        wall, frame = best
        samples = int(frame["sc_samples"].iloc[0]) if "sc_samples" in frame else 1
        tokens = float(frame["gen_tokens"].sum()) * samples
        result["modes"][mode] = {
            "wall_s": round(wall, 2), "questions_per_s": round(len(records) / wall, 3),
            "generated_tokens": int(tokens), "tokens_per_s": round(tokens / wall, 1),
            "generations": len(records) * samples, "at_length_limit": int(frame["hit_limit"].sum()),
            "accuracy": round(float(frame["correct"].mean()), 4), "peak_memory_gib": round(peak_memory_gib(device), 3),
        }
        print(f"{mode}: {result['modes'][mode]}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
