"""Phase C: preference optimisation with a per-epoch schedule of betas and loss forms.

A ``DPOTrainer`` subclass swaps in :mod:`clarify.dpo_losses` at TRL's documented seam
(``compute_loss``) and reuses TRL's reference log-prob computation (``compute_ref_log_probs``).

Reference model: the policy starts as the Phase B adapter (or the previous round's), loaded
trainable; TRL then adds a frozen copy of it as a second adapter named ``ref`` and computes
reference log-probs with that adapter active. So the reference *is* the Phase B policy, and
one copy of the base weights serves both (``tests/test_dpo.py`` checks the reference log-probs
equal Phase B's).

``dr_drop_top``: the noise score of every pair (its DPO loss under the current model) is
computed once, at the start of each epoch that uses the Dr filter, and the score above which
the top ``drop_fraction`` of pairs lie becomes the threshold; during that epoch a pair whose
current loss is above the threshold contributes nothing. Once per epoch rather than per batch
because the seed's micro-batch is 2 pairs: dropping 15% of a batch of 2 drops nothing.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch

from .dpo_losses import LOSSES, drop_threshold, preference_loss, sigmoid_losses
from .errors import InputError
from .models import load_tokenizer
from .numerics import nonfinite_guard, nonfinite_summary, require_finite_parameters
from .training import load_for_training, precision, trainer_arguments

log = logging.getLogger(__name__)


def check_schedule(schedule: list[dict], where: str = "phase_c.schedule") -> list[dict]:
    """Each entry ``{beta > 0, loss in LOSSES}``; a bad entry is a one-line error naming it."""
    if not schedule:
        raise InputError(f"{where}: the schedule needs at least one epoch")
    for index, entry in enumerate(schedule):
        if entry.get("loss") not in LOSSES:
            raise InputError(f"{where}[{index}].loss: unknown loss {entry.get('loss')!r} "
                             f"(known: {', '.join(LOSSES)})")
        beta = entry.get("beta")
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta <= 0:
            raise InputError(f"{where}[{index}].beta: must be a number > 0, got {beta!r}")
    return schedule


def _trainer_class():
    from trl import DPOTrainer

    class ScheduledDPOTrainer(DPOTrainer):
        """DPO whose beta and loss form follow ``schedule`` epoch by epoch."""

        schedule: list[dict] = []
        cal_weight: float = 1.0
        dr_beta: float = 1.0
        drop_fraction: float = 0.15
        threshold: float = math.inf
        step_records: list[dict]
        last_log_probs: dict = {}

        def schedule_entry(self) -> dict:
            epoch = self.state.epoch or 0.0
            return self.schedule[min(int(epoch + 1e-6), len(self.schedule) - 1)]

        def policy_log_probs(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
            """Summed completion log-probs of chosen and rejected, as TRL computes them."""
            skip = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
            model_kwargs = {k: v for k, v in inputs.items() if k not in skip}
            model_kwargs["use_cache"] = False
            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
            seq_len = inputs["completion_mask"].size(1) - 1
            logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
            return logps.chunk(2, dim=0)

        def pair_log_probs(self, model, inputs):
            chosen, rejected = self.policy_log_probs(model, inputs)
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
            return chosen, rejected, ref_chosen, ref_rejected

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            entry = self.schedule_entry()
            chosen, rejected, ref_chosen, ref_rejected = self.pair_log_probs(model, inputs)
            # kept for the NaN guard's message; only inspected when a step is skipped (no sync here)
            self.last_log_probs = {"chosen": chosen.detach(), "rejected": rejected.detach(),
                                   "ref_chosen": ref_chosen.detach(), "ref_rejected": ref_rejected.detach()}
            threshold = self.threshold if entry["loss"] == "dr_drop_top" else math.inf
            result = preference_loss(entry["loss"], chosen, rejected, ref_chosen, ref_rejected, entry["beta"],
                                     cal_weight=self.cal_weight, dr_beta=self.dr_beta, threshold=threshold)
            mode = "train" if model.training else "eval"
            beta = entry["beta"]
            chosen_rewards = beta * result["h_w"].detach()
            rejected_rewards = beta * result["h_l"].detach()
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].append(chosen_rewards.mean().item())
            metrics["rewards/rejected"].append(rejected_rewards.mean().item())
            metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
            metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
            metrics["dropped_pairs"].append(float(result["dropped"]))
            metrics["beta"].append(float(beta))
            metrics["micro_batch_pairs"].append(float(chosen.numel()))
            loss = result["loss"]
            return (loss, None) if return_outputs else loss

        @torch.no_grad()
        def noise_scores(self) -> torch.Tensor:
            """Per-pair DPO loss of every training pair under the current model (the Dr noise score)."""
            entry = self.schedule_entry()
            was_training = self.model.training
            self.model.eval()
            scores = []
            for batch in self.get_train_dataloader():
                batch = self._prepare_inputs(batch)
                chosen, rejected, ref_chosen, ref_rejected = self.pair_log_probs(self.model, batch)
                scores.append(sigmoid_losses(chosen - ref_chosen, rejected - ref_rejected, entry["beta"]).float().cpu())
            if was_training:
                self.model.train()
            return torch.cat(scores)

    return ScheduledDPOTrainer


def _dr_callback(trainer_ref: dict):
    from transformers import TrainerCallback

    class DrThreshold(TrainerCallback):
        """Before each Dr-filter epoch, score every pair and set the drop threshold."""

        def on_epoch_begin(self, args, state, control, **kwargs):
            trainer = trainer_ref["trainer"]
            entry = trainer.schedule_entry()
            if entry["loss"] != "dr_drop_top":
                trainer.threshold = math.inf
                return control
            scores = trainer.noise_scores()
            trainer.threshold = drop_threshold(scores, trainer.drop_fraction)
            dropped = int((scores > trainer.threshold).sum())
            log.info("epoch %d (dr_drop_top): noise scores of %d pairs; threshold %.4f drops %d (%.0f%%)",
                     int(state.epoch + 1e-6) + 1, scores.numel(), trainer.threshold, dropped,
                     100 * dropped / max(1, scores.numel()))
            return control

    return DrThreshold()


def build_trainer(*, manifest: dict, student: dict, quantization: dict, settings: dict, pairs: list[dict],
                  init_adapter: str, work_dir: str | Path, progress: bool = True):
    """The scheduled DPO trainer for one round, policy and reference both ``init_adapter``."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig

    schedule = check_schedule(settings["schedule"])
    if not pairs:
        raise InputError("phase_c: the preference pair file is empty")
    cuda = torch.cuda.is_available()
    checkpointing, bf16 = precision(settings, "phase_c")
    tokenizer = load_tokenizer(manifest["path"])
    tokenizer.padding_side = "right"  # TRL's collator pads itself; keep the tokenizer's default out of its way
    from transformers import set_seed

    set_seed(settings["seed"])
    model = load_for_training(manifest, student, quantization, checkpointing)
    model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    dataset = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                                 for p in pairs])
    work_dir = Path(work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    steps = len(schedule) * math.ceil(len(dataset) / (settings["batch_size"] * settings["grad_accum"]))
    args = DPOConfig(**trainer_arguments(settings, work_dir, bf16=bf16, cuda=cuda, progress=progress),
                     num_train_epochs=len(schedule), beta=schedule[0]["beta"], save_strategy="no",
                     warmup_steps=math.ceil(settings["warmup_ratio"] * steps))
    trainer_ref: dict = {}
    guard = nonfinite_guard(
        "phase_c", describe=lambda: nonfinite_summary(**trainer_ref["trainer"].last_log_probs)
        or "log-probs finite: the NaN arose in the loss or in backward")
    trainer = _trainer_class()(model=model, ref_model=None, args=args, train_dataset=dataset,
                               processing_class=tokenizer, callbacks=[guard, _dr_callback(trainer_ref)])
    trainer_ref["trainer"] = trainer
    trainer.guard = guard
    trainer.schedule = schedule
    trainer.cal_weight = settings["cal_weight"]
    trainer.dr_beta = settings["dr_beta"]
    trainer.drop_fraction = settings["drop_fraction"]
    if "ref" not in trainer.model.peft_config:
        raise RuntimeError("TRL did not create the frozen 'ref' adapter; the reference would be the bare base model")
    return trainer


def train_dpo(*, manifest: dict, student: dict, quantization: dict, settings: dict, pairs: list[dict],
              init_adapter: str, output_dir: str | Path, work_dir: str | Path, progress: bool = True) -> dict:
    """Train one round of Phase C from ``init_adapter``; write the adapter and ``dpo_log.json``."""
    started = time.time()
    trainer = build_trainer(manifest=manifest, student=student, quantization=quantization, settings=settings,
                            pairs=pairs, init_adapter=init_adapter, work_dir=work_dir, progress=progress)
    schedule = trainer.schedule
    log.info("phase C: %d pairs, schedule %s, micro-batch %d pairs (dr_paper depends on it)",
             len(trainer.train_dataset), schedule, settings["batch_size"])
    trainer.train()
    require_finite_parameters(trainer.model, "phase_c")
    cuda = torch.cuda.is_available()
    steps = [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"],
              "beta": h.get("beta"), "learning_rate": h.get("learning_rate"), "chosen_reward": h.get("rewards/chosen"),
              "rejected_reward": h.get("rewards/rejected"), "margin": h.get("rewards/margins"),
              "implicit_accuracy": h.get("rewards/accuracies"), "dropped_pairs": h.get("dropped_pairs"),
              "micro_batch_pairs": h.get("micro_batch_pairs"), "grad_norm": h.get("grad_norm")}
             for h in trainer.state.log_history if "loss" in h and "rewards/margins" in h]
    dpo_log = {
        "init_adapter": init_adapter, "pairs": len(trainer.train_dataset), "schedule": schedule,
        "micro_batch_pairs": settings["batch_size"], "grad_accum": settings["grad_accum"],
        "learning_rate": settings["learning_rate"], "steps": steps,
        "reference": "frozen copy of the initial adapter ('ref' adapter, TRL)",
        "nonfinite_steps": trainer.guard.skipped,
        "device": "cuda" if cuda else "cpu", "bf16": trainer.args.bf16, "load_in_4bit": bool(quantization.get("load_in_4bit")),
        "wall_time_s": round(time.time() - started, 1),
    }
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(tmp, selected_adapters=["default"])
    (tmp / "dpo_log.json").write_text(json.dumps(dpo_log, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    if steps:
        log.info("phase C: margin %.4f -> %.4f, implicit accuracy %.2f -> %.2f over %d steps (%d skipped: "
                 "non-finite gradients)", steps[0]["margin"], steps[-1]["margin"], steps[0]["implicit_accuracy"],
                 steps[-1]["implicit_accuracy"], len(steps), len(trainer.guard.skipped))
    return dpo_log
