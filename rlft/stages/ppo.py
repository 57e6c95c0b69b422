"""Proximal policy optimisation from the SFT run against a reward: `make sft rm ppo`.

    rlft ppo --recipe recipes/customer_support/ppo.yaml

PPO (Schulman et al. 2017, eq. 7 and 9) for language models as in Ziegler et al. 2019 and
"The N+ Implementation Details of RLHF with PPO" (Huang et al. 2024). Each update:
  1. rollout: sample a response to each of `rollout_batch_size` prompts (KV-cached decoding,
     temperature T, stop at EOS, `response_length` new tokens at most; rlft/actor_critic.py);
  2. score: the reward (reward_models/) reads the prompt and the response text; a response that
     never stopped loses `missing_eos_penalty`;
  3. log-probabilities of the sampled tokens under the policy (from the logits they were sampled
     from) and under the reference, and the values (one forward pass each), at temperature T;
  4. per-token rewards r_t = -beta * KL_t, plus the score on the last token; GAE(gamma, lambda);
     advantages whitened over the rollout;
  5. `ppo_epochs` passes over shuffled minibatches: clipped policy loss + vf_coef * clipped value
     loss, gradients accumulated over micro-batches, clipped, one optimizer step per minibatch.
The maths is in rlft/rl/core.py; this file is the loop.

One backbone in memory (rlft/actor_critic.py, every forward pass): the frozen SFT policy carries a
policy LoRA and a value LoRA with a scalar head; the reference is the same model with the adapters
disabled.

Deliberate deviations from TRL 1.12's PPOTrainer (shared/notes/ppo.md):
1. The score goes on the stop token itself, not one slot after it.
2. The penalty for a missing stop token checks the stop token that generation used.
3. Old log-probabilities come from the raw logits the tokens were sampled from (as TRL's), so the
   ratio at the first minibatch of an update is 1 up to the rounding of cached against uncached
   attention; padding never enters a statistic.
4. Exactly one optimizer step per minibatch; micro-batch losses are divided by the minibatch's
   token count, so accumulation equals the full-minibatch mean.
5. Gradients are clipped (train.max_grad_norm), AdamW eps is 1e-5, dropout is off in every pass.
6. The critic is a LoRA adapter + head on the shared backbone, not a full copy of the model;
   its head starts at zero (the N details) since a learned RM's head lives on another backbone.
   The adapter sits on the top quarter of the layers (ppo.value_layers), so in one process each
   value pass runs only those, from the hidden state the reference pass left under them.
7. Every random stream is seeded and checkpointed (torch, python, numpy; rlft/checkpoint.py), so
   resume is exact.
8. Under `accelerate launch` each process rolls out its own prompts and whitens its own
   advantages. With a DDP config every process holds the model and gradients are averaged by
   hand before every step; with an FSDP 2 config the backbone and adapters are sharded across
   the processes (rlft/distributed.py). DeepSpeed is refused.

Recipe keys: the batch sizes and schedule are in `ppo:`; from `train:` PPO reads learning_rate,
lr_scheduler, warmup_ratio, weight_decay, max_grad_norm, logging_steps, save_steps (in updates),
gradient_checkpointing and report_to. Its optimizer is torch's AdamW; the weights run in `dtype`
(4-bit with `quant`). A recipe that sets any other train key, or lora.enabled: false, is refused
(rlft/config.py, NOT_READ).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import get_scheduler

import reward_models
from rlft import actor_critic, checkpoint, data, distributed, faults, models, runs, tracking
from rlft.config import PpoRecipe, fingerprint_dict, to_dict
from rlft.errors import InputError, TrainingFault
from rlft.eval.budget import drift_budget
from rlft.eval.generate import generate
from rlft.rl import core
from rlft.stages import rl_prompts, tokenizer_and_parent


def run(recipe: PpoRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    cfg = recipe.ppo
    # --- inputs, all checked before anything is written ---
    fsdp = distributed.fsdp_settings()  # the launch itself was checked by the command line, for every stage
    tok, tok_sha, parent_manifest = tokenizer_and_parent(recipe, "ppo")
    rows, ids = rl_prompts(recipe, tok, cfg.response_length, "ppo.response_length")
    chats = [r["prompt"] for r in rows]
    reward = reward_models.load(cfg.reward, recipe.task)
    data_sha = data.sha256_rows(rows)
    inputs = {"stage": "ppo", "recipe": fingerprint_dict(recipe), "data": data_sha, "parent": parent_manifest["fingerprint"]}
    if not force and runs.up_to_date(out, inputs):  # before the model is built: nothing to do is instant
        return None
    model, value_head = actor_critic.build_policy(recipe, fsdp)
    _probe_reward(reward, cfg.reward, model, tok, chats[:4])
    run_ = runs.start("ppo", out, inputs, force=force, resume=resume)
    if run_ is None:  # up to date
        return None
    t0 = time.time()
    budget = drift_budget(recipe, tok, model)  # against the adapters-off model: no copy of the backbone
    history, samples = train(recipe, model, value_head, tok, chats, ids, reward, run_.work, resume, budget)
    if budget:
        budget.restore(model)  # a budget that stopped the run: the last weights measured inside it

    # --- save: the policy adapter where every stage keeps it, the value function beside it ---
    artifacts = actor_critic.save(model, value_head, tok, run_.work)
    if runs.is_main_process():
        runs.atomic_write_json(run_.work / "train_log.json", history)
        runs.atomic_write_json(run_.work / "samples.json", samples)
    last = history[-1] if history else {}
    first = history[0] if history else {}
    metrics = {"updates": len(history), "episodes": last.get("episodes", 0),
               "processes": distributed.world(), "weights_held_per_process": distributed.held_fraction(model),
               "trainable_parameters": sum(p.numel() for p in actor_critic.trainable(model, value_head)),
               "score_first": first.get("objective/scores"), "score_last": last.get("objective/scores"),
               "kl_last": last.get("objective/kl"),
               "kept_update": budget.tripped["kept_step"] if budget and budget.tripped else None,
               "train_minutes": round((time.time() - t0) / 60, 2)}
    return run_.finish({
        "parent": recipe.parent, "model": recipe.model, "model_source": models.model_source(recipe.model),
        "tokenizer_sha256": tok_sha, "recipe": to_dict(recipe),
        "recipe_path": recipe_path, "reward": cfg.reward,
        "data": {"name": recipe.data.train, "sha256": data_sha, "n_train": len(rows)},
        "seed": recipe.seed, "metrics": metrics, "warnings": [], "artifacts": artifacts,
        "budget": {"tripped": budget.tripped, "history": budget.history} if budget else None})


# --- one update: rollout, score, advantages --------------------------------------------------


@dataclass
class Rollout(actor_critic.Samples):
    """One update's experience: the samples and their passes (actor_critic.Samples: queries, query_mask,
    responses, last, has_stop, mask, logprobs, ref_logprobs, entropy, values, texts; B prompts, R
    response tokens) and what PPO makes of them. Per-token tensors are 0 after each response's last token."""

    kl: torch.Tensor  # (B, R) per-token KL estimate (ppo.kl_estimator) of policy against reference
    scores: torch.Tensor  # (B,) the reward's score of each response
    penalized_scores: torch.Tensor  # (B,) the score minus missing_eos_penalty where no stop token came
    raw_advantages: torch.Tensor  # (B, R) GAE before whitening
    advantages: torch.Tensor  # (B, R) GAE whitened over the rollout
    returns: torch.Tensor  # (B, R) raw advantages + values: the value function's targets
    time_rollout: float  # seconds: sampling and the reference and value passes
    time_score: float  # seconds: the reward


