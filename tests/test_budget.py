"""Drift budgets during training: a tripped budget stops the stage and keeps weights inside it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerState

from rlft import cli, data
from rlft.eval import budget as budget_module
from rlft.eval.budget import drift_budget
from rlft.eval.generate import generate
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


BUDGET = ["budget.max_kl_task=100", "budget.max_general_ppl_drift=100", "budget.samples=4", "eval.n_tasks=11",
          "eval.enabled=false"]


def _storages(module: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in list(module.parameters()) + list(module.buffers())}


def _weights_held(obj) -> set[int]:
    """The storages of every model an object keeps among its attributes."""
    return set().union(*[_storages(v) for v in vars(obj).values() if isinstance(v, torch.nn.Module)])


def _lora_policy_and_measures(stage: str, model_dir, parent, work, monkeypatch):
    """A (Q)LoRA stage's trained model as the stage builds it, and the drift measures it builds beside it."""
    from peft import get_peft_model

    from rlft import actor_critic, models
    from rlft.config import load_recipe
    from rlft.stages import dpo, grpo, rl_prompts

    sets = [f"model={model_dir}", "lora.r=4", *BUDGET]
    recipe = load_recipe(stage, f"recipes/customer_support/{stage}.yaml",
                         sets + ([f"parent={parent}"] if stage != "sft" else ["lora.enabled=true"]))
    tok = models.load_tokenizer(str(model_dir))
    if stage == "sft":  # the budget is built before TRL's SFTTrainer adds the adapter in place, as here
        model = models.policy_for_training(recipe, None)
        budget = drift_budget(recipe, tok, model)
        return get_peft_model(model, models.lora_config(recipe.lora)), [budget]
    if stage == "dpo":
        trainer, budget = dpo.build_trainer(recipe, tok, data.load("harbor_pairs", "preference", 0, 8), [], work)
        return trainer.model, [budget]
    if stage == "grpo":
        rows, _ = rl_prompts(recipe, tok, recipe.grpo.max_completion_length, "grpo.max_completion_length")
        generations = []
        monkeypatch.setattr(grpo, "generate", lambda *a, **kw: generations.append(a) or generate(*a, **kw))
        monkeypatch.setattr(budget_module, "generate", lambda *a, **kw: generations.append(a) or generate(*a, **kw))
        trainer, budget = grpo.build_trainer(recipe, tok, rows[:8], grpo.trl_reward("house_tone", recipe.task), work)
        ref_kl = next(c for c in trainer.callback_handler.callbacks if isinstance(c, grpo.ReferenceKL))
        # kl_ref/task and the budget measure on one set of the reference's answers, generated once
        assert len(generations) == 1 and budget.responses is ref_kl.responses
        return trainer.model, [budget, ref_kl]
    model, _ = actor_critic.build_policy(recipe)
    return model, [drift_budget(recipe, tok, model)]


@pytest.mark.parametrize("stage", ["sft", "dpo", "grpo", "ppo"])
def test_under_lora_the_drift_measures_hold_no_copy_of_the_backbone(stage, tiny_model_dir, sft_lora_run, tmp_path,
                                                                    monkeypatch):
    """Under (Q)LoRA the reference every drift measure compares against (the budget's, GRPO's kl_ref/task)
    is the trained model with its adapters disabled: the measures keep no weights of their own, the
    reference they measure with is the policy's storages, and before the first step (every adapter's
    B = 0) the policy is its reference, KL exactly 0. The deep copy the budget once made fails here."""
    policy, measures = _lora_policy_and_measures(stage, tiny_model_dir, sft_lora_run, tmp_path, monkeypatch)
    budget = measures[0]
    assert budget.reference is None and all(_weights_held(m) == set() for m in measures)
    assert _storages(budget.reference_of(policy)) == _storages(policy)
    assert budget.measure(policy) == {"general_ppl_drift": 0.0, "kl_ref_greedy": 0.0}
    if stage == "grpo":
        state = TrainerState(global_step=0)
        measures[1].on_step_end(None, state, None, model=policy)
        assert state.log_history == [{"step": 0, "kl_ref/task": 0.0}]


def test_a_full_fine_tune_measures_against_one_frozen_copy(tiny_model_dir, sft_lora_run, tmp_path):
    """Every weight of a full fine-tune trains, so its reference needs weights of its own: SFT's budget
    makes the one frozen copy; DPO's uses the reference model DPO keeps anyway, not a third copy."""
    from rlft import models
    from rlft.config import load_recipe
    from rlft.stages import dpo

    tok = models.load_tokenizer(str(tiny_model_dir))
    recipe = load_recipe("sft", "recipes/customer_support/sft.yaml",
                         [f"model={tiny_model_dir}", "lora.enabled=false", *BUDGET])
    model = models.policy_for_training(recipe, None)
    budget = drift_budget(recipe, tok, model)
    assert _weights_held(budget).isdisjoint(_storages(model))
    assert len(_weights_held(budget)) == len(_storages(model))  # one copy of each weight
    assert not any(p.requires_grad for p in budget.reference.parameters())
    recipe = load_recipe("dpo", "recipes/customer_support/dpo.yaml",
                         [f"model={tiny_model_dir}", f"parent={sft_lora_run}", "lora.enabled=false", *BUDGET])
    trainer, budget = dpo.build_trainer(recipe, tok, data.load("harbor_pairs", "preference", 0, 8), [], tmp_path)
    assert budget.reference is trainer.ref_model
    assert _weights_held(budget) == _storages(trainer.ref_model)
