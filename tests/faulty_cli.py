"""rlft's command line with a fault installed, for the tests that prove resume works:

    python -m tests.faulty_cli --kill-at-step N <rlft arguments>
    python -m tests.faulty_cli --tear-save-at N <rlft arguments>

--kill-at-step N kills the process with SIGKILL when step N (an optimizer step; a PPO update) is
done, as a power cut or an out-of-memory killer would. --tear-save-at N tears the checkpoint of
step N instead: its next torch.save writes the first bytes of a zip archive and the process is
killed there, mid-save. Both are hooks on rlft/checkpoint.py's STEP_END and BEFORE_SAVE, installed
in this process only (every process of an `accelerate launch -m tests.faulty_cli ...`).
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from rlft import checkpoint, cli


def kill_at(step: int):
    def hook(done: int) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def tear_save_at(step: int):
    def hook(saving: int) -> None:
        if saving != step:
            return

        def torn_save(obj, f, *args, **kwargs):
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04 torn")  # the start of a zip archive and nothing after it
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = torn_save

    return hook


def command(fault: str, step: int, rlft_args: list[str]) -> list[str]:
    """The command line that runs `rlft <rlft_args>` in a new process with the fault installed."""
    return [sys.executable, "-m", "tests.faulty_cli", fault, str(step), *rlft_args]


def main(argv: list[str]) -> int:
    fault, step, *rlft_args = argv
    if fault == "--kill-at-step":
        checkpoint.STEP_END.append(kill_at(int(step)))
    elif fault == "--tear-save-at":
        checkpoint.BEFORE_SAVE.append(tear_save_at(int(step)))
    else:
        raise SystemExit(f"usage: python -m tests.faulty_cli --kill-at-step N | --tear-save-at N <rlft arguments>; "
                         f"got {fault!r}")
    return cli.main(rlft_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
