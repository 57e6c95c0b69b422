"""The rm stage: both backbones train and are measured; learned rewards score text with their own tokenizer."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import reward_models
from rlft import cli
from rlft.rl.core import bradley_terry_loss
from tests.conftest import full_manifest


def test_bradley_terry_loss_hand_computed():
    """diffs 0 and ln 3: -log σ(0) = ln 2 = 0.693147; -log σ(ln 3) = -log(3/4) = 0.287682; mean 0.490415.
    A margin of ln 3 on the second pair brings it back to ln 2."""
    rc, rr = torch.tensor([0.0, math.log(3)]), torch.tensor([0.0, 0.0])
    assert bradley_terry_loss(rc, rr).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-6)
    assert bradley_terry_loss(rc, rr, torch.tensor([0.0, math.log(3)])).item() == pytest.approx(math.log(2), abs=1e-6)


def _rm(recipe, out, *extra):
    sets = ["data.n_train=48", "data.n_val=16", "train.max_steps=3", "train.batch_size=8", "train.logging_steps=1",
            "train.eval_steps=0", "train.save_steps=50", *extra]
    return cli.main(["rm", "--recipe", recipe, "--output-dir", str(out)] + [w for s in sets for w in ("--set", s)])


def test_policy_backbone_trains_and_is_measured(tiny_model_dir, tmp_path):
    """Three steps already rank most pairs right: held-out and training pair accuracy (16 pairs each) well
    above chance. Seeds 0-4 gave 0.875-0.94 held out and 0.75-0.94 on training pairs; a scorer that
    learned nothing reaches 12 of 16 held-out pairs 4% of the time."""
    assert _rm("recipes/customer_support/rm.yaml", tmp_path / "rm", f"model={tiny_model_dir}",
               "train.learning_rate=0.01") == 0
    ev = json.loads((tmp_path / "rm" / "eval.json").read_text())
    assert ev["pair_accuracy"] > 0.7 and ev["train_pair_accuracy"] > 0.6
    assert ev["pair_accuracy_by_kind"] and set(ev["pair_accuracy_by_kind"]) <= {"tone", "facts", "both", "padding",
                                                                                "other_intent"}
    for key in ("pair_accuracy", "margin_mean", "length_bias_pass", "train_val_gap", "bt_loss"):
        assert key in ev
    assert 0 <= ev["intent_probe_right_above_other"] <= 1
    trained = load_file(str(tmp_path / "rm" / "model" / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    changed = [k for k in base if k in trained and not torch.equal(base[k], trained[k])]
    assert changed and "score.weight" in trained


@pytest.fixture(scope="module")
def minilm_rm(tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "minilm"
    assert _rm("recipes/customer_support/rm_minilm.yaml", out, "train.learning_rate=1e-4") == 0
    return out


def test_minilm_backbone_trains_from_the_wheel(minilm_rm):
    from rlft.stages.reward import minilm_dir

    trained = load_file(str(minilm_rm / "model" / "model.safetensors"))
    original = load_file(str(minilm_dir() / "model.safetensors"))
    shared = [k for k in original if k in trained or f"bert.{k}" in trained]
    assert shared
    assert any(not torch.equal(original[k], trained.get(k, trained.get(f"bert.{k}"))) for k in shared)


def test_learned_reward_scores_with_its_own_tokenizer(minilm_rm, tiny_model_dir):
    from transformers import AutoTokenizer

    reward = reward_models.load(f"learned:{minilm_rm}")
    prompts = [[{"role": "user", "content": "Where is my order #12345?"}]] * 2
    scores = reward(prompts, ["Thank you! Standard shipping takes 3-5 business days.", "Not my problem."])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
    policy_tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert reward_models.one(f"learned:{minilm_rm}").tok.vocab_size != policy_tok.vocab_size


def test_ensemble_mean_and_disagreement(minilm_rm):
    ens = reward_models.one(f"ensemble:{minilm_rm},{minilm_rm}")
    prompts = [[{"role": "user", "content": "hi"}]]
    assert ens(prompts, ["hello"]) == pytest.approx(reward_models.one(f"learned:{minilm_rm}")(prompts, ["hello"]))
    assert ens.last_disagreement == [pytest.approx(0.0, abs=1e-6)]


def test_learned_reward_refuses_a_policy_run(tmp_path):
    from rlft import runs

    runs.start("sft", tmp_path / "sft", {}, False, False).finish(full_manifest({"artifacts": {"model": "model/"}}))
    with pytest.raises(ValueError, match="not a reward model"):
        reward_models.one(f"learned:{tmp_path / 'sft'}")
