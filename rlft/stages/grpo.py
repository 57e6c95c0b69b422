"""GRPO and RLOO from the SFT run against a reward, on TRL's trainers: `make sft grpo`.

    rlft grpo --recipe recipes/customer_support/grpo.yaml                 # GRPO
    rlft grpo --recipe recipes/customer_support/grpo.yaml --set grpo.algorithm=rloo

GRPO (Shao et al. 2024, eq. 3, with TRL's loss aggregations) and RLOO (Ahmadian et al. 2024):
each prompt gets `num_generations` sampled completions; a completion's advantage is its reward
against the group's (GRPO: group mean and std; RLOO: mean of the other completions). No value
function. The rewards are the same `reward_models/` functions PPO uses.

As in the other stages, the parent's SFT adapter is merged into the base (then quantized to
4-bit NF4 for QLoRA), a new LoRA adapter trains on it, and the reference is that same model with
the adapter disabled: the SFT policy, one copy of the weights.

Deliberate choices:
1. beta defaults to 0.04, not TRL's 0: the KL to the SFT policy is in the loss and in TRL's log.
2. Whatever beta is, rlft also measures the exact KL(reference || policy) per token on fixed
   task prompts every `train.logging_steps` steps and logs it as `kl_ref/task` (TRL skips the
   reference entirely at beta 0, so a user would otherwise not see the drift).
3. On CPU the log-probs project only the completions' positions onto the vocabulary, as TRL does on
   GPUs (rlft.stages.scored_positions_on_cpu, open for the whole stage): the same figures in less time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from transformers import TrainerCallback

import reward_models
from rlft import checkpoint, data, faults, models, runs
from rlft.config import GrpoRecipe, fingerprint_dict, to_dict
from rlft.errors import InputError, TrainingFault
from rlft.eval.budget import dev_task_chats, drift_budget
from rlft.eval.generate import generate, kl_on_answers
from rlft.stages import mean_train_loss, rl_prompts, tokenizer_and_parent, trainer_kwargs


def run(recipe: GrpoRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    cfg = recipe.grpo
    # --- inputs, all checked before anything is written ---
    tok, tok_sha, parent_manifest = tokenizer_and_parent(recipe, cfg.algorithm)
    rows, _ = rl_prompts(recipe, tok, cfg.max_completion_length, "grpo.max_completion_length")
    reward = trl_reward(cfg.reward, recipe.task)
    probe = [r["prompt"] for r in rows[:4]]
    try:
        reward(prompts=probe, completions=[[{"role": "assistant", "content": "Thank you for asking."}]] * len(probe))
    except RuntimeError as e:
        raise InputError(f"grpo.reward {cfg.reward!r} fails on the first prompts: {e}") from None
    data_sha = data.sha256_rows(rows)
    inputs = {"stage": "grpo", "recipe": fingerprint_dict(recipe), "data": data_sha, "parent": parent_manifest["fingerprint"]}
    run_ = runs.start("grpo", out, inputs, force=force, resume=resume)
    if run_ is None:  # up to date
        return None
    t0 = time.time()
    trainer, budget = build_trainer(recipe, tok, rows, reward, run_.work)
    ckpt = run_.resume_from() if resume else None
    try:
        result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    except RuntimeError as e:
        if str(e).startswith("reward "):
            raise TrainingFault(f"{cfg.algorithm}: {e}") from e
        raise
    faults.raise_if_faulted(trainer.rlft_guard, cfg.algorithm, run_.work)
    if budget:
        budget.restore(trainer.model)
    if runs.is_main_process():
        trainer.model.save_pretrained(str(run_.work / "adapter"))
        tok.save_pretrained(str(run_.work / "adapter"))
        runs.atomic_write_json(run_.work / "train_log.json", trainer.state.log_history)
    logged = [e for e in trainer.state.log_history if "reward" in e]
    metrics = {"train_loss": mean_train_loss(trainer), "steps": result.global_step, "algorithm": cfg.algorithm,
               "trainable_parameters": models.n_params(trainer.model, trainable_only=True),
               "reward_first": logged[0]["reward"] if logged else None,
               "reward_last": logged[-1]["reward"] if logged else None,
               "train_minutes": round((time.time() - t0) / 60, 2)}
    return run_.finish({
        "parent": recipe.parent, "model": recipe.model, "model_source": models.model_source(recipe.model),
        "tokenizer_sha256": tok_sha, "recipe": to_dict(recipe),
        "recipe_path": recipe_path, "reward": cfg.reward,
        "data": {"name": recipe.data.train, "sha256": data_sha, "n_train": len(rows)},
        "seed": recipe.seed, "metrics": metrics, "warnings": [], "artifacts": {"adapter": "adapter/"},
        "budget": {"tripped": budget.tripped, "history": budget.history} if budget else None})


def trl_reward(spec: str | dict[str, float], task: str):
    """A reward_models reward (of the recipe's task) with TRL's signature: completions arrive as assistant
    messages. TRL logs it under its function name: rewards/recipe_reward/mean."""
    reward = reward_models.load(spec, task)

    def recipe_reward(prompts, completions, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward(prompts, texts)

    return recipe_reward


class ReferenceKL(TrainerCallback):
    """Exact KL(reference || policy) per token on the reference's greedy answers to fixed task prompts,
    with the reference = the model with its adapter disabled; logged as kl_ref/task."""

    def __init__(self, tok, model, task_chats: list, every: int, max_new_tokens: int = 48):
        self.tok, self.every = tok, every
        gen = generate(models.Reference(model), tok, task_chats, max_new_tokens)
        self.prompts, self.responses = gen.prompt_ids, gen.response_ids

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        was_training = model.training
        model.eval()
        kl = kl_on_answers(models.Reference(model), model, self.prompts, self.responses, self.tok.pad_token_id)
        model.train(was_training)
        state.log_history.append({"step": state.global_step,
                                  "kl_ref/task": float(kl.sum()) / max(sum(map(len, self.responses)), 1)})


def build_trainer(recipe: GrpoRecipe, tok, rows: list[dict], reward, work: Path):
    """TRL's GRPOTrainer or RLOOTrainer on the parent's policy with a new (Q)LoRA adapter."""
    from datasets import Dataset

    cfg = recipe.grpo
    model = models.policy_for_training(recipe, recipe.parent)
    # one set of fixed prompts, and of the reference's greedy answers to them, for kl_ref/task and the budget
    task_chats = dev_task_chats(recipe)
    ref_kl = ReferenceKL(tok, model, task_chats, recipe.train.logging_steps)
    budget = drift_budget(recipe, tok, model, task_chats=task_chats, answers=(ref_kl.prompts, ref_kl.responses))
    guard = faults.NonFiniteGuard()
    callbacks = [ref_kl] + [budget] * bool(budget) + [guard, checkpoint.TrainerHooks()]
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(work / "logs")
    common = dict(**trainer_kwargs(recipe, work, False), save_total_limit=2, num_generations=cfg.num_generations,
                  max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, beta=cfg.beta,
                  num_iterations=cfg.num_iterations, epsilon=cfg.epsilon)
    kw = dict(model=model, reward_funcs=[reward], train_dataset=Dataset.from_list([{"prompt": r["prompt"]} for r in rows]),
              processing_class=tok, peft_config=models.lora_config(recipe.lora), callbacks=callbacks)
    if cfg.algorithm == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        trainer = GRPOTrainer(args=GRPOConfig(**common, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards), **kw)
    else:  # rloo, the only other algorithm the recipe accepts (checked once, by config.load_recipe)
        from trl import RLOOConfig, RLOOTrainer

        trainer = RLOOTrainer(args=RLOOConfig(**common), **kw)
    trainer.rlft_guard = guard
    return trainer, budget
