"""Phase C schedules: a list of epochs, each ``{beta, loss}``, or the name of a preset.

Light (no TRL import), so the workflow's rules can resolve a schedule while building the DAG.

* one preset per loss form (``sigmoid``, ``cal_batch_mean``, ``cal_paper``, ``dr_drop_top``,
  ``dr_paper``, ``rpo``): that loss in two epochs at beta 0.1, so a variant of the grid that
  changes only the loss form is ``{name: dr_paper, phase_c: {schedule: dr_paper}}``.
* ``rpo`` (the default, one of those): two epochs of DPO + NLL at beta 0.1. A standalone probe
  on Qwen2.5-Coder-1.5B (own correct vs own wrong reasoning, 980 pairs, lr 5e-6) reached a
  reward margin of 3.3 after 124 steps and kept answering both ways; in the pipeline (GPU run 6,
  docs/results/qwen1.5b/run6) lr 5e-6 left the policy where it was and dev picked 2e-5.
* ``seed``: the seed's schedule (warm-up beta 0.05 plain; two epochs beta 0.1
  ``cal_batch_mean``; one robust epoch ``dr_drop_top``). On Qwen2.5-Coder-1.5B with
  teacher-vs-draft pairs it collapsed to answering "yes" (margins 380-758,
  docs/results/qwen1.5b); kept so the collapse can be reproduced on purpose.
"""

from __future__ import annotations

from .errors import InputError

#: The loss forms of :data:`clarify.dpo_losses.LOSSES`, in its order, named here so that this module
#: needs no torch (a test keeps the two equal).
LOSS_FORMS = ("sigmoid", "cal_batch_mean", "cal_paper", "dr_drop_top", "dr_paper", "rpo")

SCHEDULE_PRESETS: dict[str, list[dict]] = {
    **{loss: [{"beta": 0.1, "loss": loss}, {"beta": 0.1, "loss": loss}] for loss in LOSS_FORMS},
    "seed": [{"beta": 0.05, "loss": "sigmoid"}, {"beta": 0.1, "loss": "cal_batch_mean"},
             {"beta": 0.1, "loss": "cal_batch_mean"}, {"beta": 0.1, "loss": "dr_drop_top"}],
}


def check_schedule(schedule: list[dict], where: str = "phase_c.schedule") -> list[dict]:
    """Each entry ``{beta > 0, loss in LOSSES}``; a bad entry is a one-line error naming it."""
    from .dpo_losses import LOSSES  # torch: only when a schedule is checked, not when the rules load

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


def resolve_schedule(schedule: str | list[dict], where: str = "phase_c.schedule") -> list[dict]:
    """The list of epochs for a preset name or an explicit list (checked either way)."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULE_PRESETS:
            raise InputError(f"{where}: unknown preset {schedule!r} (known: {', '.join(SCHEDULE_PRESETS)})")
        return [dict(entry) for entry in SCHEDULE_PRESETS[schedule]]
    return check_schedule([dict(entry) for entry in schedule], where)
