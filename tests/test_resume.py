"""Kill a stage with SIGKILL after a checkpoint, resume it, and get the uninterrupted run's result."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from rlft import cli
from tests import faulty_cli
from tests.conftest import cli_args

SETS = ["lora.enabled=false", "data.n_train=48", "data.n_val=8", "train.max_steps=6", "train.save_steps=3", "train.batch_size=8",
        "train.logging_steps=1", "train.eval_steps=0", "train.early_stopping_patience=0", "eval.enabled=false",
        "train.learning_rate=0.005"]


# base builds its own model: a 2-layer one on a little of the mixture
BASE_SETS = ["base.hidden_size=64", "base.intermediate_size=128", "base.num_layers=2", "base.num_heads=2",
             "base.vocab_size=600", "base.skill_chats=200", "base.harbor_chats=300", "base.context_length=64",
             "train.max_steps=6", "train.save_steps=3", "train.batch_size=8", "train.logging_steps=1",
             "train.eval_steps=0", "train.optim=adamw_torch"]


def _args(stage, model_dir, out, extra=()):
    sets = BASE_SETS if stage == "base" else [f"model={model_dir}"] + SETS
    return cli_args(stage, [*sets, *extra], out)


def _losses(run_dir):
    return [(e["step"], e["loss"]) for e in json.loads((run_dir / "train_log.json").read_text()) if "loss" in e]


def _weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("stage,fault", [("sft", "--kill-at-step"), ("sft", "--tear-save-at"),
                                         ("dpo", "--kill-at-step"), ("rm", "--kill-at-step"),
                                         ("base", "--kill-at-step")])
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, stage, fault):
    """Killed during step 5 (after checkpoint-3), or while writing checkpoint-6 (the torn save leaves
    the folder without its trainer_state.json): --resume ends where the uninterrupted run ends."""
    extra = []
    if stage == "dpo":
        assert cli.main(_args("sft", tiny_model_dir, tmp_path / "sft", ["train.max_steps=2"])) == 0
        extra = [f"parent={tmp_path / 'sft'}"]
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "straight", extra)) == 0

    step = 5 if fault == "--kill-at-step" else 6
    cmd = faulty_cli.command(fault, step, _args(stage, tiny_model_dir, tmp_path / "killed", extra))
    killed = subprocess.run(cmd, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = tmp_path / "killed.partial"
    assert (partial / "checkpoint-3" / "trainer_state.json").is_file() and not (tmp_path / "killed").exists()
    if fault == "--tear-save-at":
        torn = partial / "checkpoint-6"  # model saved, then killed writing training_args.bin
        assert (torn / "model.safetensors").is_file() and not (torn / "trainer_state.json").exists()
        assert (torn / "training_args.bin").read_bytes().endswith(b"torn")

    # without --resume the interrupted attempt is neither reused nor thrown away
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "killed", extra)) == 2
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "killed", extra) + ["--resume"]) == 0

    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 6
    # the manifest's figures mean the same for a resumed run: the loss over all 6 steps, not the resumed ones
    straight_manifest = json.loads((tmp_path / "straight" / "manifest.json").read_text())
    assert manifest["metrics"]["train_loss"] == pytest.approx(straight_manifest["metrics"]["train_loss"], rel=1e-5)
    resumed, straight = _losses(tmp_path / "killed"), _losses(tmp_path / "straight")
    assert [s for s, _ in resumed] == [s for s, _ in straight] == list(range(1, 7))
    assert [v for _, v in resumed] == pytest.approx([v for _, v in straight], rel=1e-5)
    a, b = _weights(tmp_path / "killed"), _weights(tmp_path / "straight")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_same_seed_same_result(tiny_model_dir, tmp_path):
    """The same recipe and seed twice (LoRA, whose A matrices are random, and the harness): the same
    losses, adapters and evaluation; another seed gives other adapters."""
    extra = ["lora.enabled=true", "train.max_steps=3", "eval.enabled=true", "eval.n_tasks=6", "eval.n_general=4",
             "eval.max_new_tokens=16"]
    for name, seed in (("one", 0), ("two", 0), ("other", 1)):
        assert cli.main(_args("sft", tiny_model_dir, tmp_path / name, extra + [f"seed={seed}"])) == 0
    assert _losses(tmp_path / "one") == _losses(tmp_path / "two")
    a, b, c = (load_file(str(tmp_path / n / "adapter" / "adapter_model.safetensors")) for n in ("one", "two", "other"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    evals = [json.loads((tmp_path / n / "eval.json").read_text()) for n in ("one", "two")]
    for ev in evals:
        del ev["run"], ev["eval_seconds"], ev["eval_timings"]  # where and how long: the only fields allowed to differ
    assert evals[0] == evals[1]
