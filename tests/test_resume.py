"""Kill a stage with SIGKILL after a checkpoint, resume it, and get the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rlft import cli

SETS = ["lora.enabled=false", "data.n_train=48", "data.n_val=8", "train.max_steps=6", "train.save_steps=3", "train.batch_size=8",
        "train.logging_steps=1", "train.eval_steps=0", "train.early_stopping_patience=0", "eval.enabled=false",
        "train.learning_rate=0.005"]


def _args(stage, model_dir, out, extra=()):
    args = [stage, "--recipe", f"recipes/customer_support/{stage}.yaml", "--set", f"model={model_dir}",
            "--output-dir", str(out)]
    for s in SETS + list(extra):
        args += ["--set", s]
    return args


def _losses(run_dir):
    return [(e["step"], e["loss"]) for e in json.loads((run_dir / "train_log.json").read_text()) if "loss" in e]


def _weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, stage):
    extra = []
    if stage == "dpo":
        assert cli.main(_args("sft", tiny_model_dir, tmp_path / "sft", ["train.max_steps=2"])) == 0
        extra = [f"parent={tmp_path / 'sft'}"]
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "straight", extra)) == 0

    env = {**os.environ, "RLFT_KILL_AT_STEP": "5"}
    cmd = [sys.executable, "-m", "rlft.cli"] + _args(stage, tiny_model_dir, tmp_path / "killed", extra)
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = tmp_path / "killed.partial"
    assert (partial / "checkpoint-3").is_dir() and not (tmp_path / "killed").exists()

    # without --resume the interrupted attempt is neither reused nor thrown away
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "killed", extra)) == 2
    assert cli.main(_args(stage, tiny_model_dir, tmp_path / "killed", extra) + ["--resume"]) == 0

    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 6
    resumed, straight = _losses(tmp_path / "killed"), _losses(tmp_path / "straight")
    assert [s for s, _ in resumed] == [s for s, _ in straight] == list(range(1, 7))
    assert [v for _, v in resumed] == pytest.approx([v for _, v in straight], rel=1e-5)
    a, b = _weights(tmp_path / "killed"), _weights(tmp_path / "straight")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_same_seed_same_result(tiny_model_dir, tmp_path):
    for name in ("one", "two"):
        assert cli.main(_args("sft", tiny_model_dir, tmp_path / name, ["train.max_steps=3"])) == 0
    assert _losses(tmp_path / "one") == _losses(tmp_path / "two")
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert all(torch.equal(a[k], b[k]) for k in a)
