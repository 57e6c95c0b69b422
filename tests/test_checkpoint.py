"""rlft/checkpoint.py: random streams come back exactly, a checkpoint is whole or absent, the last two
are kept, and the hook points fire where the resume tests (tests/faulty_cli.py) need them."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlft import checkpoint, runs
from rlft.stages import base, dpo, grpo, ppo, reward, sft  # noqa: F401  every stage imported: none installs a hook

pytestmark = pytest.mark.unit  # no model is trained


def _draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def test_the_random_streams_come_back_from_a_weights_only_checkpoint(tmp_path):
    """Save the streams, draw, save a checkpoint, draw again; loading it gives the second draws again."""
    checkpoint.seed_process(7)
    _draws()
    checkpoint.save(tmp_path, 1, {"w": torch.ones(2)}, {"update": 1})
    after = _draws()
    _draws()
    tensors, state = checkpoint.load(tmp_path / "checkpoint-1")  # torch.load(weights_only=True) inside
    assert _draws() == after
    assert torch.equal(tensors["w"], torch.ones(2)) and state == {"update": 1}


def test_trainer_state_is_written_last_and_the_last_two_are_kept(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, {}, {"update": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    assert json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text()) == {"update": 3}
    assert runs.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-3"


def test_a_save_killed_midway_leaves_only_a_temporary_folder(tmp_path, monkeypatch):
    """A BEFORE_SAVE hook that breaks torch.save (as faulty_cli's torn save does, without the SIGKILL):
    no checkpoint-2 appears, so resume takes checkpoint-1."""
    checkpoint.save(tmp_path, 1, {}, {"update": 1})

    def broken(obj, f, *args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(checkpoint, "BEFORE_SAVE", [lambda step: monkeypatch.setattr(torch, "save", broken)])
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, 2, {}, {"update": 2})
    assert not (tmp_path / "checkpoint-2").exists() and (tmp_path / ".checkpoint-2.tmp").is_dir()
    assert runs.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1"


def test_rlft_installs_no_hooks():
    assert checkpoint.STEP_END == [] and checkpoint.BEFORE_SAVE == []


def test_under_a_trainer_the_step_ends_after_its_checkpoint(monkeypatch):
    """transformers' Trainer saves after on_step_end when control.should_save, then calls on_save: a
    step with a checkpoint calls BEFORE_SAVE before it and STEP_END after it; any other, STEP_END alone."""
    calls = []
    monkeypatch.setattr(checkpoint, "BEFORE_SAVE", [lambda step: calls.append(("before_save", step))])
    monkeypatch.setattr(checkpoint, "STEP_END", [lambda step: calls.append(("step_end", step))])
    hooks = checkpoint.TrainerHooks()
    for step, save in ((1, False), (2, True)):
        state, control = SimpleNamespace(global_step=step), SimpleNamespace(should_save=save)
        hooks.on_step_end(None, state, control)
        if save:
            calls.append(("the trainer saves", step))
            hooks.on_save(None, state, control)
    assert calls == [("step_end", 1), ("before_save", 2), ("the trainer saves", 2), ("step_end", 2)]
