"""Phase C: preference optimisation with a per-epoch schedule of betas and loss forms.

TRL's shapes: :class:`ScheduledDPOConfig` extends ``DPOConfig`` with the schedule, the loss
settings and the dev-selection guard; :class:`ScheduledDPOTrainer` extends ``DPOTrainer`` at its
documented seam (``compute_loss``) with :mod:`clarify.dpo_losses`; the Dr threshold and the dev
check are ``TrainerCallback`` classes.

Reference model: the policy starts as the Phase B adapter (or the previous round's), loaded
trainable; TRL adds a frozen copy of it as a second adapter named ``ref``. Policy and reference
log-probs come from one function, :meth:`ScheduledDPOTrainer.completion_log_probs`, with the
adapter switched (``default`` or ``ref``); one copy of the base weights serves both, and at step
0 the two are equal (``tests/test_dpo.py``).

``dr_drop_top``: the noise score of every pair (its DPO loss under the current model) is
computed once, at the start of each epoch that uses the Dr filter, and the score above which
the top ``drop_fraction`` of pairs lie becomes the threshold; during that epoch a pair whose
current loss is above it contributes nothing. Once per epoch rather than per batch because the
seed's micro-batch is 2 pairs: dropping 15% of a batch of 2 drops nothing.

Dev selection (DESIGN section 7): before the first epoch (epoch 0 = the initial adapter) and
after every epoch, the adapter is saved under ``work_dir/epoch{n}`` and the dev split is scored
in ``dev_mode`` with :func:`clarify.evaluation.evaluate`, as Phases A and B do. The best epoch is
kept (ties: the earlier). A trained epoch whose dev accuracy falls more than ``max_dev_drop_pp``
below the best so far, or whose predicted-yes share leaves ``yes_share_band``, stops the run and
is never kept; epoch 0 always may be, so Phase C is never worse than its start on dev.

Resuming (DESIGN section 8): every epoch end is also a Trainer checkpoint in ``work_dir``
(adapter, optimizer, scheduler, RNG states; the trainer's own ``save_strategy="epoch"``), and the
dev history rides in its ``trainer_state.json`` (``DevSelectionCallback`` is an
``ExportableState``). The work directory carries a fingerprint of the settings, pairs, dev
questions and initial adapter (:mod:`clarify.resume`): a killed run, rerun unchanged, resumes
from its last complete epoch and ends with the same adapter and log as an uninterrupted run; a
rerun under other settings starts fresh with one log line.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerState
from transformers.trainer_callback import ExportableState
from trl import DPOConfig, DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from .dpo_losses import drop_threshold, preference_loss, sigmoid_losses
from .dpo_schedule import resolve_schedule
from .errors import InputError
from .evaluation import evaluate
from .models import device_name, load_tokenizer, peak_gpu_gib, reset_peak_gpu_memory
from .numerics import nonfinite_guard, nonfinite_summary, require_finite_parameters
from .resume import fingerprint, last_complete_checkpoint, open_work_dir, restore_callback_states
from .stats import accuracy
from .training import (CHECKPOINT_FILES, load_for_training, out_of_memory_explained, precision, rows_digest,
                       trainer_arguments)
from .training_speedups import resolve_liger

log = logging.getLogger(__name__)


@dataclass
class ScheduledDPOConfig(DPOConfig):
    """``DPOConfig`` plus the schedule, the loss settings and the dev-selection guard.

    ``schedule`` is a list of ``{beta, loss}`` (one per epoch) or a preset name
    (:data:`clarify.dpo_schedule.SCHEDULE_PRESETS`); it sets ``num_train_epochs`` and ``beta``.
    """

    schedule: list[dict] | str = "rpo"
    cal_weight: float = 1.0
    dr_beta: float = 1.0
    drop_fraction: float = 0.15
    rpo_alpha: float = 1.0
    dev_mode: str = "cot_sc"
    max_dev_drop_pp: float = 5.0
    yes_share_band: list[float] = field(default_factory=lambda: [0.25, 0.75])

    def __post_init__(self):
        self.schedule = resolve_schedule(self.schedule)
        low, high = self.yes_share_band
        if not 0 <= low <= high <= 1:
            raise InputError(f"phase_c.guard.yes_share_band: needs 0 <= low <= high <= 1, got {self.yes_share_band}")
        self.num_train_epochs = len(self.schedule)
        self.beta = self.schedule[0]["beta"]
        super().__post_init__()


class ScheduledDPOTrainer(DPOTrainer):
    """DPO whose beta and loss form follow ``args.schedule`` epoch by epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, ScheduledDPOConfig):
            raise TypeError("ScheduledDPOTrainer needs a ScheduledDPOConfig as args")
        self.threshold = math.inf
        self.last_log_probs: dict = {}
        self.add_callback(DrThresholdCallback(self))

    def schedule_entry(self) -> dict:
        schedule = self.args.schedule
        return schedule[min(int((self.state.epoch or 0.0) + 1e-6), len(schedule) - 1)]

    def completion_log_probs(self, model, inputs, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs of chosen and rejected under ``adapter`` (policy or reference)."""
        skip = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
        model_kwargs = {k: v for k, v in inputs.items() if k not in skip}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        with use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=adapter):
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = inputs["completion_mask"].size(1) - 1
        return outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)

    def compute_ref_log_probs(self, model, inputs):
        """The reference's log-probs: the same function as the policy's, with the ``ref`` adapter."""
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            return self.completion_log_probs(model, inputs, "ref")

    def pair_log_probs(self, model, inputs):
        chosen, rejected = self.completion_log_probs(model, inputs, "default")
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
        return chosen, rejected, ref_chosen, ref_rejected

    def describe_log_probs(self) -> str:
        """For the NaN guard's message: which of the last batch's log-probs were not finite."""
        return (nonfinite_summary(**self.last_log_probs)
                or "log-probs finite: the NaN arose in the loss or in backward")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        entry, args = self.schedule_entry(), self.args
        chosen, rejected, ref_chosen, ref_rejected = self.pair_log_probs(model, inputs)
        # kept for the NaN guard's message; only inspected when a step is skipped (no sync here)
        self.last_log_probs = {"chosen": chosen.detach(), "rejected": rejected.detach(),
                               "ref_chosen": ref_chosen.detach(), "ref_rejected": ref_rejected.detach()}
        chosen_tokens = inputs["completion_mask"][:, 1:].sum(dim=1).chunk(2, dim=0)[0]
        threshold = self.threshold if entry["loss"] == "dr_drop_top" else math.inf
        result = preference_loss(entry["loss"], chosen, rejected, ref_chosen, ref_rejected, entry["beta"],
                                 cal_weight=args.cal_weight, dr_beta=args.dr_beta, rpo_alpha=args.rpo_alpha,
                                 threshold=threshold, chosen_tokens=chosen_tokens)
        beta = entry["beta"]
        chosen_rewards, rejected_rewards = beta * result["h_w"].detach(), beta * result["h_l"].detach()
        metrics = self._metrics["train" if model.training else "eval"]
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
        metrics["nll/chosen"].append((-chosen.detach() / chosen_tokens.clamp(min=1)).mean().item())
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


class DrThresholdCallback(TrainerCallback):
    """Before each Dr-filter epoch, score every pair and set the trainer's drop threshold.

    Given the trainer at construction (as TRL's own ``SyncRefModelCallback`` and
    ``WinRateCallback`` are): the noise scores need its data loader and log-prob path.
    """

    def __init__(self, trainer: ScheduledDPOTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer.schedule_entry()["loss"] != "dr_drop_top":
            trainer.threshold = math.inf
            return control
        scores = trainer.noise_scores()
        trainer.threshold = drop_threshold(scores, args.drop_fraction)
        dropped = int((scores > trainer.threshold).sum())
        log.info("epoch %d (dr_drop_top): noise scores of %d pairs; threshold %.4f drops %d (%.0f%%)",
                 int(state.epoch + 1e-6) + 1, scores.numel(), trainer.threshold, dropped,
                 100 * dropped / max(1, scores.numel()))
        return control


class DevSelectionCallback(TrainerCallback, ExportableState):
    """Saves each epoch's adapter (epoch 0 = the initial one) and, given dev records, scores it.

    ``history`` holds one entry per epoch: dev accuracy, interval, predicted-yes share and, for
    an epoch the guard rejects, ``guard`` (the reason); the guard's stop ends training there.
    ``history`` and ``stop_reason`` are saved with every checkpoint (``state``); a run resumed
    with them restored does not score epoch 0 again.
    """

    def __init__(self, work_dir: Path, dev_records: list[dict] | None = None, eval_settings: dict | None = None,
                 tokenizer=None):
        self.work_dir = Path(work_dir)
        self.dev_records = dev_records
        self.eval_settings = eval_settings or {}
        self.tokenizer = tokenizer  # left-padding, as generation and scoring need (the trainer's pads right)
        self.history: list[dict] = []
        self.stop_reason: str | None = None

    def state(self) -> dict:
        return {"args": {}, "attributes": {"history": self.history, "stop_reason": self.stop_reason}}

    def epoch_dir(self, epoch: int) -> Path:
        return self.work_dir / f"epoch{epoch}"

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.history:  # else resumed: epoch 0 and the epochs up to the checkpoint are scored
            self.check(0, args, state, model)
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        reason = self.check(int(round(state.epoch)), args, state, model)
        if reason:
            self.stop_reason = reason
            control.should_training_stop = True
        return control

    def check(self, epoch: int, args, state, model) -> str | None:
        model.save_pretrained(self.epoch_dir(epoch), selected_adapters=["default"])
        entry = {"epoch": epoch, "step": state.global_step}
        self.history.append(entry)
        if not self.dev_records:
            return None
        was_training = model.training
        model.eval()
        settings = {**self.eval_settings, "batch_size": args.per_device_eval_batch_size}
        frame = evaluate(model, self.tokenizer, self.dev_records, args.dev_mode, settings, progress=False)
        if was_training:
            model.train()
        acc = accuracy(frame["correct"])
        entry.update(dev_accuracy=acc.accuracy, dev_ci=[acc.ci_low, acc.ci_high], dev_n=acc.n,
                     dev_pred_yes=float(frame["pred"].mean()) if len(frame) else 0.0)
        entry["guard"] = self.guard(entry, args) if epoch else None
        log.info("phase C epoch %d: dev %s accuracy %s, predicted yes %.1f%%%s", epoch, args.dev_mode, acc,
                 100 * entry["dev_pred_yes"], f"; guard: {entry['guard']}, stopping" if entry["guard"] else "")
        return entry["guard"]

    def guard(self, entry: dict, args) -> str | None:
        """Why this trained epoch is rejected (and training stops), or None."""
        best = max(h["dev_accuracy"] for h in self.history[:-1] if not h.get("guard"))
        drop_pp = 100 * (best - entry["dev_accuracy"])
        if drop_pp > args.max_dev_drop_pp:
            return (f"dev accuracy {100 * entry['dev_accuracy']:.1f}% is {drop_pp:.1f} pp below the best so far "
                    f"({100 * best:.1f}%; phase_c.guard.max_dev_drop_pp = {args.max_dev_drop_pp})")
        low, high = args.yes_share_band
        if not low <= entry["dev_pred_yes"] <= high:
            return (f"predicted-yes share on dev {100 * entry['dev_pred_yes']:.1f}% left the band "
                    f"[{100 * low:.0f}%, {100 * high:.0f}%] (phase_c.guard.yes_share_band)")
        return None

    def kept_epoch(self) -> int:
        """The best dev epoch the guard did not reject (ties: the earlier); the last one without dev."""
        if not self.dev_records:
            return self.history[-1]["epoch"]
        eligible = [h for h in self.history if not h.get("guard")]
        return max(eligible, key=lambda h: h["dev_accuracy"])["epoch"]


def dpo_config(settings: dict, work_dir: Path, steps: int, *, bf16: bool, cuda: bool,
               progress: bool) -> ScheduledDPOConfig:
    """The trainer's config from the ``phase_c`` settings."""
    guard = settings["guard"]
    return ScheduledDPOConfig(
        **trainer_arguments(settings, work_dir, bf16=bf16, cuda=cuda, progress=progress, phase="phase_c"),
        schedule=settings["schedule"], cal_weight=settings["cal_weight"], dr_beta=settings["dr_beta"],
        drop_fraction=settings["drop_fraction"], rpo_alpha=settings["rpo_alpha"], dev_mode=settings["dev_mode"],
        max_dev_drop_pp=guard["max_dev_drop_pp"], yes_share_band=list(guard["yes_share_band"]),
        per_device_eval_batch_size=settings["dev_batch_size"], save_strategy="epoch", save_total_limit=1,
        activation_checkpointing_kwargs={"use_reentrant": False},  # as load_for_training enables it
        warmup_steps=math.ceil(settings["warmup_ratio"] * steps))


def build_trainer(*, manifest: dict, student: dict, quantization: dict, settings: dict, pairs: list[dict],
                  init_adapter: str, work_dir: str | Path, dev_records: list[dict] | None = None,
                  eval_settings: dict | None = None, progress: bool = True) -> ScheduledDPOTrainer:
    """The scheduled DPO trainer for one round, policy and reference both ``init_adapter``.

    With ``dev_records`` every epoch is scored on dev (``eval_settings``: the generation
    settings of the dev mode); without, the last epoch is kept. ``work_dir`` keeps its
    checkpoints when they carry this run's fingerprint (:func:`work_fingerprint_params` and the
    initial adapter's files), else it is emptied; ``trainer.resume_from`` is its last complete
    checkpoint (None: a fresh start), with the callbacks' saved state already restored.
    """
    from datasets import Dataset
    from peft import PeftModel
    from transformers import set_seed

    schedule = resolve_schedule(settings["schedule"])
    if not pairs:
        raise InputError("phase_c: the preference pair file is empty")
    cuda = torch.cuda.is_available()
    settings = resolve_liger(settings, "phase_c")
    checkpointing, bf16 = precision(settings, "phase_c")
    tokenizer = load_tokenizer(manifest["path"])
    tokenizer.padding_side = "right"  # TRL's collator pads itself; keep the tokenizer's default out of its way
    set_seed(settings["seed"])
    model = load_for_training(manifest, student, quantization, checkpointing, settings["kbit_upcast"])
    model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    dataset = Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                                 for p in pairs])
    made_by = work_fingerprint_params(manifest=manifest, student=student, quantization=quantization,
                                      settings=settings, pairs=pairs, dev_records=dev_records,
                                      eval_settings=eval_settings)
    work_dir = open_work_dir(work_dir, fingerprint(made_by, [init_adapter]), made_by)
    steps = len(schedule) * math.ceil(len(dataset) / (settings["batch_size"] * settings["grad_accum"]))
    args = dpo_config(settings, work_dir, steps, bf16=bf16, cuda=cuda, progress=progress)
    trainer = ScheduledDPOTrainer(model=model, ref_model=None, args=args, train_dataset=dataset,
                                  processing_class=tokenizer)
    if "ref" not in trainer.model.peft_config:
        raise RuntimeError("TRL did not create the frozen 'ref' adapter; the reference would be the bare base model")
    trainer.guard = nonfinite_guard("phase_c", describe=trainer.describe_log_probs)
    trainer.dev_selection = DevSelectionCallback(work_dir, dev_records, eval_settings,
                                                 load_tokenizer(manifest["path"]) if dev_records else None)
    trainer.add_callback(trainer.guard)
    trainer.add_callback(trainer.dev_selection)
    trainer.resume_from = last_complete_checkpoint(work_dir, CHECKPOINT_FILES)
    if trainer.resume_from is not None:
        restore_callback_states(trainer, trainer.resume_from)
    return trainer


