"""Numerical faults: stop a stage when its loss, gradients or weights stop being finite, before a
bad checkpoint is written; the checkpoints already written are good, and the message names the last.

The stages on transformers' Trainer install `NonFiniteGuard` and call `raise_if_faulted` after
training; rlft's own PPO loop checks every logged figure with `raise_if_not_finite`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from rlft.errors import TrainingFault
from rlft.runs import latest_checkpoint


class NonFiniteGuard(TrainerCallback):
    """Stop when the loss or the weights stop being finite, before a bad checkpoint is written.

    The logged loss is checked at every logging step (the stages turn off transformers' NaN
    filter so a NaN reaches the log), and the weights are checked before every checkpoint.
    After a fault the stage raises TrainingFault; the checkpoints already written are good.
    """

    def __init__(self):
        self.fault: dict | None = None

    def _stop(self, control, step: int, what: str, value) -> None:
        self.fault = self.fault or {"step": step, "what": what, "value": str(value)}
        control.should_training_stop = True
        control.should_save = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                self._stop(control, state.global_step, key, value)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save and model is not None:
            if not all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad):
                self._stop(control, state.global_step, "weights", "non-finite")


def raise_if_faulted(guard: NonFiniteGuard, stage: str, work: Path) -> None:
    if guard.fault is None:
        return
    f = guard.fault
    last = latest_checkpoint(work)
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    raise TrainingFault(f"{stage}: the {f['what']} became {f['value']} at step {f['step']}, so training stopped "
                        f"and nothing was saved after it; {keep}. Lower train.learning_rate or "
                        f"train.max_grad_norm and rerun with --resume, or --force to start over.")


def last_good(work: Path) -> str:
    """Where a stopped run can resume from, for its message."""
    last = latest_checkpoint(work)
    return f"the last good checkpoint is {last}" if last else "no checkpoint was written"


def raise_if_not_finite(metrics: dict, stage: str, at: str, work: Path) -> None:
    """Stop when a figure logged `at` a step ("update 3") is not finite, before the step is checkpointed."""
    bad = next((f"{k} = {v}" for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)), None)
    if bad is not None:
        raise TrainingFault(f"{stage}: a non-finite value at {at} ({bad}), so training stopped and nothing was "
                            f"saved after it; {last_good(work)}. Lower train.learning_rate and rerun with "
                            f"--resume, or --force to start over.")
