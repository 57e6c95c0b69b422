"""Numerical faults: a NaN or infinite loss stops the stage with a clear message; good checkpoints stay."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from rlft import cli


def test_exploding_loss_stops_with_a_message_and_keeps_good_checkpoints(tiny_model_dir, tmp_path, capsys):
    sets = ["lora.enabled=false", "data.n_train=64", "data.validation=null", "train.max_steps=8",
            "train.batch_size=8", "train.save_steps=1", "train.logging_steps=1", "train.learning_rate=1e12",
            "train.max_grad_norm=1e12", "train.warmup_ratio=0", "eval.enabled=false"]
    args = ["sft", "--recipe", "recipes/customer_support/sft.yaml", "--set", f"model={tiny_model_dir}",
            "--output-dir", str(tmp_path / "sft")]
    code = cli.main(args + [w for s in sets for w in ("--set", s)])
    err = capsys.readouterr().err
    assert code == 3 and "became" in err and "--resume" in err, err
    assert not (tmp_path / "sft").exists()  # nothing looks finished
    for ckpt in (tmp_path / "sft.partial").glob("checkpoint-*"):
        weights = load_file(str(ckpt / "model.safetensors"))
        assert all(torch.isfinite(w).all() for w in weights.values()), ckpt
