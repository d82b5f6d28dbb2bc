"""Training and evaluation throughput: named settings against the seed's, one run, one table.

Training: each row is one epoch of one phase through the pipeline's own code path
(``clarify.training.build_sft_trainer`` for Phases A and B, ``clarify.dpo.build_trainer`` for
Phase C), with one named setting changed: the seed's (batch 2, accumulation 16, every sequence
padded to 2048), our old default, the phase defaults, then Liger kernels
(``use_liger_kernel``), padding-free batches (``padding_free``), gradient checkpointing off and
larger micro-batches. A row that runs out of GPU memory records "out of memory"; one that cannot
run here (no liger-kernel, no GPU, an attention without packed-sequence support) records
"skipped: <reason>"; memory is freed before the next row. The JSON is rewritten after every row.
``--profile``: after a row's timed epoch, a few more optimizer steps under torch.profiler
(untimed); the row's entry gets the top ops and the device and wall time of those steps.

Evaluation: answer-slot scoring (``clarify.scoring``) against generate-then-parse (the seed's
way: max_new_tokens 35, then look for yes/no in the text) and, when ``lm_eval`` is installed,
lm-evaluation-harness's HF backend on a local multiple-choice task with the same prompt.

On a GPU the model is a randomly initialised Phi-3.5-mini architecture (weights do not change
speed or memory), loaded in 4-bit NF4 for training like the pipeline's defaults. On a CPU
(``--tiny``) a tiny Llama runs every row's code path and measures nothing.

    python benchmarks/train_eval_benchmark.py --strategyqa .data/strategyqa_train.json --out bench.json
    python benchmarks/train_eval_benchmark.py --corpus-a data/train_baseline.jsonl \\
        --corpus-b data/train_cot.jsonl --questions data/splits/test.jsonl --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from clarify.config import schema_defaults  # noqa: E402
from clarify.corpora import build_baseline, build_cot  # noqa: E402
from clarify.data import load_records  # noqa: E402
from clarify.dpo import build_trainer as build_dpo_trainer  # noqa: E402
from clarify.dpo_schedule import resolve_schedule  # noqa: E402
from clarify.generation import generate  # noqa: E402
from clarify.io import read_jsonl  # noqa: E402
from clarify.models import load_model, load_tokenizer  # noqa: E402
from clarify.parsing import parse_teacher  # noqa: E402
from clarify.prompts import ANSWER_TEXT, answer_prompt  # noqa: E402
from clarify.scoring import score_questions  # noqa: E402
from clarify.teacher.gold import gold_response  # noqa: E402
from clarify.training import build_peft_model, build_sft_trainer, precision, to_dataset  # noqa: E402
from clarify.training_speedups import liger_unavailable, padding_free_unavailable  # noqa: E402

PHI35 = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
SEED_TRAINING = {"batch_size": 2, "grad_accum": 16, "pad_to": 2048}


@dataclass(frozen=True)
class Row:
    """One row of the training table: a phase and the one setting that changed.

    ``batch`` = (micro-batch, accumulation) replaces the phase's; ``checkpointing`` None keeps
    the phase's ``gradient_checkpointing`` setting (auto = on with CUDA).
    """

    name: str
    phase: str
    what: str
    seed: bool = False
    batch: tuple[int, int] | None = None
    checkpointing: bool | None = None
    liger: bool = False
    padding_free: bool = False
    grouped: bool = True  # batches grouped by length (the pipeline's only way); False: random order
    first: bool = False  # runs before the others, so that a --time-limit cut keeps it
    cudnn: bool = False  # student.cudnn_attention: cuDNN among the SDPA backends (off by default)
    upcast: bool = True  # the phase's kbit_upcast: 4-bit preparation casts the other weights to fp32


#: The training rows, in table order; ``--rows`` picks by name or by phase letter. Rows marked
#: ``first`` run first (seed, default, + Liger of every phase), the others after them.
ROWS = [
    Row("A-seed", "phase_a", "seed: 2 x 16, every sequence padded to 2048, grad. ckpt on", seed=True,
        checkpointing=True, first=True),
    # Phase A's rows name their batch and checkpointing, so they mean the same whatever the default is.
    # Measured 2026-12-02 under the names A-default / A-liger / A-liger-32x1 (benchmarks/results_h200.json):
    # those are A-16x2 / A-16x2-liger / A-default here, the last one the default since.
    Row("A-old-default", "phase_a", "32 x 1, grad. ckpt on (the default until 2026-11-25)", batch=(32, 1),
        checkpointing=True),
    Row("A-16x2", "phase_a", "16 x 2, grad. ckpt off (the default until 2026-12-02)", batch=(16, 2),
        checkpointing=False, first=True),
    Row("A-16x2-liger", "phase_a", "16 x 2, grad. ckpt off, + Liger kernels", batch=(16, 2), checkpointing=False,
        liger=True, first=True),
    Row("A-default", "phase_a", "32 x 1, Liger, grad. ckpt off, fp32 cast (the default until kbit_upcast's change, "
        "2026-12-02)", batch=(32, 1), checkpointing=False, liger=True, first=True),
    Row("A-liger-64x1", "phase_a", "Liger, micro-batch 64 x 1 (effective batch 64), grad. ckpt off",
        batch=(64, 1), checkpointing=False, liger=True),
    Row("A-ckpt-64x1", "phase_a", "64 x 1, grad. ckpt on, no Liger", batch=(64, 1), checkpointing=True),
    Row("A-default-nofp32", "phase_a", "ours, default since 2026-12-02: 32 x 1, Liger, grad. ckpt off, the weights "
        "that are not 4-bit left in bf16 (kbit_upcast: false)", batch=(32, 1), checkpointing=False, liger=True,
        upcast=False, first=True),
    Row("A-padfree", "phase_a", "16 x 2, grad. ckpt off, padding-free batches", batch=(16, 2), checkpointing=False,
        padding_free=True),
    Row("A-liger-padfree-32x1", "phase_a", "default + padding-free batches", batch=(32, 1),
        checkpointing=False, liger=True, padding_free=True),
    Row("B-seed", "phase_b", "seed: 2 x 16, every sequence padded to 2048, grad. ckpt on", seed=True,
        checkpointing=True, first=True),
    # B-default keeps the name it was measured under: 32 x 1 without Liger, phase_b's settings until the
    # cuDNN-off run; B-liger-64x1-nofp32 is the default since 2026-12-02.
    Row("B-default", "phase_b", "32 x 1, grad. ckpt on with CUDA, no Liger (phase_b's settings until 2026-12-02)",
        batch=(32, 1), first=True),
    Row("B-liger", "phase_b", "B-default + Liger kernels", batch=(32, 1), liger=True, first=True),
    Row("B-32x1", "phase_b", "32 x 1 (the seed's effective batch in one micro-batch), grad. ckpt on",
        batch=(32, 1), checkpointing=True),
    Row("B-liger-32x1", "phase_b", "32 x 1, grad. ckpt on, + Liger kernels", batch=(32, 1), checkpointing=True,
        liger=True),
    Row("B-64x1", "phase_b", "64 x 1 (effective batch 64), grad. ckpt on", batch=(64, 1), checkpointing=True),
    Row("B-32x1-cudnn", "phase_b", "32 x 1, grad. ckpt on, cuDNN attention allowed (torch's choice before "
        "student.cudnn_attention)", batch=(32, 1), checkpointing=True, cudnn=True),
    Row("B-liger-32x1-nofp32", "phase_b", "32 x 1, grad. ckpt on, + Liger, the weights that are not 4-bit left in "
        "bf16 (kbit_upcast: false)", batch=(32, 1), checkpointing=True, liger=True, upcast=False),
    Row("B-liger-64x1-nofp32", "phase_b", "ours, default since 2026-12-02: 64 x 1 (effective batch 64), grad. ckpt "
        "on, + Liger, the weights that are not 4-bit left in bf16", batch=(64, 1), checkpointing=True, liger=True,
        upcast=False, first=True),
    Row("B-ungrouped", "phase_b", "B-default, batches in random order instead of grouped by length", batch=(32, 1),
        grouped=False),
    Row("B-liger-nockpt", "phase_b", "B-default + Liger, grad. ckpt off", batch=(32, 1), checkpointing=False,
        liger=True),
    Row("B-padfree", "phase_b", "B-default + padding-free batches", batch=(32, 1), padding_free=True),
    Row("B-liger-padfree", "phase_b", "B-default + Liger + padding-free", batch=(32, 1), liger=True,
        padding_free=True),
    Row("B-liger-padfree-nockpt", "phase_b", "B-default + Liger + padding-free, grad. ckpt off", batch=(32, 1),
        checkpointing=False, liger=True, padding_free=True),
    Row("C-default", "phase_c", "DPO, phase_c settings (one epoch of the schedule's first entry)", first=True),
    Row("C-liger", "phase_c", "DPO + Liger kernels", liger=True, first=True),
    Row("C-liger-8x1", "phase_c", "DPO + Liger, micro-batch 8 pairs x 1", batch=(8, 1), liger=True),
]
PHASE_LETTERS = {"A": "phase_a", "B": "phase_b", "C": "phase_c"}


def log(*args):
    print(*args, flush=True)


def select_rows(names: list[str] | None) -> tuple[list[Row], list[str]]:
    """The training rows and eval rows ``--rows`` names (names, phase letters A/B/C, ``eval``; none = all)."""
    if not names:
        return list(ROWS), list(EVAL_ROWS)
    known = {row.name for row in ROWS} | set(EVAL_ROWS) | set(PHASE_LETTERS) | {"eval"}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"--rows: unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    rows = [row for row in ROWS if row.name in names or any(PHASE_LETTERS.get(n) == row.phase for n in names)]
    evals = [name for name in EVAL_ROWS if name in names or "eval" in names]
    return rows, evals


# --- data ----------------------------------------------------------------------------------

def corpora_from_strategyqa(path: str, examples: int, questions: int) -> tuple[dict, list[dict]]:
    """Track A and Track B corpora of ``examples`` label-balanced questions, straight from a StrategyQA json.

    Track A is the pipeline's (``corpora.build_baseline``); Track B is the pipeline's
    (``corpora.build_cot``) over the ``gold`` teacher's replies (human decomposition and facts).
    The eval questions are the next ``questions`` records, none of them a training question.
    """
    records = sorted((r for r in load_records(path) if r["decomposition"]), key=lambda r: r["qid"])
    yes = [r for r in records if r["answer"]][: (examples + 1) // 2]
    no = [r for r in records if not r["answer"]][: examples // 2]
    sample = sorted(yes + no, key=lambda r: r["qid"])
    teacher_rows = []
    for record in sample:
        _, steps = parse_teacher(gold_response(record))
        teacher_rows.append({"qid": record["qid"], "question": record["question"], "gold": record["answer"],
                             "status": "agreed", "steps": steps})
    used = {r["qid"] for r in sample}
    corpora = {"phase_a": build_baseline(sample, "none", 0), "phase_b": build_cot(teacher_rows, "none", 0)}
    return corpora, [r for r in records if r["qid"] not in used][:questions]


def preference_pairs(track_b: list[dict]) -> list[dict]:
    """Phase C pairs from Track B rows: chosen = the row's text, rejected = the same with the other answer."""
    pairs = []
    for row in track_b:
        right, wrong = ANSWER_TEXT[bool(row["answer"])], ANSWER_TEXT[not row["answer"]]
        if not row["completion"].endswith(right):
            raise ValueError(f"Track B row {row['qid']}: completion does not end with its answer {right!r}")
        pairs.append({"prompt": row["prompt"], "chosen": row["completion"],
                      "rejected": row["completion"][: -len(right)] + wrong})
    return pairs


