"""Drift budgets during training: a tripped budget stops the stage and keeps weights inside it."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from rlft import cli
from tests.conftest import cli_args

SETS = ["lora.enabled=false", "data.n_train=64", "data.n_val=8", "train.max_steps=8", "train.batch_size=8", "train.eval_steps=0",
        "train.save_steps=50", "train.logging_steps=1", "train.learning_rate=0.01", "eval.enabled=false",
        "budget.every=2", "budget.samples=4", "eval.n_tasks=11"]


def _sft(model_dir, out, *extra):
    return cli.main(cli_args("sft", [f"model={model_dir}", *SETS, *extra], out))


def test_tripped_kl_budget_stops_and_keeps_the_last_weights_inside(tiny_model_dir, tmp_path):
    assert _sft(tiny_model_dir, tmp_path / "sft", "budget.max_kl_task=1e-9") == 0
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    tripped = manifest["budget"]["tripped"]
    assert tripped["budget"] == "max_kl_task" and tripped["step"] == 2 and tripped["kept_step"] == 0
    assert manifest["metrics"]["steps"] == 2
    saved = load_file(str(tmp_path / "sft" / "model" / "model.safetensors"))
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    assert all(torch.equal(saved[k], start[k]) for k in start)  # step 0 was the last inside the budget


def test_generous_budget_only_measures(tiny_model_dir, tmp_path):
    assert _sft(tiny_model_dir, tmp_path / "sft", "budget.max_kl_task=100", "budget.max_general_ppl_drift=100") == 0
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    assert manifest["budget"]["tripped"] is None and manifest["metrics"]["steps"] == 8
    assert [h["step"] for h in manifest["budget"]["history"]] == [2, 4, 6, 8]
    assert all(h["kl_ref_greedy"] > 0 for h in manifest["budget"]["history"])
    assert list((tmp_path / "sft" / "logs" / "budget").glob("events.out.tfevents.*"))  # in TensorBoard too


def test_warn_goes_on(tiny_model_dir, tmp_path):
    assert _sft(tiny_model_dir, tmp_path / "sft", "budget.max_kl_task=1e-9", "budget.action=warn") == 0
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    assert manifest["budget"]["tripped"]["action"] == "warn" and manifest["metrics"]["steps"] == 8
