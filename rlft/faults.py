"""Fault injection for the tests that prove resume works: a real SIGKILL at a chosen step.

Set RLFT_KILL_AT_STEP=N and the stage kills its own process with SIGKILL at the end of
optimizer step N, as a power cut or an out-of-memory killer would. Set RLFT_KILL_IN_SAVE=N
and the checkpoint of step N is torn instead: its first `torch.save` writes a few bytes of
the file and the process is killed there, mid-save. Unset, both do nothing.
"""

from __future__ import annotations

import math
import os
import signal

import torch
from transformers import TrainerCallback


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        kill_if_asked(state.global_step, self.step)
        tear_save_if_asked(state.global_step)


def kill_if_asked(step: int, at: int | None = None) -> None:
    """SIGKILL this process at the end of step `at` (default: $RLFT_KILL_AT_STEP)."""
    at = at if at is not None else int(os.environ.get("RLFT_KILL_AT_STEP", "0") or 0)
    if at and step == at:
        os.kill(os.getpid(), signal.SIGKILL)


def tear_save_if_asked(step: int) -> None:
    """At step $RLFT_KILL_IN_SAVE, make the next torch.save write a torn file and SIGKILL the process."""
    at = int(os.environ.get("RLFT_KILL_IN_SAVE", "0") or 0)
    if not at or step != at:
        return

    def torn_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 torn")  # the start of a zip archive and nothing after it
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = torn_save


def callbacks() -> list[TrainerCallback]:
    step = os.environ.get("RLFT_KILL_AT_STEP")
    if step or os.environ.get("RLFT_KILL_IN_SAVE"):
        return [KillAtStep(int(step or 0))]
    return []



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



def raise_if_faulted(guard: NonFiniteGuard, stage: str, work) -> None:
    from rlft.errors import TrainingFault
    from rlft.runs import latest_checkpoint

    if guard.fault is None:
        return
    f = guard.fault
    last = latest_checkpoint(work)
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
    raise TrainingFault(f"{stage}: the {f['what']} became {f['value']} at step {f['step']}, so training stopped "
                        f"and nothing was saved after it; {keep}. Lower train.learning_rate or "
                        f"train.max_grad_norm and rerun with --resume, or --force to start over.")