@torch.no_grad()
def rollout(model, value_head, tok, chats: list[list[dict]], ids: list[list[int]], reward, cfg,
            kl_coef: float) -> Rollout:
    """Sample, score and evaluate one batch of prompts: everything the PPO epochs need."""
    t0 = time.time()
    sampled = actor_critic.sample(model, value_head, tok, ids, cfg.response_length, cfg.temperature,
                                  cfg.forward_batch_size)
    t1 = time.time()
    mask, last = sampled.mask, sampled.last  # (B, R), (B,)
    try:
        raw = reward(chats, sampled.texts)
    except RuntimeError as e:
        raise TrainingFault(str(e)) from e
    time_score = time.time() - t1
    scores = torch.tensor(raw, dtype=torch.float32)  # (B,)
    penalized = scores.clone()  # (B,)
    if cfg.missing_eos_penalty is not None:
        penalized[~sampled.has_stop] -= cfg.missing_eos_penalty
    # --- rewards and advantages (Huang et al. 2024, details 8-11) ---
    kl = core.kl_per_token(sampled.logprobs, sampled.ref_logprobs, cfg.kl_estimator) * mask  # (B, R)
    rewards = core.assemble_rewards(kl, penalized, last, mask, kl_coef)  # (B, R)
    if cfg.whiten_rewards:
        rewards = core.masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = core.gae(rewards, sampled.values, mask, cfg.gamma, cfg.lam)  # (B, R)
    return Rollout(**vars(sampled), kl=kl, scores=scores, penalized_scores=penalized, raw_advantages=advantages,
                   advantages=core.masked_whiten(advantages, mask), returns=returns, time_rollout=t1 - t0,
                   time_score=time_score)


