"""Shared fixtures: a tiny model and tokenizer built in-process (no hub, no shipped weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with an rlft tokenizer trained on a little of the real mixture."""
    from rlft.config import load_recipe
    from rlft.stages import base

    recipe = load_recipe("base", None, ["base.hidden_size=64", "base.intermediate_size=128", "base.num_layers=2",
                                         "base.num_heads=2", "base.vocab_size=600", "base.skill_chats=200",
                                         "base.harbor_chats=300"])
    chats = base.mixture(recipe)[:1500]
    tok = base.train_tokenizer(chats, recipe.base.vocab_size)
    model = base.build_model(tok, recipe.base, seed=0)
    out = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RLFT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def tree(folder: Path) -> dict[str, int]:
    """Every file under a folder with its size: to prove nothing was written or changed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_args(stage: str, sets, out: Path | None = None) -> list[str]:
    """`rlft <stage>` arguments for the shipped customer-support recipe: one --set per setting."""
    args = [stage, "--recipe", f"recipes/customer_support/{stage}.yaml"]
    if out is not None:
        args += ["--output-dir", str(out)]
    for s in sets:
        args += ["--set", s]
    return args


@pytest.fixture(scope="session")
def sft_lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished SFT run (LoRA r 4, 3 steps) of the tiny model: the parent the RL stages start from."""
    from rlft import cli

    out = tmp_path_factory.mktemp("rl_parent") / "sft"
    sets = [f"model={tiny_model_dir}", "train.max_steps=3", "data.n_train=32", "data.n_val=8", "lora.r=4",
            "train.batch_size=8", "eval.enabled=false", "train.eval_steps=0"]
    assert cli.main(cli_args("sft", sets, out)) == 0
    return out


def full_manifest(fields: dict) -> dict:
    """A manifest with every field Run.finish requires (runs.STAGE_FIELDS), `fields` over placeholders:
    for tests that make run folders by hand."""
    return {"parent": None, "model": "rlft-tiny", "model_source": None, "tokenizer_sha256": None, "recipe": {}, "recipe_path": None,
            "data": {"name": "test", "sha256": "0" * 64, "n_train": 0}, "seed": 0, "metrics": {},
            "artifacts": {}, **fields}


def assert_adapter_moved_only_its_weights(run, parent) -> None:
    """The harness loads a LoRA run as its adapter merged into the parent's policy: its logits must move
    off the parent's, and every weight the adapter does not touch must be the parent's, bit for bit."""
    import torch
    from safetensors.torch import load_file

    from rlft import models

    policy, parent_policy = models.run_model(run), models.run_model(parent)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        assert not torch.allclose(policy(input_ids=ids).logits, parent_policy(input_ids=ids).logits, atol=1e-6)
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    adapted = {k.removeprefix("base_model.model.").split(".lora_")[0] + ".weight" for k in adapter}
    ours, theirs = policy.state_dict(), parent_policy.state_dict()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs if name not in adapted)


@pytest.fixture
def projected_rows(monkeypatch):
    """The number of positions each call of TRL's fused LM head (the log-probs of DPO, KTO, GRPO, RLOO and
    TRL's own SFT loss) projects onto the vocabulary, in call order; `projected_rows.every_position`
    lists the calls made while TRL's rule had the head project every position (its CPU path), and
    `projected_rows.training` those made with gradients on (a training step's, not a reference's or an
    evaluation's)."""
    import torch
    import trl.trainer.utils as fused

    class Rows(list):
        every_position: list[int]
        training: list[int]

    rows, head = Rows(), fused._ChunkedLogProbFunction
    rows.every_position, rows.training = [], []

    class Counted(head):
        @classmethod
        def apply(cls, hidden, *args):
            rows.append(hidden.shape[0])
            if not fused._use_triton(hidden.device):
                rows.every_position.append(len(rows) - 1)
            if torch.is_grad_enabled():
                rows.training.append(len(rows) - 1)
            return head.apply(hidden, *args)

    monkeypatch.setattr(fused, "_ChunkedLogProbFunction", Counted)
    return rows
