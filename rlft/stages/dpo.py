"""Direct preference optimisation from the SFT run: `make sft dpo`.

    rlft dpo --recipe recipes/customer_support/dpo.yaml

TRL's DPOTrainer on preference pairs, the built-in Harbor Goods pairs by default
(Rafailov et al. 2023, eq. 7; IPO, hinge, robust, APO and loss mixtures as TRL implements
them); KTOTrainer for `loss_type: [kto]`; the reference-free ORPO and SimPO of
trl.experimental for `[orpo]` and `[simpo]`.

The reference policy is exactly the SFT policy:
- full weights: the policy starts as the SFT model and the reference is a frozen copy of it
  (or no copy at all with `dpo.precompute_ref_log_probs`);
- LoRA / QLoRA: the parent's SFT adapter is merged into the base (in full precision, then
  quantized to 4-bit where the recipe says so), a new adapter trains on top, and the
  reference is that same model with the new adapter disabled: one copy of the weights.
At step 0 the loss is therefore ln 2 and the margins are 0 (tests/test_dpo.py).

Deliberate choices:
1. Rows that cannot train (a prompt longer than data.max_length) are refused before any
   compute, or counted, skipped and listed in the manifest with `dpo.skip_bad_rows`.
2. Likelihood displacement (Razin et al. 2025) is flagged when the validation chosen
   log-probability ends below the reference's, i.e. eval `rewards/chosen` < 0.
3. On CPU the log-probs project only the answers' positions onto the vocabulary, as TRL does on GPUs
   (rlft.stages.scored_positions_on_cpu, open for the whole stage): the same figures in less time.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from rlft import checkpoint, data, faults, models, runs
from rlft.config import DpoRecipe, fingerprint_dict, to_dict
from rlft.errors import InputError
from rlft.eval.budget import drift_budget
from rlft.stages import (
    group_by_length,
    last_evaluation,
    mean_train_loss,
    tokenizer_and_parent,
    trainer_kwargs,
)

PAIRWISE_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "apo_zero", "apo_down", "sft", "sigmoid_norm",
                   "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "discopop")


def too_long(tok, rows: list[dict], max_length: int) -> list[int]:
    """Indices of pairs whose prompt alone fills max_length: nothing of the answers would train."""
    if not rows:
        return []
    prompts = tok.apply_chat_template([r["prompt"] for r in rows], add_generation_prompt=True, tokenize=True,
                                      return_dict=False)
    return [i for i, p in enumerate(prompts) if len(p) >= max_length]


def unpaired(rows: list[dict]) -> list[dict]:
    """KTO's data: each pair becomes a desirable and an undesirable example."""
    out = []
    for r in rows:
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return out


