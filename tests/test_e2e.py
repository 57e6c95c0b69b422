"""The shipped rlft-tiny: it loads offline and answers; SFT then DPO run end to end on it."""

from __future__ import annotations

import json

import pytest

from rlft import cli, models
from rlft.eval.generate import generate
from tests.conftest import cli_args


def test_rlft_tiny_loads_offline_and_generates():
    tok = models.load_tokenizer("rlft-tiny")
    model = models.load_causal_lm("rlft-tiny")
    out = generate(model, tok, [[{"role": "user", "content": "hi, how are you?"}]], max_new_tokens=24)
    assert out.texts[0].strip() and out.n_tokens[0] > 0
    assert model.config.model_type == "llama" and 3e6 < models.n_params(model) < 6e6


@pytest.mark.slow
def test_sft_then_dpo_on_the_embedded_default(runs_dir):
    small = ["data.n_train=160", "data.n_val=32", "train.max_steps=10", "eval.n_tasks=22", "eval.n_general=8",
             "train.eval_steps=5", "train.save_steps=5"]
    for stage in ("sft", "dpo"):
        assert cli.main(cli_args(stage, small)) == 0
    sft, dpo = runs_dir / "customer_support" / "sft", runs_dir / "customer_support" / "dpo"
    manifest = json.loads((dpo / "manifest.json").read_text())
    assert manifest["parent"] == str(sft) and manifest["status"] == "complete"
    ev = json.loads((dpo / "eval.json").read_text())
    assert ev["n_tasks"] == 22 and ev["split"] == "test" and 0 <= ev["task_accuracy"] <= 1
    assert ev["kl_task"] > 0  # exact over the vocabulary: 0 only if DPO had left its parent's policy unchanged
    assert 0 <= ev["reward_mean"] <= 1  # harbor_facts, named in the recipe
    assert set(ev["probe_accuracy"]) == {"count_up", "count_down"}
    # the same command again is a no-op: same recipe, parent and data
    assert cli.main(["dpo", "--recipe", "recipes/customer_support/dpo.yaml"] +
                    [w for s in small for w in ("--set", s)]) == 0
    assert json.loads((dpo / "manifest.json").read_text())["finished_at"] == manifest["finished_at"]


def test_saved_run_reloads_with_the_same_logits(tmp_path, monkeypatch):
    """The portability check of bench/portability.py, both halves on this machine."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("portability", "bench/portability.py")
    portability = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(portability)
    portability.train(tmp_path)
    portability.check(tmp_path)
