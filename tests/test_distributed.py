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
from tests.conftest import cli_args

# Eight training rows and a global batch of eight: every step sees the same eight rows in both
# runs whatever order each sampler draws, so the comparison tests the data-parallel maths.
# SETS: what every stage here reads; ROWS: what sft and dpo, which train on stored rows, read besides.
SETS = ["data.n_train=8", "train.logging_steps=1", "train.save_steps=50", "eval.enabled=false",
        "train.learning_rate=0.005", "train.warmup_ratio=0"]
ROWS = ["lora.enabled=false", "data.n_val=8", "train.max_steps=4", "train.eval_steps=0",
        "train.early_stopping_patience=0"]


def _args(stage, model_dir, out, batch, extra=()):
    return cli_args(stage, [f"model={model_dir}", f"train.batch_size={batch}", *ROWS, *SETS, *extra], out)


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


@pytest.fixture(scope="module")
def lora_sft(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "sft"
    assert cli.main(_args("sft", tiny_model_dir, out, 8, ["lora.enabled=true", "lora.r=4"])) == 0
    return out


@pytest.mark.slow
def test_grpo_runs_under_two_processes(tiny_model_dir, lora_sft, tmp_path):
    """GRPO is TRL's: one run written, by rank 0, under the data-parallel launch."""
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = [f"model={tiny_model_dir}", "train.batch_size=4", *SETS, "lora.r=4", f"parent={lora_sft}", "data.n_train=32",
            "grpo.num_generations=4", "grpo.max_completion_length=8", "grpo.reward=house_tone", "train.max_steps=2"]
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlft.cli",
           *cli_args("grpo", sets, tmp_path / "grpo")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [m.parent.name for m in tmp_path.glob("grpo*/manifest.json")] == ["grpo"]
    assert json.loads((tmp_path / "grpo" / "manifest.json").read_text())["launch"] == {"engine": "ddp", "processes": 2}


# rlft's PPO under the two launches it supports: data parallel by hand, and sharded with FSDP 2
# (torch's fully_shard runs on CPUs with gloo; accelerate's FSDP for the TRL stages needs GPUs)
LAUNCH = {"ddp": ["--multi_gpu"], "fsdp": ["--config_file", "recipes/accelerate/fsdp.yaml"]}
PPO = ["lora.r=4", "data.n_train=32", "ppo.updates=3", "ppo.rollout_batch_size=4",
       "ppo.forward_batch_size=4", "ppo.micro_batch_size=2", "ppo.response_length=8", "ppo.reward=house_tone",
       "train.save_steps=1"]


def _launch_ppo(launch, model_dir, parent, out, kill=None, resume=False):
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    entry = ["tests.faulty_cli", "--kill-at-step", str(kill)] if kill else ["rlft.cli"]  # every process is killed
    cmd = [str(accelerate), "launch", *LAUNCH[launch], "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", *entry,
           *cli_args("ppo", [f"model={model_dir}", *SETS, *PPO, f"parent={parent}"], out), *(["--resume"] if resume else [])]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ppo_sharded_with_fsdp_matches_data_parallel(tiny_model_dir, lora_sft, tmp_path):
    """Under fsdp.yaml each process holds half the weights, and the run is the data-parallel one:
    the same per-update figures and, to float rounding, the same adapters."""
    from safetensors.torch import load_file

    for launch in LAUNCH:
        run = _launch_ppo(launch, tiny_model_dir, lora_sft, tmp_path / launch)
        assert run.returncode == 0, run.stderr[-3000:]
    manifests = {k: json.loads((tmp_path / k / "manifest.json").read_text()) for k in LAUNCH}
    assert manifests["ddp"]["launch"] == {"engine": "ddp", "processes": 2}
    assert manifests["fsdp"]["launch"] == {"engine": "fsdp", "processes": 2}
    assert all(m["metrics"]["episodes"] == 3 * 4 * 2 for m in manifests.values())  # every process's rollouts
    assert manifests["ddp"]["metrics"]["weights_held_per_process"] == 1.0
    assert 0.45 < manifests["fsdp"]["metrics"]["weights_held_per_process"] < 0.55
    logs = {k: json.loads((tmp_path / k / "train_log.json").read_text()) for k in LAUNCH}
    for key in ("objective/scores", "objective/kl", "val/loss", "grad_norm/policy", "grad_norm/value"):
        ddp, fsdp = [e[key] for e in logs["ddp"]], [e[key] for e in logs["fsdp"]]
        print(key, "ddp", ddp, "fsdp", fsdp)
        assert fsdp == pytest.approx(ddp, rel=1e-4, abs=1e-6), key
    assert logs["fsdp"][-1]["objective/kl"] > 0  # it trained
    for part in ("adapter_model.safetensors", "value/adapter_model.safetensors"):
        a, b = (load_file(str(tmp_path / k / "adapter" / part)) for k in LAUNCH)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("launch", list(LAUNCH))
def test_ppo_under_two_processes_resumes_exactly_after_a_kill(tiny_model_dir, lora_sft, tmp_path, launch):
    """Both processes are killed after the checkpoint of update 2; the resumed run ends with the
    adapters of the uninterrupted one (each process restores its own random streams; under FSDP
    the whole checkpoint is laid out again as the shards)."""
    from safetensors.torch import load_file

    assert _launch_ppo(launch, tiny_model_dir, lora_sft, tmp_path / "straight").returncode == 0
    assert _launch_ppo(launch, tiny_model_dir, lora_sft, tmp_path / "killed", kill=2).returncode != 0
    assert (tmp_path / "killed.partial" / "checkpoint-2" / "rng-1.pt").is_file()
    run = _launch_ppo(launch, tiny_model_dir, lora_sft, tmp_path / "killed", resume=True)
    assert run.returncode == 0, run.stderr[-3000:]
    for part in ("adapter_model.safetensors", "value/adapter_model.safetensors"):
        a, b = (load_file(str(tmp_path / r / "adapter" / part)) for r in ("straight", "killed"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("env,needle", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "without a GPU"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "pip install deepspeed"),
], ids=["fsdp-on-cpu", "deepspeed-missing"])
def test_a_launch_the_trainers_cannot_honour_here_is_refused(tiny_model_dir, tmp_path, capsys, monkeypatch, env,
                                                             needle):
    """accelerate would run an FSDP launch on CPUs as plain data parallel; say so and stop instead."""
    if torch.cuda.is_available() or (needle == "pip install deepspeed" and _has("deepspeed")):
        pytest.skip("this machine can honour the launch")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(_args("sft", tiny_model_dir, tmp_path / "sft", 8)) == 2
    assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None
