"""Training and evaluation throughput: our defaults against the seed's settings, one run.

Training: one Phase A and one Phase B epoch with TRL's SFTTrainer through the project's own
code path (`clarify.training`), with our defaults (batch padded to its longest member, grouped
by length, phase_a/phase_b batch settings) and with the seed's settings (batch 2, gradient
accumulation 16, every sequence padded to 2048). Same model, same corpora, same run.

Evaluation: answer-slot scoring (`clarify.scoring`) against generate-then-parse (the seed's
way: max_new_tokens 35, then look for yes/no in the text) and, when `lm_eval` is installed,
lm-evaluation-harness's HF backend on a local multiple-choice task with the same prompt.

On a GPU the model is a randomly initialised Phi-3.5-mini architecture (weights do not change
speed or memory), loaded in 4-bit NF4 for training like the pipeline's defaults. On a CPU
(`--tiny`) a tiny Llama proves the script runs. Results go to a JSON file.

    python benchmarks/train_eval_benchmark.py --corpus-a data/train_baseline.jsonl \\
        --corpus-b data/train_cot.jsonl --questions data/splits/test.jsonl --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from clarify.config import schema_defaults  # noqa: E402
from clarify.generation import generate  # noqa: E402
from clarify.io import read_jsonl  # noqa: E402
from clarify.models import load_model, load_tokenizer  # noqa: E402
from clarify.prompts import answer_prompt  # noqa: E402
from clarify.scoring import score_questions  # noqa: E402
from clarify.training import _sft_trainer_class, build_peft_model, sft_config, to_dataset  # noqa: E402

PHI35 = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
SEED_TRAINING = {"batch_size": 2, "grad_accum": 16, "pad_to": 2048}


def log(*args):
    print(*args, flush=True)


def build_tokenizer(out: Path, questions: list[dict], vocab_size: int) -> Path:
    """A BPE tokenizer trained on the StrategyQA text (the real Phi tokenizer is not reachable offline)."""
    import tiny_model

    texts = [f"Question: {r['question']}\nAnswer: {'Yes' if r['answer'] else 'No'}" for r in questions]
    texts += tiny_model.training_text()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>").save_pretrained(out)
    return out


def build_model(out: Path, tokenizer_dir: Path, tiny: bool) -> Path:
    """A randomly initialised model of the real architecture, saved like any checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    tokenizer = load_tokenizer(str(tokenizer_dir))
    torch.manual_seed(0)
    if tiny:
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
        model = LlamaForCausalLM(config)
    else:
        config = Phi3Config(**PHI35, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
        with torch.device("cuda"):
            model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    gc.collect()
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def reset_peak():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_epoch(manifest, cfg, phase: str, rows: list[dict], emulate_seed: bool, workdir: Path,
                checkpointing: bool | None = None, batch: tuple[int, int] | None = None) -> dict:
    """One epoch of one phase; examples/s, real (non-pad) tokens/s and peak GPU memory.

    ``batch`` = (per-device batch, accumulation) replaces the phase's defaults (same effective batch).
    """
    cuda = torch.cuda.is_available()
    checkpointing = cuda if checkpointing is None else checkpointing
    settings = dict(cfg[phase], epochs=1)
    if batch:
        settings.update(batch_size=batch[0], grad_accum=batch[1])
    overrides = {"save_strategy": "no", "logging_steps": 10, "disable_tqdm": True}
    if emulate_seed:
        settings.update(batch_size=SEED_TRAINING["batch_size"], grad_accum=SEED_TRAINING["grad_accum"],
                        max_length=SEED_TRAINING["pad_to"])
        overrides.update(pad_to_multiple_of=SEED_TRAINING["pad_to"], train_sampling_strategy="random")
    reset_peak()
    model, targets = build_peft_model(manifest, cfg["student"], cfg["quantization"], cfg["lora"], None,
                                      gradient_checkpointing=checkpointing)
    tokenizer = load_tokenizer(manifest["path"])
    dataset = to_dataset(rows, tokenizer, settings["max_length"])
    steps = -(-len(dataset) // (settings["batch_size"] * settings["grad_accum"]))
    bf16 = cuda and torch.cuda.is_bf16_supported()
    args = sft_config(settings, workdir / f"{phase}-{'seed' if emulate_seed else 'ours'}", steps, bf16=bf16,
                      cuda=cuda, progress=False, **overrides)
    trainer = _sft_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    real_tokens = int(sum(len(ids) for ids in dataset["input_ids"]))
    padded_tokens = (len(dataset) * SEED_TRAINING["pad_to"]) if emulate_seed else None
    result = {
        "phase": phase, "settings": "seed" if emulate_seed else "ours", "examples": len(dataset),
        "batch_size": settings["batch_size"], "grad_accum": settings["grad_accum"],
        "padding": f"to {SEED_TRAINING['pad_to']}" if emulate_seed else "longest in batch, grouped by length",
        "gradient_checkpointing": checkpointing,
        "mean_tokens": real_tokens / len(dataset), "seconds": seconds,
        "examples_per_s": len(dataset) / seconds, "tokens_per_s": real_tokens / seconds,
        "processed_tokens_per_s": (padded_tokens or real_tokens) / seconds,
        "peak_gib": peak_gib(), "lora_targets": targets,
    }
    del trainer, model
    gc.collect()
    return result


YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def eval_speed(manifest, cfg, questions: list[dict], batch_size: int) -> list[dict]:
    """Questions/s of answer-slot scoring vs generate-then-parse on the same model and questions."""
    tokenizer = load_tokenizer(manifest["path"])
    model = load_model(manifest, cfg["student"], {"load_in_4bit": False})
    results = []
    reset_peak()
    start = time.perf_counter()
    frame = score_questions(model, tokenizer, questions, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    results.append({"method": "answer-slot scoring (ours)", "questions": len(questions), "batch_size": batch_size,
                    "seconds": seconds, "questions_per_s": len(questions) / seconds, "peak_gib": peak_gib(),
                    "pred_yes": [bool(p) for p in frame["pred"]]})
    reset_peak()
    start = time.perf_counter()
    outputs = generate(model, tokenizer, [answer_prompt(r["question"]) for r in questions], max_new_tokens=35,
                       batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    parsed = [YES_NO.search(o["text"]) for o in outputs]
    results.append({"method": "generate 35 tokens then parse (seed)", "questions": len(questions),
                    "batch_size": batch_size, "seconds": seconds, "questions_per_s": len(questions) / seconds,
                    "peak_gib": peak_gib(), "unparsed": sum(p is None for p in parsed)})
    del model
    gc.collect()
    return results


def lm_eval_speed(manifest, cfg, questions: list[dict], batch_size: int, workdir: Path) -> dict | None:
    """lm-evaluation-harness (HF backend, Python API) on a local multiple-choice task with our prompt.

    The model is loaded before the clock starts, as for our scorer; lm-eval then scores both
    continuations (" No", " Yes") of every question by log-likelihood.
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        return None
    task_dir = workdir / "lm_eval_task"
    task_dir.mkdir(parents=True, exist_ok=True)
    data = task_dir / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": " ".join(r["question"].split()), "label": int(r["answer"])}) + "\n"
                            for r in questions))
    (task_dir / "strategyqa_slot.yaml").write_text(
        "task: strategyqa_slot\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\n"
        "doc_to_choice: [\"No\", \"Yes\"]\n"
        "doc_to_target: label\n"
        "target_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n")
    tokenizer = load_tokenizer(manifest["path"])
    model = load_model(manifest, cfg["student"], {"load_in_4bit": False})
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    reset_peak()
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["strategyqa_slot"], task_manager=TaskManager(include_path=str(task_dir)),
                                  log_samples=True)
    seconds = time.perf_counter() - start
    samples = sorted(out["samples"]["strategyqa_slot"], key=lambda r: r["doc_id"])
    preds = [float(r["filtered_resps"][1][0]) > float(r["filtered_resps"][0][0]) for r in samples]
    return {"method": "lm-evaluation-harness HF backend", "questions": len(questions), "batch_size": batch_size,
            "seconds": seconds, "questions_per_s": len(questions) / seconds, "peak_gib": peak_gib(),
            "pred_yes": preds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-a", required=True, help="Track A corpus (data/train_baseline.jsonl)")
    parser.add_argument("--corpus-b", required=True, help="Track B corpus (data/train_cot.jsonl)")
    parser.add_argument("--questions", required=True, help="questions to score (data/splits/test.jsonl)")
    parser.add_argument("--max-questions", type=int, default=687)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--tiny", action="store_true", help="tiny Llama on CPU: check the script, measure nothing")
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "eval", "lm_eval"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    cfg = schema_defaults(ROOT / "workflow/schemas/config.schema.yaml")
    cfg["quantization"]["load_in_4bit"] = cuda
    cfg["student"]["dtype"] = "bfloat16" if cuda else "float32"
    questions = sorted(read_jsonl(args.questions), key=lambda r: r["qid"])[: args.max_questions]
    corpora = {"phase_a": read_jsonl(args.corpus_a), "phase_b": read_jsonl(args.corpus_b)}
    report = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "model": "tiny Llama" if args.tiny else "Phi-3.5-mini architecture, random init",
              "training_quantization": "4-bit NF4 + bf16 + gradient checkpointing" if cuda else "fp32 LoRA",
              "training": [], "eval": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer_dir = build_tokenizer(work / "tokenizer", questions, 1024 if args.tiny else args.vocab_size)
        model_dir = build_model(work / "model", tokenizer_dir, args.tiny)
        manifest = {"path": str(model_dir)}
        if "train" not in args.skip:
            # An untimed warm-up epoch on a slice: CUDA context, kernels and allocator are then
            # ready for every timed run alike, so the first timed run is not charged for them.
            train_epoch(manifest, cfg, "phase_a", corpora["phase_a"][:64], False, work)
            for phase in ("phase_a", "phase_b"):
                # ours at defaults; Phase A also without gradient checkpointing at half the micro-batch
                # (same effective batch); the seed's settings
                variants = [(False, cuda, None), (True, cuda, None)]
                if phase == "phase_a" and cuda:
                    variants.insert(1, (False, False, (16, 2)))
                for seed, checkpointing, batch in variants:
                    result = train_epoch(manifest, cfg, phase, corpora[phase], seed, work, checkpointing, batch)
                    log(json.dumps({k: v for k, v in result.items() if k != "lora_targets"}))
                    report["training"].append(result)
        if "eval" not in args.skip:
            for result in eval_speed(manifest, cfg, questions, args.eval_batch_size):
                log(json.dumps({k: v for k, v in result.items() if k != "pred_yes"}))
                report["eval"].append(result)
        if "lm_eval" not in args.skip:
            result = lm_eval_speed(manifest, cfg, questions, args.eval_batch_size, work)
            if result:
                if result.get("pred_yes") and report["eval"]:
                    ours = report["eval"][0]["pred_yes"]
                    result["same_predictions_as_ours"] = sum(a == b for a, b in zip(ours, result["pred_yes"]))
                log(json.dumps({k: v for k, v in result.items() if k != "pred_yes"}))
                report["eval"].append(result)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