# --- the PPO epochs: clipped policy and value updates -----------------------------------------


def ppo_epochs(model, value_head, optimizer, batch: Rollout, cfg, max_grad_norm: float,
               gen: torch.Generator) -> dict:
    """`ppo_epochs` passes of shuffled minibatches over one rollout; one optimizer step per minibatch."""
    device = next(model.parameters()).device
    B, R = batch.responses.shape
    P = batch.queries.shape[1]
    policy_params = actor_critic.adapter_params(model, actor_critic.POLICY)
    value_params = actor_critic.adapter_params(model, actor_critic.VALUE) + list(value_head.parameters())
    stats = defaultdict(list)
    model.train()  # dropout is off (build_policy); train mode only turns on gradient checkpointing
    for _ in range(cfg.ppo_epochs):
        for minibatch in torch.randperm(B, generator=gen).split(B // cfg.mini_batches):
            n_tokens = batch.mask[minibatch].sum().clamp(min=1)  # the minibatch's tokens: accumulation = full mean
            for micro in minibatch.split(cfg.micro_batch_size):
                ids = torch.cat([batch.queries[micro], batch.responses[micro]], 1).to(device)  # (b, P+R)
                amask = torch.cat([batch.query_mask[micro], batch.mask[micro].long()], 1).to(device)  # (b, P+R)
                mask = batch.mask[micro].to(device)  # (b, R)
                # policy: forward and backward with only the policy adapter active
                actor_critic.use(model, actor_critic.POLICY)
                logits = actor_critic.policy_logits(model, ids, amask, R, cfg.temperature)  # (b, R, V)
                logprobs = core.logprobs_of(logits, ids[:, P:])  # (b, R)
                pg_loss, pg_stats = core.policy_loss(logprobs, batch.logprobs[micro].to(device),
                                                     batch.advantages[micro].to(device), mask, cfg.cliprange,
                                                     n_tokens)
                loss = pg_loss
                if cfg.entropy_coef:
                    loss = loss - cfg.entropy_coef * (core.entropy_of(logits) * mask).sum() / n_tokens
                loss.backward()
                # value: a separate forward and backward with the value adapter active
                actor_critic.use(model, actor_critic.VALUE)
                below = None if batch.below_values is None else batch.below_values[micro].to(device)
                values = actor_critic.values_of(model, value_head, ids, amask, R, below)  # (b, R)
                vf_loss, vf_stats = core.value_loss(values, batch.values[micro].to(device),
                                                    batch.returns[micro].to(device), mask, cfg.cliprange_value,
                                                    n_tokens)
                (cfg.vf_coef * vf_loss).backward()
                weight = float(mask.sum() / n_tokens)
                for k, v in pg_stats.items():
                    stats[f"policy/{k}"].append((float(v), weight))
                stats["val/clipfrac"].append((float(vf_stats["clipfrac"]), weight))
                stats["loss/policy"].append((float(pg_loss.detach()), 1.0))
                stats["val/loss"].append((float(vf_loss.detach()), 1.0))
            distributed.average_gradients(policy_params + value_params)
            gn_policy = distributed.clip_grad_norm(policy_params, max_grad_norm)
            gn_value = distributed.clip_grad_norm(value_params, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            stats["grad_norm/policy"].append((float(gn_policy), 1.0))
            stats["grad_norm/value"].append((float(gn_value), 1.0))
            stats["optimizer_steps"].append((1.0, 0.0))
    actor_critic.use(model, actor_critic.POLICY)
    model.eval()
    out = {}
    for k, v in stats.items():
        if k == "optimizer_steps":
            out[k] = len(v)
        elif k in ("loss/policy", "val/loss"):
            out[k] = sum(x for x, _ in v) / (cfg.ppo_epochs * cfg.mini_batches)  # per-minibatch loss, averaged
        else:
            out[k] = sum(x * w for x, w in v) / sum(w for _, w in v)
    out["policy/ratio_first"] = stats["policy/ratio_mean"][0][0]
    return out


def update_metrics(batch: Rollout, kl_coef: float) -> dict:
    """The rollout's figures, TRL's names where they mean the same thing."""
    mask = batch.mask
    kl_sum = batch.kl.sum(1)  # (B,)
    k3 = core.kl_per_token(batch.logprobs, batch.ref_logprobs, "k3") * mask  # (B, R)
    non_score = -kl_coef * kl_sum  # (B,)
    lengths = mask.sum(1).float()  # (B,)
    return {
        "objective/scores": float(batch.scores.mean()), "objective/scores_std": float(batch.scores.std()),
        "objective/scores_penalized": float(batch.penalized_scores.mean()),
        "objective/kl": float(kl_sum.mean()), "objective/kl_k3": float(k3.sum(1).mean()),
        "objective/kl_coef": kl_coef,
        "objective/entropy": float((-batch.logprobs).sum(1).mean()),  # TRL's: sampled tokens' NLL, summed
        "policy/entropy": float(core.masked_mean(batch.entropy, mask)),  # the full distribution's, per token
        "objective/non_score_reward": float(non_score.mean()),
        "objective/rlhf_reward": float((batch.penalized_scores + non_score).mean()),
        "val/explained_variance": float(core.explained_variance(batch.values, batch.returns, mask)),
        "val/mean": float(core.masked_mean(batch.values, mask)),
        "returns/mean": float(core.masked_mean(batch.returns, mask)),
        "advantages/raw_mean": float(core.masked_mean(batch.raw_advantages, mask)),
        "response/length_mean": float(lengths.mean()), "response/length_max": float(lengths.max()),
        "response/eos_rate": float(batch.has_stop.float().mean()),
        "time/rollout_s": batch.time_rollout, "time/score_s": batch.time_score,
    }


# --- the loop: updates, then what is kept of them (log, samples, budget, checkpoints) -------------


def prompt_batch(n_prompts: int, batch: int, update: int, seed: int) -> list[int]:
    """Indices of the prompts of update `update` (from 0): a fresh shuffle of all prompts per pass.
    A pure function of the update number, so a resumed run continues the same prompt stream."""
    out = []
    start = update * batch
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n_prompts)
        perm = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out += perm[offset:offset + batch - len(out)].tolist()
    return out


def train(recipe: PpoRecipe, model, value_head, tok, chats, ids, reward, work: Path, resume: bool,
          budget=None) -> tuple[list[dict], list[dict]]:
    """ppo.updates updates, each a rollout on this process's prompts and the clipped updates on it; returns
    the per-update figures and sample answers. A budget that trips with action stop ends the loop early."""
    cfg, tr = recipe.ppo, recipe.train
    rank, world = distributed.rank(), distributed.world()
    checkpoint.seed_process(recipe.seed)  # each process samples its own responses
    optimizer = actor_critic.make_optimizer(model, value_head, recipe)
    scheduler = get_scheduler(tr.lr_scheduler, optimizer, num_warmup_steps=int(tr.warmup_ratio * cfg.updates),
                              num_training_steps=cfg.updates)
    weights = actor_critic.named_trainable(model, value_head)
    state = {"update": 0, "kl_coef": cfg.kl_coef, "history": [], "samples": []}
    if resume and (ckpt := runs.latest_checkpoint(work)) is not None:
        state = checkpoint.load_training(ckpt, weights, optimizer, scheduler)
        runs.log(f"ppo: resuming from {ckpt.name} (update {state['update']} of {cfg.updates})")
    if budget is not None:
        budget.begin(model, str(work / "logs" / "budget"), runs.is_main_process(), "tensorboard" in tr.report_to)
    with tracking.Tracker(tr.report_to, str(work / "logs"), work.name.removesuffix(".partial"),
                          to_dict(recipe), enabled=runs.is_main_process()) as tracker:
        for update in range(state["update"] + 1, cfg.updates + 1):  # from 1
            prompts = prompt_batch(len(chats), cfg.rollout_batch_size, (update - 1) * world + rank, recipe.seed)
            try:
                batch = rollout(model, value_head, tok, [chats[i] for i in prompts], [ids[i] for i in prompts], reward,
                                cfg, state["kl_coef"])
            except TrainingFault as e:  # the reward failed on this update's answers
                raise TrainingFault(f"ppo: at update {update}, {e}; {faults.last_good(work)}. "
                                    f"Fix the reward and rerun with --resume.") from e
            t0 = time.time()
            train_stats = ppo_epochs(model, value_head, optimizer, batch, cfg, tr.max_grad_norm,
                                     torch.Generator().manual_seed(recipe.seed * 7919 + update - 1))
            scheduler.step()
            metrics = {"update": update, "episodes": update * cfg.rollout_batch_size * world,
                       **distributed.mean_over_processes({**update_metrics(batch, state["kl_coef"]), **train_stats}),
                       "time/update_s": time.time() - t0, "lr": scheduler.get_last_lr()[0]}
            faults.raise_if_not_finite(metrics, "ppo", f"update {update}", work)
            if cfg.kl_target is not None:  # the adaptive KL controller (Ziegler et al. 2019)
                state["kl_coef"] = core.adaptive_kl_coef(state["kl_coef"], metrics["objective/kl"], cfg.kl_target,
                                                         cfg.kl_horizon, cfg.rollout_batch_size)
            _record(state, metrics, batch, [chats[i] for i in prompts[:2]], tracker, cfg, tr.logging_steps)
            if budget is not None and update % recipe.budget.every == 0:
                metrics.update({f"budget/{k}": v for k, v in budget.check(model, update).items()})
                if budget.tripped and budget.action == "stop":
                    break
            state["update"] = update
            if update % tr.save_steps == 0 and update < cfg.updates:
                checkpoint.save_training(work, update, state, weights, optimizer, scheduler)
            checkpoint.step_end(update)  # a hook point for tests (rlft/checkpoint.py)
    distributed.check_in_sync(actor_critic.trainable(model, value_head), "ppo")
    return state["history"], state["samples"]


def _record(state: dict, metrics: dict, batch: Rollout, first_chats: list, tracker, cfg, logging_steps: int) -> None:
    """Keep an update's figures, send them to the trackers, show progress, and keep two of its answers
    every `sample_every` updates."""
    update = metrics["update"]
    state["history"].append(metrics)
    tracker.log(metrics, update)
    if update % logging_steps == 0 or update == 1:
        runs.log(f"ppo update {update}/{cfg.updates}: score {metrics['objective/scores']:.3f}  "
                 f"kl {metrics['objective/kl']:.3f}  len {metrics['response/length_mean']:.1f}  "
                 f"eos {metrics['response/eos_rate']:.2f}  clipfrac {metrics['policy/clipfrac']:.3f}  "
                 f"ev {metrics['val/explained_variance']:.2f}  "
                 f"({metrics['time/rollout_s']:.1f}+{metrics['time/update_s']:.1f} s)")
    if update == 1 and metrics["response/eos_rate"] < 0.9:
        _note_cut_answers(metrics["response/eos_rate"], cfg)
    if update % cfg.sample_every == 0 or update == 1:
        state["samples"] += [{"update": update, "prompt": chat[-1]["content"], "response": text, "score": float(score),
                              "kl": float(kl)}
                             for chat, text, score, kl in zip(first_chats, batch.texts[:2], batch.scores[:2],
                                                              batch.kl.sum(1)[:2])]


def _note_cut_answers(eos_rate: float, cfg) -> None:
    """Answers cut at response_length are scored cut (and penalised): PPO then learns to avoid
    whatever answers are long, right ones included. Found on the Harbor Goods task (README)."""
    cost = f" and lose ppo.missing_eos_penalty ({cfg.missing_eos_penalty})" if cfg.missing_eos_penalty else ""
    runs.log(f"ppo: note: {1 - eos_rate:.0%} of the first rollout's answers reached ppo.response_length "
             f"({cfg.response_length} tokens) without stopping; they are scored as cut{cost}, so PPO learns to "
             f"avoid long answers, right ones included. If the task's answers are longer, raise "
             f"ppo.response_length.")


# --- checks before the run -------------------------------------------------------------------


def _probe_reward(reward, spec, model, tok, chats: list[list[dict]]) -> None:
    """Score the SFT policy's greedy answers to a few prompts, so a broken reward (it raises, returns
    NaN or the wrong number of scores) stops the stage before anything is written."""
    texts = generate(models.Reference(model), tok, chats, max_new_tokens=16).texts
    try:
        reward(chats, texts)
    except RuntimeError as e:
        raise InputError(f"ppo.reward {spec!r} fails on the SFT policy's answers to the first prompts: {e}") from None
