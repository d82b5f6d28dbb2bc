"""Phase A and Phase B: supervised LoRA / QLoRA fine-tuning with TRL's ``SFTTrainer``.

* Targets are tokenised here, with the same tokenizer call the scorer uses, so the answer
  ids the model is trained on are exactly the ids scored at the answer slot. The dataset
  reaches TRL pre-tokenised (``input_ids`` + ``completion_mask``): completion-only loss, and
  no EOS appended behind our back.
* Batches are padded to their longest member and grouped by length; nothing is padded to
  ``max_length`` (which only truncates).
* Every epoch ends with a dev check in the phase's eval mode (``evaluation.evaluate``); the
  best epoch's adapter is kept and training stops after ``early_stopping_patience`` epochs
  without improvement. The test split is never looked at.
* Checkpoints are written each epoch outside the rule's output, so a killed job resumes
  from its last complete epoch when it is run again, and only under the settings and data
  that made them (``clarify.resume``: a fingerprint mismatch starts fresh).
* Training curves also go to TensorBoard event files when ``tensorboard_dir`` is given.
* 4-bit NF4 + bf16 + gradient checkpointing where CUDA exists; plain LoRA in float32 on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import InputError
from .evaluation import evaluate
from .models import (device_name, linear_module_names, load_model, load_tokenizer, peak_gpu_gib, reset_peak_gpu_memory,
                     resolve_lora_targets)
from .numerics import nonfinite_guard, require_finite_parameters
from .resume import fingerprint, last_complete_checkpoint, open_work_dir
from .stats import accuracy
from .training_speedups import resolve_liger, use_liger_kernel, use_padding_free

log = logging.getLogger(__name__)

HISTORY_FILE = "dev_history.json"
#: What a resumable SFT checkpoint holds; trainer_state.json is the last file the trainer writes.
CHECKPOINT_FILES = ["trainer_state.json", "optimizer.pt", ("adapter_model.safetensors", "adapter_model.bin")]


# --- data ----------------------------------------------------------------------------------

def tokenize_rows(rows: list[dict], tokenizer, max_length: int) -> dict[str, list]:
    """``input_ids`` and ``completion_mask`` for prompt/completion rows.

    The full text is tokenised in one call (as the scorer does); the completion starts where
    the prompt's own tokenisation stops matching. Rows longer than ``max_length`` keep their
    end (the answer) and lose the start of the prompt; how many were cut is logged.
    """
    ids_all, masks, truncated = [], [], 0
    for row in rows:
        prompt_ids = tokenizer(row["prompt"], add_special_tokens=True)["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"], add_special_tokens=True)["input_ids"]
        shared = 0
        while shared < min(len(prompt_ids), len(ids)) and prompt_ids[shared] == ids[shared]:
            shared += 1
        if shared == len(ids):
            raise InputError(f"corpus row {row.get('qid')}: field 'completion' adds no tokens to the prompt")
        mask = [0] * shared + [1] * (len(ids) - shared)
        if len(ids) > max_length:
            truncated += 1
            ids, mask = ids[-max_length:], mask[-max_length:]
        ids_all.append(ids)
        masks.append(mask)
    if truncated:
        log.warning("%d of %d training texts were longer than max_length=%d and lost their start",
                    truncated, len(rows), max_length)
    return {"input_ids": ids_all, "completion_mask": masks}


def to_dataset(rows: list[dict], tokenizer, max_length: int):
    from datasets import Dataset

    return Dataset.from_dict(tokenize_rows(rows, tokenizer, max_length))


# --- the model -----------------------------------------------------------------------------

def precision(settings: dict, phase: str) -> tuple[bool, bool]:
    """(gradient checkpointing, bf16) for a phase's settings on this machine.

    ``auto`` means on where CUDA (and, for bf16, its support) exists; asking for bf16 without
    it is an error naming the key.
    """
    cuda = torch.cuda.is_available()
    checkpointing = settings["gradient_checkpointing"]
    checkpointing = cuda if checkpointing == "auto" else bool(checkpointing)
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if settings["bf16"] is True and not bf16_ok:
        raise InputError(f"{phase}.bf16: bf16 training needs a CUDA GPU that supports it; set it to auto or false")
    return checkpointing, settings["bf16"] is True or (settings["bf16"] == "auto" and bf16_ok)


def load_for_training(manifest: dict, student: dict, quantization: dict, gradient_checkpointing: bool,
                      kbit_upcast: bool):
    """The base model ready for adapters: k-bit preparation (QLoRA) or plain, checkpointing as asked.

    ``kbit_upcast`` (a phase's ``kbit_upcast``): with 4-bit weights, PEFT's preparation, which also casts
    every weight that is not 4-bit to fp32; False prepares it like an unquantized model, in its own dtype
    (PEFT freezes the base weights when it adds the adapter either way).
    """
    from peft import prepare_model_for_kbit_training

    model = load_model(manifest, student, quantization)
    if quantization.get("load_in_4bit") and kbit_upcast:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def build_peft_model(manifest: dict, student: dict, quantization: dict, lora: dict,
                     init_adapter: str | None, gradient_checkpointing: bool, kbit_upcast: bool):
    """Base model + a trainable LoRA adapter: a new one, or ``init_adapter`` trained further."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model = load_for_training(manifest, student, quantization, gradient_checkpointing, kbit_upcast)
    if init_adapter:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
        targets = sorted(model.peft_config["default"].target_modules)
    else:
        targets = resolve_lora_targets(model, lora["target_modules"])
        config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                            target_modules=targets, task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, config)
    return model, targets