def tokenizer_text(strategyqa: str | None) -> list[str]:
    """What the tokenizer learns from: the tests' StrategyQA text, or the same lines of ``--strategyqa``'s file."""
    import tiny_model

    if not strategyqa:
        return tiny_model.training_text()
    lines = list(tiny_model.FALLBACK_TEXT)
    for row in json.loads(Path(strategyqa).read_text())[:1500]:
        lines.append(f"Question: {row['question']}\nAnswer: {'Yes' if row['answer'] else 'No'}")
        lines.extend(row.get("facts", []))
        lines.extend(row.get("decomposition", []))
    return lines


def build_tokenizer(out: Path, questions: list[dict], vocab_size: int, text: list[str]) -> Path:
    """A BPE tokenizer trained on the StrategyQA text (the real Phi tokenizer is not reachable offline)."""
    texts = [f"Question: {r['question']}\nAnswer: {'Yes' if r['answer'] else 'No'}" for r in questions] + text
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
    free_memory()
    return out


# --- memory --------------------------------------------------------------------------------

def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def free_memory():
    """Drop what the last row left (collect cycles, return cached blocks) and restart the peak counter."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


reset_peak = free_memory


@contextlib.contextmanager
def module_patches_undone(model_dir: str):
    """Undo what a row patched into transformers' modelling module of this model type.

    Liger patches the model instance and also the module's globals (``apply_rotary_pos_emb``,
    the RMSNorm and MLP classes): without this, every row after the first Liger row would run
    Liger's RoPE too.
    """
    model_type = json.loads((Path(model_dir) / "config.json").read_text())["model_type"]
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    saved = dict(vars(module))
    try:
        yield
    finally:
        for name in set(vars(module)) - set(saved):
            delattr(module, name)
        for name, value in saved.items():
            if vars(module).get(name) is not value:
                setattr(module, name, value)


def skip_reason(row: Row, attn_implementation: str | None) -> str | None:
    if row.liger and (reason := liger_unavailable()):
        return reason
    if row.padding_free:
        if row.phase == "phase_c":
            return "TRL's DPOTrainer ignores padding_free (disabled in TRL 1.x)"
        return padding_free_unavailable(attn_implementation)
    return None


# --- training rows -------------------------------------------------------------------------

def row_settings(cfg: dict, row: Row) -> dict:
    """The phase's settings with the row's changes: what the pipeline would be configured with."""
    settings = dict(cfg[row.phase], epochs=1, use_liger_kernel=row.liger, kbit_upcast=row.upcast)
    if row.phase != "phase_c":
        settings["padding_free"] = row.padding_free
    else:
        settings["schedule"] = resolve_schedule(settings["schedule"])[:1]
    if row.batch:
        settings.update(batch_size=row.batch[0], grad_accum=row.batch[1])
    if row.seed:
        settings.update(batch_size=SEED_TRAINING["batch_size"], grad_accum=SEED_TRAINING["grad_accum"],
                        max_length=SEED_TRAINING["pad_to"])
    if row.checkpointing is not None:
        settings["gradient_checkpointing"] = row.checkpointing
    return settings


def row_student(cfg: dict, row: Row) -> dict:
    """The ``student`` settings a row loads its model with: the config's, with the row's cuDNN switch."""
    return dict(cfg["student"], cudnn_attention=row.cudnn)


class ProfiledSteps(TrainerCallback):
    """torch.profiler over a trainer's optimizer steps: the first one untraced (warm-up), then ``active`` traced.

    The profiler steps at every ``on_step_end`` (one optimizer step, all its accumulation
    micro-batches); the wall clock of the traced steps runs from the end of the warm-up step to
    the end of the last traced one, the device synchronised at both ends.
    """

    warmup = 1

    def __init__(self, active: int):
        self.active, self.marks = active, []
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=0, warmup=self.warmup, active=active, repeat=1))

    def on_train_begin(self, args, state, control, **kwargs):
        self.profiler.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.warmup <= state.global_step <= self.warmup + self.active:
            self.marks.append(synchronized_clock())
        self.profiler.step()

    def on_train_end(self, args, state, control, **kwargs):
        self.profiler.stop()


def synchronized_clock() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def profile_steps(trainer, steps: int, top: int = 25) -> dict:
    """Profile ``steps`` more optimizer steps of an already trained ``trainer`` (untimed; after its epoch).

    ``trainer.train()`` runs again with ``max_steps`` = 1 + ``steps`` (the first step untraced:
    it warms the profiler up); optimizer and scheduler are the epoch's. The top ``top`` ops by
    self device time (self CPU time without CUDA), from ``key_averages()``, and the totals.
    """
    callback = ProfiledSteps(active=steps)
    trainer.args.max_steps = ProfiledSteps.warmup + steps
    trainer.add_callback(callback)
    try:
        trainer.train()
    finally:
        trainer.remove_callback(callback)
    averages = callback.profiler.key_averages()
    cuda = torch.cuda.is_available()

    def ops(key: str) -> list[dict]:
        ranked = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:top]
        return [{"name": e.key, "calls": e.count, "self_device_ms": e.self_device_time_total / 1e3,
                 "self_cpu_ms": e.self_cpu_time_total / 1e3, "kind": "op" if on_cpu(e) else "kernel"}
                for e in ranked]

    wall_ms = (callback.marks[-1] - callback.marks[0]) * 1e3 if len(callback.marks) > 1 else None
    # As torch's own table totals it: kernels (and copies) only; an op's self device time is the
    # kernels it launched, which are listed again under their own names.
    device_ms = sum(e.self_device_time_total for e in averages
                    if not on_cpu(e) and not getattr(e, "is_user_annotation", False)) / 1e3
    result = {"steps": steps, "wall_ms": wall_ms, "device_ms": device_ms if cuda else None,
              "cpu_ms": sum(e.self_cpu_time_total for e in averages) / 1e3,
              "sorted_by": "self_device_ms" if cuda else "self_cpu_ms",
              "ops": ops("self_device_time_total" if cuda else "self_cpu_time_total")}
    if cuda:
        result["device_busy_share"] = device_ms / wall_ms if wall_ms else None
        result["ops_by_cpu"] = ops("self_cpu_time_total")
    return result


def on_cpu(event) -> bool:
    return event.device_type == torch.autograd.DeviceType.CPU


def with_profile(entry: dict, trainer, steps: int | None) -> dict:
    """``entry`` plus ``profile`` (``profile_steps``'s result, or its failure) when ``steps`` is given."""
    if steps:
        try:
            entry["profile"] = profile_steps(trainer, steps)
        except Exception as exc:  # the timed numbers stand without it
            entry["profile"] = {"status": failure(exc)}
    return entry


class FirstStepClock(TrainerCallback):
    """The synchronised clock at the end of a trainer's first optimizer step (``mark``; None before it)."""

    def __init__(self):
        self.mark = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.mark = synchronized_clock()


@dataclass(frozen=True)
class Timing:
    """A timed ``trainer.train()``: ``seconds`` the whole call (set-up, first step and all);
    ``after_first_step`` from the end of the first optimizer step to the end (None with one step)."""

    seconds: float
    after_first_step: float | None


def timed_train(trainer) -> Timing:
    clock = FirstStepClock()
    trainer.add_callback(clock)
    start = synchronized_clock()
    try:
        trainer.train()
    finally:
        trainer.remove_callback(clock)
    end = synchronized_clock()
    return Timing(end - start, end - clock.mark if clock.mark is not None and trainer.state.global_step > 1 else None)


def rates(count: int, per_step: int, tokens: float, timing: Timing) -> dict:
    """A row's rates: per second over the whole ``train()`` call, and in the steady state after its first step.

    The whole call also counts what happens once per call: the trainer's set-up, the first step's memory
    allocation and kernel selection. The pipeline pays that once per phase over 1,603 x 2 examples, a short
    row once per few hundred. ``steady_examples_per_s`` leaves out the first optimizer step (``per_step``
    examples) and everything before it; None when the row had a single step.
    """
    steady = None
    if timing.after_first_step:
        steady = (count - min(per_step, count)) / timing.after_first_step
    return {"seconds": timing.seconds, "examples_per_s": count / timing.seconds, "tokens_per_s": tokens / timing.seconds,
            "seconds_after_first_step": timing.after_first_step, "steady_examples_per_s": steady}


def sft_epoch(manifest: dict, cfg: dict, row: Row, rows: list[dict], workdir: Path,
              save_adapter: Path | None = None, profile: int | None = None) -> dict:
    """One epoch of Phase A or B under the row's settings: examples/s, real tokens/s, peak GPU memory.

    ``profile``: after the epoch, that many optimizer steps more under torch.profiler (``profile_steps``).
    """
    settings = row_settings(cfg, row)
    checkpointing, bf16 = precision(settings, row.phase)
    overrides = {"save_strategy": "no", "logging_steps": 10}
    if row.seed:
        overrides.update(pad_to_multiple_of=SEED_TRAINING["pad_to"])
    if row.seed or not row.grouped:
        overrides.update(train_sampling_strategy="random")
    model, targets = build_peft_model(manifest, row_student(cfg, row), cfg["quantization"], cfg["lora"], None,
                                      gradient_checkpointing=checkpointing, kbit_upcast=settings["kbit_upcast"])
    tokenizer = load_tokenizer(manifest["path"])
    dataset = to_dataset(rows, tokenizer, settings["max_length"])
    trainer = build_sft_trainer(phase=row.phase, model=model, tokenizer=tokenizer, dataset=dataset,
                                settings=settings, checkpoint_dir=workdir / row.name, bf16=bf16,
                                cuda=torch.cuda.is_available(), progress=False, **overrides)
    timing = timed_train(trainer)
    if save_adapter:
        trainer.model.save_pretrained(save_adapter)
    real_tokens = int(sum(len(ids) for ids in dataset["input_ids"]))
    processed = len(dataset) * SEED_TRAINING["pad_to"] if row.seed else real_tokens
    peak = peak_gib()
    return with_profile({
        "examples": len(dataset), "batch_size": settings["batch_size"], "grad_accum": settings["grad_accum"],
        "padding": (f"to {SEED_TRAINING['pad_to']}" if row.seed else
                    "none (padding-free)" if trainer.args.padding_free else
                    f"longest in batch, {'grouped by length' if row.grouped else 'random order'}"),
        "gradient_checkpointing": checkpointing, "use_liger_kernel": bool(trainer.args.use_liger_kernel),
        "padding_free": bool(trainer.args.padding_free), "kbit_upcast": settings["kbit_upcast"],
        "mean_tokens": real_tokens / len(dataset),
        **rates(len(dataset), settings["batch_size"] * settings["grad_accum"], real_tokens, timing),
        "processed_tokens_per_s": processed / timing.seconds, "peak_gib": peak, "lora_targets": targets,
    }, trainer, profile)


def dpo_epoch(manifest: dict, cfg: dict, row: Row, pairs: list[dict], adapter: Path, workdir: Path,
              profile: int | None = None) -> dict:
    """One epoch of Phase C (the pipeline's ScheduledDPOTrainer from ``adapter``): pairs/s and peak memory."""
    settings = row_settings(cfg, row)
    trainer = build_dpo_trainer(manifest=manifest, student=row_student(cfg, row), quantization=cfg["quantization"],
                                settings=settings, pairs=pairs, init_adapter=str(adapter), work_dir=workdir / row.name,
                                progress=False)
    tokenizer = load_tokenizer(manifest["path"])
    real_tokens = sum(len(tokenizer(p["prompt"] + p[side])["input_ids"])
                      for p in pairs for side in ("chosen", "rejected"))
    timing = timed_train(trainer)
    peak = peak_gib()
    return with_profile({
        "examples": len(pairs), "unit": "pairs", "batch_size": settings["batch_size"],
        "grad_accum": settings["grad_accum"], "schedule": trainer.args.schedule,
        "padding": "longest in batch (TRL's DPO collator)",
        "gradient_checkpointing": precision(settings, "phase_c")[0],
        "use_liger_kernel": bool(trainer.args.use_liger_kernel), "padding_free": False,
        "kbit_upcast": settings["kbit_upcast"], "mean_tokens": real_tokens / len(pairs),
        **rates(len(pairs), settings["batch_size"] * settings["grad_accum"], real_tokens, timing),
        "processed_tokens_per_s": real_tokens / timing.seconds,
        "peak_gib": peak,
    }, trainer, profile)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def failure(exc: BaseException) -> str:
    """A row's status after ``exc``: "out of memory", or "failed: " and the error's first line."""
    if is_out_of_memory(exc):
        return "out of memory"
    return f"failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def run_training_row(row: Row, run) -> dict:
    """The row's result; "out of memory" or "failed: ..." instead of raising. Memory is freed after it."""
    entry = {"row": row.name, "phase": row.phase, "what": row.what}
    started = time.perf_counter()
    try:
        entry.update(run(), status="ok")
    except Exception as exc:  # a row must not end the run: the next rows still measure
        entry["status"] = failure(exc)
        entry["peak_gib"] = peak_gib()
    entry["row_seconds"] = time.perf_counter() - started
    free_memory()
    return entry


def summary(entry: dict) -> str:
    if entry["status"] != "ok":
        return entry["status"]
    peak = f", peak {entry['peak_gib']:.2f} GiB" if entry.get("peak_gib") is not None else ""
    unit = entry.get("unit", "examples")
    steady = f" ({entry['steady_examples_per_s']:.2f} after the first step)" if entry.get("steady_examples_per_s") else ""
    return (f"{entry['examples_per_s']:.2f} {unit}/s{steady}, {entry['tokens_per_s']:.0f} tokens/s{peak} "
            f"({entry['examples']} {unit}, {entry['seconds']:.1f} s training){profile_summary(entry.get('profile'))}")


def profile_summary(profile: dict | None) -> str:
    """The console line's tail for a row's ``profile``: ms per step, GPU-busy share and top op, or its failure."""
    if not profile:
        return ""
    if not profile.get("wall_ms"):
        return f"; profile {profile['status']}"
    busy = f", GPU busy {profile['device_busy_share']:.0%}" if profile.get("device_busy_share") else ""
    top = profile["ops"][0]["name"][:60] if profile["ops"] else "-"
    return f"; profile: {profile['wall_ms'] / profile['steps']:.0f} ms/step{busy}, top {top}"


YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def scoring_speed(manifest, cfg, questions: list[dict], batch_size: int) -> dict:
    """Questions/s of answer-slot scoring (``clarify.scoring``), the model loaded in bf16 before the clock."""
    tokenizer = load_tokenizer(manifest["path"])
    model = load_model(manifest, cfg["student"], {"load_in_4bit": False})
    reset_peak()
    start = time.perf_counter()
    frame = score_questions(model, tokenizer, questions, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    return {"method": "answer-slot scoring (ours)", "questions": len(questions), "batch_size": batch_size,
            "seconds": seconds, "questions_per_s": len(questions) / seconds, "peak_gib": peak_gib(),
            "pred_yes": [bool(p) for p in frame["pred"]]}


def generate_speed(manifest, cfg, questions: list[dict], batch_size: int) -> dict:
    """Questions/s of generate-then-parse, the seed's way: 35 new tokens, then a regex for yes/no."""
    tokenizer = load_tokenizer(manifest["path"])
    model = load_model(manifest, cfg["student"], {"load_in_4bit": False})
    reset_peak()
    start = time.perf_counter()
    outputs = generate(model, tokenizer, [answer_prompt(r["question"]) for r in questions], max_new_tokens=35,
                       batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    parsed = [YES_NO.search(o["text"]) for o in outputs]
    return {"method": "generate 35 tokens then parse (seed)", "questions": len(questions),
            "batch_size": batch_size, "seconds": seconds, "questions_per_s": len(questions) / seconds,
            "peak_gib": peak_gib(), "unparsed": sum(p is None for p in parsed)}


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


#: The evaluation rows: name -> (manifest, cfg, questions, args, workdir) -> result.
EVAL_ROWS = {
    "eval-scoring": lambda manifest, cfg, questions, args, work: scoring_speed(
        manifest, cfg, questions, args.eval_batch_size),
    "eval-generate": lambda manifest, cfg, questions, args, work: generate_speed(
        manifest, cfg, questions[: args.generate_questions], args.eval_batch_size),
    "eval-lm_eval": lambda manifest, cfg, questions, args, work: lm_eval_speed(
        manifest, cfg, questions, args.eval_batch_size, work) or {
        "method": "lm-evaluation-harness HF backend", "status": "skipped: lm_eval is not installed"},
}


def versions() -> dict:
    found = {}
    for package in ("torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel", "flash-attn", "lm_eval"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("data (either --strategyqa, or the three DAG files)")
    source.add_argument("--strategyqa",
                        help="a StrategyQA json: Track A/B texts are built from it (no DAG output needed)")
    source.add_argument("--corpus-a", help="Track A corpus (data/train_baseline.jsonl)")
    source.add_argument("--corpus-b", help="Track B corpus (data/train_cot.jsonl)")
    source.add_argument("--questions", help="questions to score (data/splits/test.jsonl)")
    parser.add_argument("--rows", nargs="*", default=None,
                        help="rows to run: names, phase letters A B C, or eval (default: all); "
                             f"training rows: {', '.join(r.name for r in ROWS)}; eval rows: {', '.join(EVAL_ROWS)}")
    parser.add_argument("--examples", type=int, default=200, help="training examples per Phase A/B row")
    parser.add_argument("--dpo-examples", type=int, default=100, help="preference pairs per Phase C row")
    parser.add_argument("--seed-examples", type=int, default=64,
                        help="training examples of the seed rows (slow: every sequence is padded to 2048)")
    parser.add_argument("--warmup-examples", type=int, default=64)
    parser.add_argument("--max-questions", type=int, default=687, help="questions scored by eval-scoring, eval-lm_eval")
    parser.add_argument("--generate-questions", type=int, default=160, help="questions of eval-generate (slow)")
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--time-limit", type=float, default=250.0,
                        help="start no row after this many seconds; later rows are recorded as skipped")
    parser.add_argument("--profile", nargs="*", default=None, metavar="ROW",
                        help="after each training row's timed epoch (or only the ROWs named), profile "
                             "--profile-steps more optimizer steps with torch.profiler (untimed); "
                             "the row's JSON entry gets a 'profile'")
    parser.add_argument("--profile-steps", type=int, default=3, help="optimizer steps traced by --profile")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny Llama on CPU: run every row's code path, measure nothing")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not args.strategyqa and not (args.corpus_a and args.corpus_b and args.questions):
        parser.error("give --strategyqa PATH, or all of --corpus-a, --corpus-b and --questions")
    if args.profile_steps < 1:
        parser.error("--profile-steps must be at least 1")
    unknown = sorted(set(args.profile or ()) - {row.name for row in ROWS})
    if unknown:
        parser.error(f"--profile: unknown training rows {', '.join(unknown)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    rows, eval_rows = select_rows(args.rows)
    cuda = torch.cuda.is_available()
    cfg = schema_defaults(ROOT / "workflow/schemas/config.schema.yaml")
    cfg["quantization"]["load_in_4bit"] = cuda
    cfg["student"]["dtype"] = "bfloat16" if cuda else "float32"
    if args.strategyqa:
        corpora, questions = corpora_from_strategyqa(
            args.strategyqa, max(args.examples, args.dpo_examples, args.seed_examples, args.warmup_examples),
            args.max_questions)
    else:
        corpora = {"phase_a": read_jsonl(args.corpus_a), "phase_b": read_jsonl(args.corpus_b)}
        questions = sorted(read_jsonl(args.questions), key=lambda r: r["qid"])[: args.max_questions]
    corpora["phase_c"] = preference_pairs(corpora["phase_b"])
    out = Path(args.out)
    report = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              "versions": versions(), "model": "tiny Llama" if args.tiny else "Phi-3.5-mini architecture, random init",
              "training_quantization": "4-bit NF4 + bf16" if cuda else "fp32 LoRA",
              "data": args.strategyqa or {"corpus_a": args.corpus_a, "corpus_b": args.corpus_b},
              "training": [], "eval": []}

    order = {row.name: index for index, row in enumerate(ROWS)}

    def save():
        report["elapsed_s"] = time.perf_counter() - started
        out.write_text(json.dumps(report, indent=2))

    def progress(name: str, text: str):
        log(f"[{time.perf_counter() - started:6.1f} s] {name}: {text}")

    def over_time(name: str, section: str) -> bool:
        if time.perf_counter() - started <= args.time_limit:
            return False
        entry = {"row": name, "status": f"skipped: time limit (--time-limit {args.time_limit:g} s)"}
        report[section].append(entry)
        if section == "training":
            report["training"].sort(key=lambda e: order[e["row"]])
        progress(name, entry["status"])
        save()
        return True

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer_dir = build_tokenizer(work / "tokenizer", questions, 1024 if args.tiny else args.vocab_size,
                                        tokenizer_text(args.strategyqa))
        model_dir = build_model(work / "model", tokenizer_dir, args.tiny)
        manifest = {"path": str(model_dir)}
        attn = json.loads((model_dir / "config.json").read_text()).get("_attn_implementation")
        report["attn_implementation"] = attn or "sdpa (transformers' default)"
        adapter = work / "adapter"
        if rows:
            # An untimed warm-up epoch on a slice: CUDA context, kernels (Liger's too, when a row
            # uses them) and allocator are then ready for every timed row alike; its adapter is
            # the initial policy and reference of the Phase C rows.
            # A failing warm-up is recorded (then retried without Liger), never the end of the run.
            report["warm_up"] = []
            for liger in sorted({any(r.liger for r in rows) and not liger_unavailable(), False}, reverse=True):
                warm = Row("warm-up", "phase_a", "untimed", liger=liger)
                with module_patches_undone(manifest["path"]):
                    entry = run_training_row(warm, lambda warm=warm: sft_epoch(
                        manifest, cfg, warm, corpora["phase_a"][: args.warmup_examples], work, save_adapter=adapter))
                report["warm_up"].append({"use_liger_kernel": liger, "status": entry["status"],
                                          "seconds": entry["row_seconds"]})
                progress("warm-up", f"{entry['status']} (Liger kernels {'on' if liger else 'off'})")
                if entry["status"] == "ok":
                    break
        for row in sorted(rows, key=lambda r: not r.first):  # stable: table order within each group
            if over_time(row.name, "training"):
                continue
            reason = skip_reason(row, attn)
            if reason:
                entry = {"row": row.name, "phase": row.phase, "what": row.what, "status": f"skipped: {reason}"}
            else:
                examples = (args.seed_examples if row.seed else args.dpo_examples if row.phase == "phase_c"
                            else args.examples)
                data = corpora[row.phase][:examples]
                profile = args.profile_steps if args.profile is not None and (
                    not args.profile or row.name in args.profile) else None
                if row.phase == "phase_c":
                    run = lambda row=row, data=data, profile=profile: dpo_epoch(  # noqa: E731
                        manifest, cfg, row, data, adapter, work, profile=profile)
                else:
                    run = lambda row=row, data=data, profile=profile: sft_epoch(  # noqa: E731
                        manifest, cfg, row, data, work, profile=profile)
                with module_patches_undone(manifest["path"]):
                    entry = run_training_row(row, run)
            report["training"].append(entry)
            report["training"].sort(key=lambda e: order[e["row"]])
            progress(row.name, summary(entry))
            save()
        for name in eval_rows:
            if over_time(name, "eval"):
                continue
            try:
                result = EVAL_ROWS[name](manifest, cfg, questions, args, work)
                ours = next((e for e in report["eval"] if e.get("pred_yes")), None)
                if name != "eval-scoring" and result.get("pred_yes") and ours:
                    same = sum(a == b for a, b in zip(ours["pred_yes"], result["pred_yes"]))
                    result["same_predictions_as_ours"] = same
                result.setdefault("status", "ok")
            except Exception as exc:  # an eval row must not end the run either
                result = {"status": failure(exc)}
            result["row"] = name
            free_memory()
            report["eval"].append(result)
            rate = f"{result['questions_per_s']:.1f} questions/s" if "questions_per_s" in result else result["status"]
            progress(name, rate)
            save()
    save()
    progress("all", f"{len(report['training'])} training rows, {len(report['eval'])} eval rows -> {out}")


if __name__ == "__main__":
    main()
