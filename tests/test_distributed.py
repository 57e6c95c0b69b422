"""`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo): one process's result, one manifest.

(`--cpu` would make accelerate start a single process; `--multi_gpu` on a machine without GPUs
starts torch.distributed with gloo.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlft import cli

# Eight training rows and a global batch of eight: every step sees the same eight rows in both
# runs whatever order each sampler draws, so the comparison tests the data-parallel maths.
SETS = ["lora.enabled=false", "data.n_train=8", "data.n_val=8", "train.max_steps=4", "train.logging_steps=1",
        "train.eval_steps=0", "train.save_steps=50", "train.early_stopping_patience=0", "eval.enabled=false",
        "train.learning_rate=0.005", "train.warmup_ratio=0"]


def _args(stage, model_dir, out, batch, extra=()):
    args = [stage, "--recipe", f"recipes/customer_support/{stage}.yaml", "--set", f"model={model_dir}",
            "--output-dir", str(out), "--set", f"train.batch_size={batch}"]
    for s in SETS + list(extra):
        args += ["--set", s]
    return args


def _losses(run_dir):
    return [e["loss"] for e in json.loads((run_dir / "train_log.json").read_text()) if "loss" in e]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_model_dir, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # DPO with the plain sigmoid loss: a mean over pairs, so two shards of 4 average to the batch of 8
    dpo_extra = [f"parent={tmp_path / 'one-sft'}", "dpo.loss_type=[sigmoid]", "train.learning_rate=0.001"]
    for stage, extra in (("sft", []), ("dpo", dpo_extra)):
        assert cli.main(_args(stage, tiny_model_dir, tmp_path / f"one-{stage}", 8, extra)) == 0
        cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlft.cli",
               *_args(stage, tiny_model_dir, tmp_path / f"two-{stage}", 4, extra)]
        two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert two.returncode == 0, two.stderr[-3000:]
        manifests = list(tmp_path.glob(f"two-{stage}*/manifest.json"))
        assert [m.parent.name for m in manifests] == [f"two-{stage}"]
        assert json.loads(manifests[0].read_text())["metrics"]["steps"] == 4
        one, two_ = _losses(tmp_path / f"one-{stage}"), _losses(tmp_path / f"two-{stage}")
        print(stage, "one process:", one, "two processes:", two_)
        assert len(one) == len(two_) == 4
        assert two_ == pytest.approx(one, rel=1e-4), (stage, one, two_)


@pytest.mark.slow
def test_ppo_and_grpo_run_under_two_processes(tiny_model_dir, tmp_path):
    """rlft's PPO averages gradients by hand (it checks at the end that both processes hold the same
    adapters); GRPO is TRL's. Each writes one run with every process's episodes counted."""
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert cli.main(_args("sft", tiny_model_dir, tmp_path / "sft", 8, ["lora.enabled=true", "lora.r=4"])) == 0
    rl = ["lora.enabled=true", "lora.r=4", f"parent={tmp_path / 'sft'}", "data.n_train=32"]
    stages = {"ppo": ["ppo.updates=2", "ppo.rollout_batch_size=4", "ppo.forward_batch_size=4", "ppo.micro_batch_size=4",
                      "ppo.response_length=8", "ppo.reward=house_tone", "train.save_steps=1"],
              "grpo": ["grpo.num_generations=4", "grpo.max_completion_length=8", "grpo.reward=house_tone",
                       "train.max_steps=2"]}
    for stage, extra in stages.items():
        cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlft.cli",
               *_args(stage, tiny_model_dir, tmp_path / stage, 4, rl + extra)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert [m.parent.name for m in tmp_path.glob(f"{stage}*/manifest.json")] == [stage]
        manifest = json.loads((tmp_path / stage / "manifest.json").read_text())
        if stage == "ppo":
            assert manifest["metrics"]["episodes"] == 2 * 4 * 2


@pytest.mark.slow
def test_ppo_under_two_processes_resumes_exactly_after_a_kill(tiny_model_dir, tmp_path):
    """Both processes are killed after the checkpoint of update 2; the resumed run ends with the
    adapters of the uninterrupted one (each process restores its own random streams)."""
    from safetensors.torch import load_file

    accelerate = Path(sys.executable).parent / "accelerate"
    assert cli.main(_args("sft", tiny_model_dir, tmp_path / "sft", 8, ["lora.enabled=true", "lora.r=4"])) == 0
    extra = ["lora.enabled=true", "lora.r=4", f"parent={tmp_path / 'sft'}", "data.n_train=32", "ppo.updates=3",
             "ppo.rollout_batch_size=4", "ppo.forward_batch_size=4", "ppo.micro_batch_size=4",
             "ppo.response_length=8", "ppo.reward=house_tone", "train.save_steps=1"]

    def launch(out, kill=None, resume=False):
        env = {**os.environ, "OMP_NUM_THREADS": "1", **({"RLFT_KILL_AT_STEP": str(kill)} if kill else {})}
        cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlft.cli",
               *_args("ppo", tiny_model_dir, out, 4, extra), *(["--resume"] if resume else [])]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    assert launch(tmp_path / "straight").returncode == 0
    assert launch(tmp_path / "killed", kill=2).returncode != 0
    assert (tmp_path / "killed.partial" / "checkpoint-2" / "rng-1.pt").is_file()
    run = launch(tmp_path / "killed", resume=True)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = (load_file(str(tmp_path / r / "adapter" / "adapter_model.safetensors")) for r in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