def parameter_counts(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total)}


# --- trainer pieces ------------------------------------------------------------------------

def _sft_trainer_class():
    from trl import SFTTrainer

    class AnswerWeightedSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss can weight the answer token by class (``class_weights``).

        The answer token is the last supervised token of each row; its cross-entropy is scaled
        by the weight of the row's gold answer. Without weights this is TRL's own loss.
        """

        answer_weights: dict[int, float] | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.answer_weights:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            logits = outputs.logits[:, :-1, :].float()
            target = labels[:, 1:]
            losses = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
            weights = (target != -100).float()
            positions = torch.arange(target.shape[1], device=target.device).expand_as(target)
            last = torch.where(target != -100, positions, -1).max(dim=1).values
            rows = torch.arange(target.shape[0], device=target.device)
            answer_ids = target[rows, last]
            for token_id, weight in self.answer_weights.items():
                scale = torch.where(answer_ids == token_id, weight, 1.0)
                weights[rows, last] = weights[rows, last] * scale
            loss = (losses * weights).sum() / (target != -100).sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return AnswerWeightedSFTTrainer


def _dev_callback(tokenizer, dev_records, eval_settings, mode, patience, best_dir: Path, history_path: Path):
    from transformers import TrainerCallback

    class DevCheck(TrainerCallback):
        """Dev accuracy at each epoch end; keeps the best adapter; stops on no improvement."""

        def __init__(self):
            self.history = json.loads(history_path.read_text()) if history_path.exists() else []

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            was_training = model.training
            model.eval()
            frame = evaluate(model, tokenizer, dev_records, mode, eval_settings, progress=False)
            if was_training:
                model.train()
            acc = accuracy(frame["correct"])
            epoch = int(round(state.epoch))
            best = max((h["dev_accuracy"] for h in self.history), default=-1.0)
            entry = {"epoch": epoch, "step": state.global_step, "dev_accuracy": acc.accuracy,
                     "dev_ci": [acc.ci_low, acc.ci_high], "dev_n": acc.n,
                     "dev_pred_yes": float(frame["pred"].mean()) if len(frame) else 0.0}
            self.history.append(entry)
            if acc.accuracy > best:
                model.save_pretrained(best_dir)
                entry["best"] = True
            history_path.write_text(json.dumps(self.history, indent=2))
            log.info("epoch %d: dev %s accuracy %s, predicted yes %.1f%%", epoch, mode, acc,
                     100 * entry["dev_pred_yes"])
            best_epoch = max(self.history, key=lambda h: h["dev_accuracy"])["epoch"]
            if epoch - best_epoch >= patience:
                log.info("no dev improvement for %d epoch(s) since epoch %d: stopping", patience, best_epoch)
                control.should_training_stop = True
            return control

    return DevCheck()


def trainer_arguments(settings: dict, output_dir: str | Path, *, bf16: bool, cuda: bool, progress: bool,
                      phase: str = "training") -> dict:
    """The TRL config arguments every phase (SFT and DPO) sets the same way, from its settings.

    ``use_liger_kernel`` falls back to False, with one log line, where Liger cannot run
    (:mod:`clarify.training_speedups`).
    """
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["grad_accum"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler"],
        max_length=settings["max_length"],
        pad_to_multiple_of=None,
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=False,  # enabled on the model before PEFT wraps it (build_peft_model)
        logging_steps=1,
        report_to=[],
        seed=settings["seed"],
        data_seed=settings["seed"],
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        use_liger_kernel=use_liger_kernel(settings.get("use_liger_kernel", False), phase),
    )


def sft_config(settings: dict, checkpoint_dir: str | Path, steps_per_epoch: int, *, bf16: bool, cuda: bool,
               progress: bool = True, phase: str = "training", **overrides):
    """TRL's ``SFTConfig`` for a phase's settings: every TRL default we rely on is set explicitly.

    ``padding_free`` is taken as given here (:func:`build_sft_trainer` checks it against the
    model); with it, ``max_length`` goes to TRL as None, which TRL requires without packing: the
    rows are already cut to ``max_length`` by :func:`tokenize_rows`. ``overrides`` replace
    individual arguments (the benchmark uses them to emulate the seed).
    """
    from trl import SFTConfig

    padding_free = bool(settings.get("padding_free", False))
    arguments = dict(
        trainer_arguments(settings, checkpoint_dir, bf16=bf16, cuda=cuda, progress=progress, phase=phase),
        num_train_epochs=settings["epochs"],
        warmup_steps=math.ceil(settings["warmup_ratio"] * steps_per_epoch * settings["epochs"]),
        weight_decay=settings["weight_decay"],
        train_sampling_strategy="group_by_length",
        completion_only_loss=True,
        packing=False,
        save_strategy="epoch",
        save_total_limit=1,
        eval_strategy="no",
        remove_unused_columns=False,
        padding_free=padding_free,
    )
    if padding_free:
        arguments["max_length"] = None
    arguments.update(overrides)
    return SFTConfig(**arguments)


def build_sft_trainer(*, phase: str, model, tokenizer, dataset, settings: dict, checkpoint_dir: str | Path,
                      bf16: bool, cuda: bool, progress: bool = True, callbacks: list | tuple = (), **overrides):
    """The phase's SFT trainer (answer-weighted when ``class_weights`` is set) over ``dataset``.

    ``padding_free`` falls back to padded batches, with one log line, where the model's attention
    cannot keep packed examples apart; it cannot be combined with ``class_weights`` (the weighted
    loss finds each example's answer token in its own row).
    """
    padding_free = use_padding_free(settings.get("padding_free", False), model, phase)
    if padding_free and settings.get("class_weights"):
        raise InputError(f"{phase}.padding_free: class_weights need one row per example; turn one of them off")
    settings = {**settings, "padding_free": padding_free}
    steps_per_epoch = math.ceil(len(dataset) / (settings["batch_size"] * settings["grad_accum"]))
    args = sft_config(settings, checkpoint_dir, steps_per_epoch, bf16=bf16, cuda=cuda, progress=progress,
                      phase=phase, **overrides)
    trainer = _sft_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   callbacks=list(callbacks))
    if settings.get("class_weights"):
        from .scoring import answer_tokens

        ids = answer_tokens(tokenizer)
        if not ids.single_token:
            raise InputError(f"{phase}.class_weights: needs single-token answers; this tokenizer splits them")
        trainer.answer_weights = {ids.yes[0]: settings["class_weights"]["yes_weight"],
                                  ids.no[0]: settings["class_weights"]["no_weight"]}
    return trainer


def tensorboard_callbacks(log_dir: str | Path | None) -> list:
    """transformers' ``TensorBoardCallback`` writing to ``log_dir`` (none when it is None).

    transformers 5 has no ``TrainingArguments.logging_dir`` (only the process-wide
    ``TENSORBOARD_LOGGING_DIR``), so the callback is given its directory here instead of
    through ``report_to``. It writes with ``tensorboardX`` (or ``tensorboard``, when present).
    """
    if log_dir is None:
        return []
    from transformers.integrations import TensorBoardCallback, is_tensorboard_available

    if not is_tensorboard_available():
        raise InputError("logging.tensorboard: writing TensorBoard event files needs the tensorboardX (or "
                         "tensorboard) package; install it or set logging.tensorboard to false")
    callback = TensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return [callback]


@contextlib.contextmanager
def out_of_memory_explained(phase: str, settings: dict):
    """Training that runs out of GPU memory ends with one line naming the setting that fixes it.

    Training does not shrink its batch as generation does (:mod:`clarify.batching`): a smaller
    micro-batch with more accumulation keeps the effective batch, and the recipe, the same.
    """
    try:
        yield
    except torch.OutOfMemoryError as exc:
        batch, accum = settings["batch_size"], settings["grad_accum"]
        smaller = (f"e.g. {phase}.batch_size: {batch // 2} with {phase}.grad_accum: {accum * 2} keeps the "
                   f"effective batch of {batch * accum}" if batch > 1 else
                   f"set {phase}.gradient_checkpointing: true or a shorter {phase}.max_length")
        raise InputError(f"{phase}: the GPU ran out of memory training micro-batches of {batch}; {smaller}") from exc


def rows_digest(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def resume_point(checkpoint_dir: Path, best_dir: Path, history_path: Path) -> Path | None:
    """The checkpoint to resume from, with the dev history cut back to it; None for a fresh start.

    A kill after an epoch's dev check but before its checkpoint was complete leaves a history
    (and perhaps a kept adapter) ahead of the last complete checkpoint: those epochs rerun, so
    their entries go; if the kept adapter is one of them, the epoch it replaced is lost and the
    run starts fresh.
    """
    resume = last_complete_checkpoint(checkpoint_dir, CHECKPOINT_FILES)
    history = json.loads(history_path.read_text()) if resume and history_path.exists() else []
    if resume is not None:
        step = json.loads((resume / "trainer_state.json").read_text())["global_step"]
        kept = [h for h in history if h["step"] <= step]
        if any(h.get("best") for h in history[len(kept):]):
            log.warning("%s: the kept adapter is newer than the last complete checkpoint %s: starting fresh",
                        checkpoint_dir, resume.name)
            shutil.rmtree(resume)
            resume = None
        else:
            history_path.write_text(json.dumps(kept, indent=2))
    if resume is None:  # a fresh start: forget a previous attempt's checkpoints and dev history
        for stale in [best_dir, history_path, *checkpoint_dir.glob("checkpoint-*")]:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return resume


# --- the phase -----------------------------------------------------------------------------

def train_phase(*, phase: str, manifest: dict, student: dict, quantization: dict, lora: dict,
                settings: dict, eval_settings: dict, train_rows: list[dict], dev_records: list[dict],
                output_dir: str | Path, checkpoint_dir: str | Path, init_adapter: str | None = None,
                callbacks: tuple = (), progress: bool = True, tensorboard_dir: str | Path | None = None) -> dict:
    """Train one phase's adapter and write it (best dev epoch) with ``training_log.json``.

    ``settings`` is the phase's config section; ``eval_settings`` holds the dev check's
    generation settings (``cot_max_new_tokens`` and the ``drafts`` section); the dev check
    scores in the phase's batch size. Checkpoints in ``checkpoint_dir`` are resumed only when
    they were made from the same settings, model, data and initial adapter. Returns the
    training log.
    """
    if not train_rows:
        raise InputError(f"{phase}: the training corpus is empty")
    started = time.time()
    reset_peak_gpu_memory()
    cuda = torch.cuda.is_available()
    output_dir = Path(output_dir)
    settings = resolve_liger(settings, phase)  # as trained here: Liger off where it cannot run (+ checkpointing on CUDA)
    gradient_checkpointing, bf16 = precision(settings, phase)
    made_by = {"phase": phase, "model": manifest, "student": student, "quantization": quantization, "lora": lora,
               "settings": settings, "eval": eval_settings, "train_rows_sha256": rows_digest(train_rows),
               "dev_records_sha256": rows_digest(dev_records)}
    checkpoint_dir = open_work_dir(checkpoint_dir, fingerprint(made_by, [init_adapter] if init_adapter else []),
                                   made_by)
    best_dir, history_path = checkpoint_dir / "best", checkpoint_dir / HISTORY_FILE
    resume = resume_point(checkpoint_dir, best_dir, history_path)
    if resume is None and tensorboard_dir is not None:
        shutil.rmtree(tensorboard_dir, ignore_errors=True)  # curves of a run that is not continued

    tokenizer = load_tokenizer(manifest["path"])
    from transformers import set_seed

    set_seed(settings["seed"])  # the LoRA initialisation draws random numbers: same seed, same adapter
    model, targets = build_peft_model(manifest, student, quantization, lora, init_adapter, gradient_checkpointing,
                                      settings["kbit_upcast"])
    counts = parameter_counts(model)
    log.info("%s: LoRA on %s; %d trainable of %d parameters (%.2f%%)", phase, ", ".join(targets),
             counts["trainable"], counts["total"], 100 * counts["trainable"] / counts["total"])
    dataset = to_dataset(train_rows, tokenizer, settings["max_length"])

    eval_settings = {**eval_settings, "batch_size": settings["batch_size"]}
    dev_check = _dev_callback(tokenizer, dev_records, eval_settings, settings["dev_mode"],
                              settings["early_stopping_patience"], best_dir, history_path)
    guard = nonfinite_guard(phase)
    trainer = build_sft_trainer(phase=phase, model=model, tokenizer=tokenizer, dataset=dataset, settings=settings,
                                checkpoint_dir=checkpoint_dir, bf16=bf16, cuda=cuda, progress=progress,
                                callbacks=[guard, dev_check, *tensorboard_callbacks(tensorboard_dir), *callbacks])
    if resume:
        log.info("%s: resuming from %s", phase, resume)
    with out_of_memory_explained(phase, settings):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    require_finite_parameters(trainer.model, phase)
    history = dev_check.history
    if not best_dir.is_dir():
        raise RuntimeError(f"{phase}: no epoch finished, nothing to keep")
    best = max(history, key=lambda h: h["dev_accuracy"])
    training_log = {
        "phase": phase,
        "init_adapter": init_adapter,
        "train_examples": len(dataset),
        "train_tokens": int(sum(len(ids) for ids in dataset["input_ids"])),
        "steps": trainer.state.global_step,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "dev_mode": settings["dev_mode"],
        "dev_history": history,
        "loss_history": [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"]}
                         for h in trainer.state.log_history if "loss" in h],
        "lora_targets": targets,
        "linear_modules": linear_module_names(model.get_base_model()),
        "parameters": counts,
        "device": "cuda" if cuda else "cpu",
        "device_name": device_name(),
        "bf16": bf16,
        "load_in_4bit": bool(quantization.get("load_in_4bit")),
        "kbit_upcast": settings["kbit_upcast"],
        "gradient_checkpointing": bool(gradient_checkpointing),
        "use_liger_kernel": bool(trainer.args.use_liger_kernel),
        "padding_free": bool(trainer.args.padding_free),
        "resumed_from": str(resume) if resume else None,
        "nonfinite_steps": guard.skipped,
        "wall_time_s": round(time.time() - started, 1),
        "peak_gpu_gib": peak_gpu_gib(),
    }
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(best_dir, tmp)
    (tmp / "training_log.json").write_text(json.dumps(training_log, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("%s: kept epoch %d (dev %.1f%%) of %d; %d steps in %.0f s", phase, best["epoch"],
             100 * best["dev_accuracy"], len(history), trainer.state.global_step, training_log["wall_time_s"])
    return training_log
