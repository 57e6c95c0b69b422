"""Fault injection for the tests that prove resume works: a real SIGKILL at a chosen step.

Set RLFT_KILL_AT_STEP=N and the stage kills its own process with SIGKILL at the end of
optimizer step N, as a power cut or an out-of-memory killer would. Unset, this does nothing.
"""

from __future__ import annotations

import os
import signal

from transformers import TrainerCallback


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def callbacks() -> list[TrainerCallback]:
    step = os.environ.get("RLFT_KILL_AT_STEP")
    return [KillAtStep(int(step))] if step else []
