"""GRPO and RLOO through TRL's trainers: LoRA and QLoRA on the SFT policy, the rlft rewards, the KL to
the reference logged even at beta 0, and bad rewards refused before anything is written."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch
from safetensors.torch import load_file

import reward_models
from rlft import cli
from tests import faulty_cli
from tests.conftest import assert_adapter_moved_only_its_weights, cli_args, tree

FAST = ["data.n_train=16", "train.batch_size=8", "grpo.num_generations=4", "grpo.max_completion_length=12",
        "train.max_steps=2", "train.logging_steps=1", "train.save_steps=50", "lora.r=4", "eval.enabled=false",
        "grpo.reward=house_tone", "budget.samples=4"]


def _args(model_dir, parent, out, *extra):
    return cli_args("grpo", [f"model={model_dir}", f"parent={parent}", *FAST, *extra], out)


def _letter_toy(prompts, completions):
    """0.25 for every letter 'e': dense, so the tiny model's answers to one prompt score differently
    and GRPO's group advantages are not all 0. (house_tone gave every answer in a group the same
    score: a zero gradient, an adapter left at B = 0 and a KL of exactly 0.)"""
    return [0.25 * c.count("e") for c in completions]


@pytest.mark.parametrize("extra", [
    ["grpo.algorithm=grpo", "grpo.beta=0.04"],
    ["grpo.algorithm=grpo", "grpo.beta=0.0", "quant.load_in_4bit=true"],
    ["grpo.algorithm=rloo", "grpo.beta=0.05"],
], ids=["grpo", "grpo-qlora-beta0", "rloo"])
def test_grpo_and_rloo_train_a_lora_and_log_the_kl(tiny_model_dir, sft_lora_run, tmp_path, monkeypatch, extra,
                                                   projected_rows):
    monkeypatch.setitem(reward_models.RULES, "letter_toy", _letter_toy)
    out = tmp_path / "run"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out, *extra, "grpo.reward=letter_toy")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "grpo" and manifest["metrics"]["steps"] == 2
    assert manifest["metrics"]["algorithm"] == extra[0].split("=")[1]
    log = json.loads((out / "train_log.json").read_text())
    ref_kl = [e["kl_ref/task"] for e in log if "kl_ref/task" in e]
    # measured after each step, even where TRL skips the reference (beta 0): the policy has moved
    assert len(ref_kl) == 2 and all(0 < k < math.inf for k in ref_kl)
    assert any("reward" in e for e in log)
    assert_adapter_moved_only_its_weights(out, sft_lora_run)
    assert projected_rows and projected_rows.every_position == []  # TRL's head saw the completions' positions only


def _nan_reward(prompts, completions):
    return [float("nan")] * len(completions)


def test_a_bad_reward_is_refused_before_anything_is_written(tiny_model_dir, sft_lora_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(reward_models.RULES, "_nan", _nan_reward)
    before = tree(tmp_path)
    for reward, needle in (("_nan", "returned nan"), ("nope", "unknown reward 'nope'")):
        assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "x", f"grpo.reward={reward}")) == 2
        assert needle in capsys.readouterr().err
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "x", "train.batch_size=6")) == 2
    assert "multiple of grpo.num_generations" in capsys.readouterr().err
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_grpo_sigkill_then_resume_matches_the_uninterrupted_run(tiny_model_dir, sft_lora_run, tmp_path):
    extra = ["train.max_steps=4", "train.save_steps=2"]
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "straight", *extra)) == 0
    killed = subprocess.run(faulty_cli.command("--kill-at-step", 3, _args(tiny_model_dir, sft_lora_run,
                                                                          tmp_path / "killed", *extra)),
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "killed.partial" / "checkpoint-2").is_dir()
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "killed", *extra) + ["--resume"]) == 0
    losses = [[e["loss"] for e in json.loads((tmp_path / r / "train_log.json").read_text()) if "loss" in e]
              for r in ("straight", "killed")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    a, b = (load_file(str(tmp_path / r / "adapter" / "adapter_model.safetensors")) for r in ("straight", "killed"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