def run(recipe: DpoRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    from datasets import Dataset

    cfg = recipe.dpo
    kto = cfg.loss_type == ["kto"]
    alone = cfg.loss_type in (["kto"], ["orpo"], ["simpo"])
    for loss in cfg.loss_type:
        if loss not in PAIRWISE_LOSSES and not alone:
            raise InputError(f"dpo.loss_type: unknown loss {loss!r}; known: {', '.join(PAIRWISE_LOSSES)}, "
                             f"or one of [kto], [orpo], [simpo] alone")
    if kto and recipe.train.group_by_length:  # TRL's KTOConfig trains in file order (train_sampling_strategy)
        raise InputError("dpo.loss_type [kto] estimates its KL term from each row's neighbours in a batch taken in "
                         "file order (TRL's KTOTrainer); train.group_by_length would reorder them: set "
                         "train.group_by_length: false (--set train.group_by_length=false)")
    # --- inputs: tokenizer, parent, data (all checked before anything is written) ---
    tok, tok_sha, parent_manifest = tokenizer_and_parent(recipe, "dpo")
    train_rows = data.load(recipe.data.train, "preference", recipe.seed, recipe.data.n_train,
                           recipe.data.system_prompt, recipe.data.augment, first_n=True, task=recipe.task)
    val_rows = (data.load(recipe.data.validation, "preference", recipe.seed, recipe.data.n_val,
                          recipe.data.system_prompt, task=recipe.task)
                if recipe.data.validation else [])
    skipped = []
    for name, rows in (("train", train_rows), ("validation", val_rows)):
        bad = too_long(tok, rows, recipe.data.max_length)
        if bad and not cfg.skip_bad_rows:
            source = recipe.data.train if name == "train" else recipe.data.validation
            raise InputError(f"{source}, row {bad[0] + 1}: the prompt does not fit in data.max_length="
                             f"{recipe.data.max_length} tokens ({len(bad)} such rows); raise data.max_length, "
                             f"shorten them, or set dpo.skip_bad_rows=true")
        skipped += [{"split": name, "row": i + 1} for i in bad]
        rows[:] = [r for i, r in enumerate(rows) if i not in set(bad)]
    data_sha = data.sha256_rows(train_rows + val_rows)
    inputs = {"stage": "dpo", "recipe": fingerprint_dict(recipe), "data": data_sha, "parent": parent_manifest["fingerprint"]}
    run_ = runs.start("dpo", out, inputs, force=force, resume=resume)
    if run_ is None:  # up to date
        return None
    t0 = time.time()

    trainer, budget = build_trainer(recipe, tok, train_rows, val_rows, run_.work)
    ckpt = run_.resume_from() if resume else None
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    faults.raise_if_faulted(trainer.rlft_guard, "dpo", run_.work)
    if budget:
        budget.restore(trainer.model)
    metrics = {"train_loss": mean_train_loss(trainer), "steps": result.global_step,
               "trainable_parameters": models.n_params(trainer.model, trainable_only=True)}
    warnings_ = []
    if val_rows:
        ev = _renamed(last_evaluation(trainer, budget) or trainer.evaluate(), "val")
        metrics.update(ev)
        # the same number of training pairs, scored the same way: the train/validation gap (TRL
        # cannot score a new dataset after training when the reference was precomputed, nor
        # with ORPO/SimPO, which prepare their data once)
        subset = train_rows[:len(val_rows)]
        unscorable = recipe.dpo.precompute_ref_log_probs or recipe.dpo.loss_type in (["orpo"], ["simpo"])
        train_ev = {} if unscorable else _renamed(trainer.evaluate(
            Dataset.from_list(unpaired(subset) if kto else subset), metric_key_prefix="train"), "train")
        metrics.update(train_ev)
        if "val/loss" in ev and "train/loss" in train_ev:
            metrics["train_val_gap"] = ev["val/loss"] - train_ev["train/loss"]
        chosen = ev.get("val/rewards/chosen")
        if chosen is not None and not math.isnan(chosen) and chosen < 0:
            warnings_.append(f"likelihood displacement: on validation pairs the chosen answers became less "
                             f"likely than under the SFT reference (rewards/chosen = {chosen:.4f})")
    for w in warnings_:
        runs.log(f"dpo: warning: {w}")

    # --- save ---
    if recipe.uses_lora:
        if runs.is_main_process():
            trainer.model.save_pretrained(str(run_.work / "adapter"))
        artifacts = {"adapter": "adapter/"}
    else:
        trainer.save_model(str(run_.work / "model"))
        artifacts = {"model": "model/"}
    if runs.is_main_process():
        tok.save_pretrained(str(run_.work / next(iter(artifacts.values()))))
        runs.atomic_write_json(run_.work / "train_log.json", trainer.state.log_history)
    metrics["train_minutes"] = round((time.time() - t0) / 60, 2)
    return run_.finish({
        "parent": recipe.parent, "model": recipe.model, "model_source": models.model_source(recipe.model),
        "tokenizer_sha256": tok_sha, "recipe": to_dict(recipe),
        "recipe_path": recipe_path,
        "data": {"name": recipe.data.train, "validation": recipe.data.validation, "sha256": data_sha,
                 "n_train": len(train_rows), "n_val": len(val_rows), "skipped_rows": skipped},
        "seed": recipe.seed, "metrics": metrics, "warnings": warnings_, "artifacts": artifacts,
        "budget": {"tripped": budget.tripped, "history": budget.history} if budget else None})


def _renamed(metrics: dict, split: str) -> dict:
    """TRL's evaluate() keys (eval_rewards/chosen, train_loss, ...) as val/rewards/chosen, train/loss, ..."""
    out = {}
    for k, v in metrics.items():
        name = k.split("_", 1)[1] if k.startswith(("eval_", "train_")) else k
        if "/" in name or name == "loss":
            out[f"{split}/{name}"] = v
    return out


def build_trainer(recipe: DpoRecipe, tok, train_rows: list[dict], val_rows: list[dict], work: Path):
    """TRL's DPO (or KTO, ORPO, SimPO) trainer on the parent's policy, with the reference it needs, and the budget."""
    from datasets import Dataset

    cfg = recipe.dpo
    kto = cfg.loss_type == ["kto"]
    # --- policy and reference: the SFT policy, once (LoRA) or twice (full weights) ---
    use_lora = recipe.uses_lora
    model = models.policy_for_training(recipe, recipe.parent)
    ref_model = None
    reference_free = cfg.loss_type in (["orpo"], ["simpo"])
    if not use_lora and not cfg.precompute_ref_log_probs and not reference_free:
        ref_model = models.policy_for_training(recipe, recipe.parent).eval().requires_grad_(False)
    peft_config = models.lora_config(recipe.lora) if use_lora else None
    budget = drift_budget(recipe, tok, model, reference=ref_model)
    guard = faults.NonFiniteGuard()
    callbacks = [budget] * bool(budget) + [guard, checkpoint.TrainerHooks()]

    # --- trainer ---
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(work / "logs")
    common = dict(**trainer_kwargs(recipe, work, bool(val_rows)), save_total_limit=2,
                  max_length=recipe.data.max_length, beta=cfg.beta)
    train_ds = Dataset.from_list(unpaired(train_rows) if kto else train_rows)
    eval_ds = Dataset.from_list(unpaired(val_rows) if kto else val_rows) if val_rows else None
    data_kw = dict(processing_class=tok, train_dataset=train_ds, eval_dataset=eval_ds, peft_config=peft_config,
                   callbacks=callbacks)
    if kto:
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(model=model, ref_model=ref_model, args=KTOConfig(**common), **data_kw)
    elif cfg.loss_type == ["orpo"]:  # reference-free: odds ratio added to the NLL (Hong et al. 2024)
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        trainer = ORPOTrainer(model=model, args=ORPOConfig(**common), **data_kw)
    elif cfg.loss_type == ["simpo"]:  # reference-free: length-normalised margin (Meng et al. 2024)
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        trainer = CPOTrainer(model=model, args=CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0), **data_kw)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, loss_type=cfg.loss_type, loss_weights=cfg.loss_weights,
                         label_smoothing=cfg.label_smoothing,
                         precompute_ref_log_probs=cfg.precompute_ref_log_probs)
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, **data_kw)
    if recipe.train.group_by_length:
        group_by_length(trainer, recipe)
    trainer.rlft_guard = guard
    return trainer, budget
