"""Checkpoints of rlft's own training loop (PPO) and the random state of every process.

A checkpoint is the folder `checkpoint-<step>/` in the run's work folder (runs.Run.work):
    state.pt             the trained weights, whole, and the optimizer and scheduler (main process)
    rng-<rank>.pt        each process's random streams: torch, python, numpy and cuda
    trainer_state.json   the loop's own state (step, history), written last
It is written as `.checkpoint-<step>.tmp/` and renamed when whole, so a `checkpoint-*` folder with
its trainer_state.json, the only kind runs.latest_checkpoint resumes from, is never torn. The last
two are kept. Every file loads with torch.load(weights_only=True): tensors and numbers, no code.

The stages on transformers' Trainer (base, sft, dpo, rm, grpo) write the Trainer's own checkpoints,
which hold the same random streams per process (Trainer._save_rng_state) and end with its
trainer_state.json; they share runs.latest_checkpoint and the hook points below.

Hook points, for tests: every stage calls the functions in `BEFORE_SAVE` with the step number just
before it writes a checkpoint of that step, and those in `STEP_END` when a step (an optimizer step;
a PPO update) is done, after its checkpoint if it has one. rlft installs none. tests/faulty_cli.py
installs a SIGKILL and a torn save there, to prove that --resume continues exactly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from rlft import distributed, runs

BEFORE_SAVE: list[Callable[[int], None]] = []
"""Called with the step number just before a checkpoint of that step is written."""
STEP_END: list[Callable[[int], None]] = []
"""Called with the step number when the step is done, after its checkpoint if it has one."""


def before_save(step: int) -> None:
    for hook in BEFORE_SAVE:
        hook(step)


def step_end(step: int) -> None:
    for hook in STEP_END:
        hook(step)


class TrainerHooks(TrainerCallback):
    """The hook points under transformers' Trainer, which writes its checkpoint after on_step_end
    when `control.should_save` is set (by then by every callback before this one) and calls on_save after."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            before_save(state.global_step)
        else:
            step_end(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        step_end(state.global_step)


def seed_process(seed: int) -> None:
    """Seed torch, python and numpy with `seed` plus this process's rank: each process of a launch
    samples its own responses, and a single process is seeded with `seed` itself."""
    seed += distributed.rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's random streams, as tensors and numbers only so that they load with weights_only."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                      "cached": cached},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict) -> None:
    """Put back the random streams of `rng_state`."""
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save(work: Path, step: int, tensors: dict, state: dict) -> None:
    """Write checkpoint-<step>/ in `work`: `tensors` as state.pt, every process's random streams, and
    `state` (JSON) last; then drop all but the last two. Every process calls it; only the main
    process's `tensors` are written (gather sharded ones whole before, on every process)."""
    before_save(step)
    final, tmp = work / f"checkpoint-{step}", work / f".checkpoint-{step}.tmp"
    if runs.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    runs.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-{distributed.rank()}.pt")  # every process has its own random streams
    runs.wait_for_everyone()
    if runs.is_main_process():
        torch.save(tensors, tmp / "state.pt")
        runs.atomic_write_json(tmp / "trainer_state.json", state)
        os.replace(tmp, final)
        for old in sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))[:-2]:
            shutil.rmtree(old)  # keep the last two
    runs.wait_for_everyone()


def load(ckpt: Path) -> tuple[dict, dict]:
    """(tensors, state) of a checkpoint written by `save`, after restoring this process's random streams."""
    tensors = torch.load(ckpt / "state.pt", weights_only=True)  # never unpickle code from a checkpoint
    set_rng_state(torch.load(ckpt / f"rng-{distributed.rank()}.pt", weights_only=True))
    return tensors, json.loads((ckpt / "trainer_state.json").read_text())


def save_training(work: Path, step: int, state: dict, weights: dict[str, dict[str, torch.Tensor]],
                  optimizer: torch.optim.Optimizer, scheduler) -> None:
    """`save` a training loop: `weights` (groups of named parameters) and the optimizer's state are
    gathered whole when sharded, so a checkpoint is one file whatever the launch (every process
    calls this)."""
    tensors = {group: {n: distributed.full(p) for n, p in named.items()} for group, named in weights.items()}
    tensors.update(optimizer=distributed.full_optimizer_state(optimizer), scheduler=scheduler.state_dict())
    save(work, step, tensors, state)


def load_training(ckpt: Path, weights: dict[str, dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
                  scheduler) -> dict:
    """Put a `save_training` checkpoint back: the weights (laid out as each parameter is, a shard of
    it when sharded), the optimizer, the scheduler and the random streams; returns the loop state."""
    saved, state = load(ckpt)
    with torch.no_grad():
        for group, named in weights.items():
            for n, value in saved[group].items():
                named[n].copy_(distributed.like(named[n], value))
    distributed.load_optimizer_state(optimizer, saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return state