def work_fingerprint_params(*, manifest: dict, student: dict, quantization: dict, settings: dict,
                            pairs: list[dict], dev_records: list[dict] | None, eval_settings: dict | None) -> dict:
    """What a Phase C run's resumable state belongs to (hashed together with the initial adapter's files)."""
    return {"phase": "phase_c", "model": manifest, "student": student, "quantization": quantization,
            "settings": settings, "eval": eval_settings, "pairs_sha256": rows_digest(pairs),
            "dev_records_sha256": rows_digest(dev_records or [])}


def _step_records(trainer) -> list[dict]:
    keys = {"beta": "beta", "learning_rate": "learning_rate", "chosen_reward": "rewards/chosen",
            "rejected_reward": "rewards/rejected", "margin": "rewards/margins",
            "implicit_accuracy": "rewards/accuracies", "nll_chosen": "nll/chosen", "dropped_pairs": "dropped_pairs",
            "micro_batch_pairs": "micro_batch_pairs", "grad_norm": "grad_norm"}
    return [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"], **{k: h.get(v) for k, v in keys.items()}}
            for h in trainer.state.log_history if "loss" in h and "rewards/margins" in h]


def train_dpo(*, manifest: dict, student: dict, quantization: dict, settings: dict, pairs: list[dict],
              init_adapter: str, output_dir: str | Path, work_dir: str | Path, dev_records: list[dict] | None = None,
              eval_settings: dict | None = None, progress: bool = True) -> dict:
    """Train one round of Phase C from ``init_adapter``; write the kept epoch's adapter and ``dpo_log.json``."""
    started = time.time()
    reset_peak_gpu_memory()
    trainer = build_trainer(manifest=manifest, student=student, quantization=quantization, settings=settings,
                            pairs=pairs, init_adapter=init_adapter, work_dir=work_dir, dev_records=dev_records,
                            eval_settings=eval_settings, progress=progress)
    schedule, selection = trainer.args.schedule, trainer.dev_selection
    log.info("phase C: %d pairs, schedule %s, micro-batch %d pairs (dr_paper depends on it)%s",
             len(trainer.train_dataset), schedule, settings["batch_size"],
             f"; dev check in {settings['dev_mode']} mode on {len(dev_records)} questions" if dev_records
             else "; no dev check: the last epoch is kept")
    resume = trainer.resume_from
    if resume is not None and selection.stop_reason:
        # the guard had stopped this run: nothing is left to train, only the output to write
        log.info("phase C: %s: the run had stopped (%s); writing its kept epoch", resume, selection.stop_reason)
        trainer.state = TrainerState.load_from_json(str(resume / "trainer_state.json"))
    else:
        if resume is not None:
            log.info("phase C: resuming from %s (epoch %d done)", resume, selection.history[-1]["epoch"])
        with out_of_memory_explained("phase_c", settings):
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    require_finite_parameters(trainer.model, "phase_c")
    kept = selection.kept_epoch()
    steps = _step_records(trainer)
    dpo_log = {
        "init_adapter": init_adapter, "pairs": len(trainer.train_dataset), "schedule": schedule,
        "micro_batch_pairs": settings["batch_size"], "grad_accum": settings["grad_accum"],
        "learning_rate": settings["learning_rate"], "rpo_alpha": settings["rpo_alpha"], "steps": steps,
        "reference": "frozen copy of the initial adapter ('ref' adapter, TRL)",
        "dev_mode": settings["dev_mode"] if dev_records else None, "dev_history": selection.history,
        "epochs_run": len(selection.history) - 1, "kept_epoch": kept, "stop_reason": selection.stop_reason,
        "guard": settings["guard"], "nonfinite_steps": trainer.guard.skipped,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "device_name": device_name(), "bf16": trainer.args.bf16,
        "load_in_4bit": bool(quantization.get("load_in_4bit")), "kbit_upcast": settings["kbit_upcast"],
        "use_liger_kernel": bool(trainer.args.use_liger_kernel),
        "resumed_from": str(resume) if resume else None,
        "wall_time_s": round(time.time() - started, 1), "peak_gpu_gib": peak_gpu_gib(),
    }
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(selection.epoch_dir(kept), tmp)
    (tmp / "dpo_log.json").write_text(json.dumps(dpo_log, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    tmp.rename(output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    if steps:
        log.info("phase C: margin %.4f -> %.4f, implicit accuracy %.2f -> %.2f over %d steps (%d skipped: "
                 "non-finite gradients)", steps[0]["margin"], steps[-1]["margin"], steps[0]["implicit_accuracy"],
                 steps[-1]["implicit_accuracy"], len(steps), len(trainer.guard.skipped))
    log.info("phase C: kept epoch %d of %d%s", kept, dpo_log["epochs_run"],
             f" (stopped early: {selection.stop_reason})" if selection.stop_reason else "")
    return dpo_log
