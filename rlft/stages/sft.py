"""Supervised fine-tuning on chats: `make sft`.

    rlft sft --recipe recipes/customer_support/sft.yaml

TRL's SFTTrainer on conversational data (the Harbor Goods support chats by default):
full fine-tuning, LoRA, or QLoRA (4-bit NF4 base + LoRA); loss on the assistant's tokens
only; optional packing; selective fine-tuning (frozen embeddings, first N layers, named
modules); validation loss every N steps with early stopping; checkpoints for --resume.
The harness evaluates the run at the end (rlft/eval/harness.py).

Deliberate choices:
1. Plain prompt/completion rows are turned into chats so one chat template serves all data.
2. With early stopping the best checkpoint by validation loss is kept (load_best_model_at_end).
3. Assistant-only loss works with any chat template (`loss_path`): TRL's assistant masks need
   `{% generation %}` markers, which TRL adds to the templates it knows; any other template (ChatML,
   as SmolLM2's) trains each assistant turn as a prompt/completion row with completion-only loss,
   the same tokens (tests/test_templates.py).
4. On CPU the loss is one cross-entropy over the hidden states of the trained tokens only
   (`ReplyLossSFTTrainer`). TRL's fused head (trl/trainer/utils.py, `add_fused_lm_head`) projects
   only those positions as well while rlft.stages.scored_positions_on_cpu is open (rlft opens it for
   the whole stage; TRL alone projects prompt and padding too on CPU), but it works in tiles and
   recomputes them in the backward, and timed on SmolLM2 SFT steps it was the slower of the two.
   GPUs and packed rows keep TRL's loss.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from rlft import checkpoint, data, faults, models, runs
from rlft.config import SftRecipe, fingerprint_dict, to_dict
from rlft.errors import InputError
from rlft.eval.budget import drift_budget
from rlft.stages import group_by_length, last_evaluation, mean_train_loss, trainer_kwargs


def reply_nll(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL of the trained tokens (labels != -100) and the count of correct top-1 guesses,
    projecting only those positions' hidden states onto the vocabulary (transformers' `logits_to_keep`
    with a boolean (B, T) mask), so prompt and padding never get a (V,) row of logits."""
    targets = labels[:, 1:]  # (B, T-1): the logits at t predict token t+1
    keep = F.pad(targets != -100, (0, 1), value=False)  # (B, T) positions whose next token trains
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep,
                   use_cache=False).logits.float()  # (N, V)
    gold = targets[targets != -100]  # (N,)
    nll = F.cross_entropy(logits, gold, reduction="sum")
    return nll, (logits.argmax(-1) == gold).sum()


class ReplyLossSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with `reply_nll` as the loss where the model runs on CPU (deviation 4)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or self.args.packing or self.args.device.type != "cpu" or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        nll, correct = reply_nll(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        n = (inputs["labels"][:, 1:] != -100).sum()
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["mean_token_accuracy"].append((correct / n.clamp(min=1)).item())
        if mode == "train":  # the real (non-padding) tokens seen, num_tokens in the log, as TRL's own loss counts
            self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        loss = nll / torch.as_tensor(num_items_in_batch if num_items_in_batch is not None else n).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the count is global and DDP averages: as TRL's own loss
        return loss


def freeze(model, recipe: SftRecipe) -> list[str]:
    """Selective fine-tuning (full weights only): freeze what the recipe names; return the names."""
    cfg = recipe.sft
    frozen = []
    for name, p in model.named_parameters():
        layer = _layer_index(name)
        if ((cfg.freeze_embeddings and "embed_tokens" in name)
                or (layer is not None and layer < cfg.freeze_layers)
                or any(s in name for s in cfg.freeze_modules)):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a == "layers" and b.isdigit():
            return int(b)
    return None


def check_lengths(tok, rows: list[dict], max_length: int, source: str) -> None:
    """Refuse rows whose prompt alone fills max_length: they could not train on any answer."""
    for i, row in enumerate(rows):
        prompt = [m for m in row["messages"] if m["role"] != "assistant"][:1] or row["messages"][:1]
        n = len(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))
        if n >= max_length:
            raise InputError(f"{source}, row {i + 1}: the prompt is {n} tokens, not shorter than "
                             f"data.max_length={max_length}; raise data.max_length or shorten the row")


def loss_path(tok, assistant_only: bool) -> str:
    """How the loss is restricted to the replies: `assistant` (TRL's assistant masks: the template has
    `{% generation %}` markers or TRL knows how to add them), `completion` (every other template: each
    assistant turn becomes a prompt/completion row), or `all` (assistant_only_loss off)."""
    from trl.chat_template_utils import get_training_chat_template

    if not assistant_only:
        return "all"
    try:
        get_training_chat_template(tok)
    except ValueError:  # TRL: "patching is not supported for this template"
        return "completion"
    return "assistant"


def as_completions(rows: list[dict]) -> list[dict]:
    """Each assistant turn of each chat as a prompt/completion row: the prompt is everything before it,
    so every reply token is trained once and no other token is (multi-turn chats give several rows)."""
    return [{"prompt": row["messages"][:i], "completion": [m]}
            for row in rows for i, m in enumerate(row["messages"]) if m["role"] == "assistant" and i > 0]


def check_template(tok, rows: list[dict], model: str) -> None:
    """Refuse a chat template that renders a prompt differently alone than inside the full chat: the
    completion path could not tell where the reply starts."""
    row = rows[0]
    alone = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
    whole = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
    if list(whole[:len(alone)]) != list(alone):
        raise InputError(f"the chat template of {model} (its tokenizer_config.json or chat_template.jinja) renders a "
                         f"prompt differently alone than inside the whole chat, so the reply's tokens cannot be "
                         f"found for assistant-only loss; fix the template or set sft.assistant_only_loss=false")


def template_system_prompt(tok) -> str | None:
    """The system turn a chat template adds on its own to a chat that has none (SmolLM2's, Qwen2.5's), or None."""
    marker = "rlft-probe-message"
    text = tok.apply_chat_template([{"role": "user", "content": marker}], tokenize=False)
    before = text.split(marker)[0]
    return before.strip() if "system" in before.lower() else None


def run(recipe: SftRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig

    tr, cfg = recipe.train, recipe.sft
    # --- inputs: tokenizer, parent, data (all checked before anything is written) ---
    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    tok_sha = models.tokenizer_sha256(tok)
    parent_manifest = runs.check_parent(recipe.parent, recipe.model, tok_sha, "sft") if recipe.parent else None
    train_rows = data.load(recipe.data.train, "conversational", recipe.seed, recipe.data.n_train,
                           recipe.data.system_prompt, recipe.data.augment, first_n=True, task=recipe.task)
    val_rows = (data.load(recipe.data.validation, "conversational", recipe.seed, recipe.data.n_val,
                          recipe.data.system_prompt, task=recipe.task)
                if recipe.data.validation else [])
    check_lengths(tok, train_rows, recipe.data.max_length, recipe.data.train)
    path = loss_path(tok, cfg.assistant_only_loss)
    if path == "completion":
        train_rows, val_rows = as_completions(train_rows), as_completions(val_rows)
        check_template(tok, train_rows, recipe.model)
    injected = template_system_prompt(tok) if recipe.data.system_prompt is None else None
    if injected:
        runs.log(f"sft: note: the chat template of {recipe.model} adds a system turn of its own to every chat "
                 f"({injected[:100]!r}); set data.system_prompt to choose it ('' for an empty one)")
    use_lora = recipe.uses_lora
    if use_lora and (cfg.freeze_layers or cfg.freeze_embeddings or cfg.freeze_modules):
        raise InputError("sft.freeze_* selects weights for full fine-tuning; with LoRA only the adapter trains")
    data_sha = data.sha256_rows(train_rows + val_rows)
    inputs = {"stage": "sft", "recipe": fingerprint_dict(recipe), "data": data_sha,
              "parent": parent_manifest and parent_manifest["fingerprint"]}
    run_ = runs.start("sft", out, inputs, force=force, resume=resume)
    if run_ is None:  # up to date
        return None
    t0 = time.time()

    # --- model ---
    model = models.policy_for_training(recipe, recipe.parent)
    frozen = [] if use_lora else freeze(model, recipe)
    peft_config = models.lora_config(recipe.lora) if use_lora else None
    budget = drift_budget(recipe, tok, model)
    guard = faults.NonFiniteGuard()

    # --- train ---
    from datasets import Dataset

    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_.work / "logs")
    attention = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if cfg.packing and "flash" not in attention:
        runs.log(f"sft: note: packing puts each batch's chats in one padding-free row; with {attention} attention "
                 f"(not flash attention's per-chat kernels) the row is attended whole behind a block mask, which "
                 f"can cost more than the padding it saves (on CPU it does: bench/results.md, section 3)")
    early = tr.early_stopping_patience > 0 and bool(val_rows) and tr.eval_steps > 0
    args = SFTConfig(
        **trainer_kwargs(recipe, run_.work, bool(val_rows)), save_total_limit=2 if not early else None,
        load_best_model_at_end=early, metric_for_best_model="eval_loss" if early else None,
        max_length=recipe.data.max_length, packing=cfg.packing, assistant_only_loss=path == "assistant")
    trainer = ReplyLossSFTTrainer(
        model=model, args=args, processing_class=tok, peft_config=peft_config,
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        callbacks=[EarlyStoppingCallback(tr.early_stopping_patience)] * early + [budget] * bool(budget)
        + [guard, checkpoint.TrainerHooks()])
    if recipe.train.group_by_length:
        group_by_length(trainer, recipe)
    ckpt = run_.resume_from() if resume else None
    if ckpt:
        runs.log(f"sft: resuming from {ckpt}")
    untrained = tr.max_steps == 0  # a baseline: the starting model as a run (TrainCfg.max_steps)
    result = None if untrained else trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    faults.raise_if_faulted(guard, "sft", run_.work)
    if budget:
        budget.restore(trainer.model)
    metrics = {"train_loss": mean_train_loss(trainer) if result else None, "steps": result.global_step if result else 0,
               "trainable_parameters": models.n_params(trainer.model, trainable_only=True),
               "frozen_by_recipe": len(frozen), "loss_on": {"assistant": "assistant tokens (TRL's masks)",
                                                             "completion": "assistant tokens (completion rows)",
                                                             "all": "every token"}[path]}
    if val_rows:
        # the final weights' validation loss, as logged in training when it evaluated them (the last step, or
        # the best checkpoint that early stopping put back)
        metrics["eval_loss"] = (last_evaluation(trainer, budget) or trainer.evaluate())["eval_loss"]
        train_eval = trainer.evaluate(Dataset.from_list(train_rows[:len(val_rows)]), metric_key_prefix="train")
        metrics["train_eval_loss"] = train_eval["train_loss"]
        metrics["train_val_gap"] = metrics["eval_loss"] - metrics["train_eval_loss"]

    # --- save ---
    artifacts = {}
    if use_lora:
        if runs.is_main_process():
            trainer.model.save_pretrained(str(run_.work / "adapter"))
        artifacts["adapter"] = "adapter/"
    else:
        trainer.save_model(str(run_.work / "model"))
        artifacts["model"] = "model/"
    if runs.is_main_process():
        tok.save_pretrained(str(run_.work / ("adapter" if use_lora else "model")))
    if use_lora and cfg.merge_adapter and runs.is_main_process():
        # merged in full precision (not into 4-bit weights), loadable by plain transformers
        from peft import PeftModel

        start = models.starting_model(recipe.model, recipe.parent, dtype=recipe.dtype)
        merged = PeftModel.from_pretrained(start, str(run_.work / "adapter")).merge_and_unload()
        merged.save_pretrained(str(run_.work / "merged"), safe_serialization=True)
        tok.save_pretrained(str(run_.work / "merged"))
        artifacts["merged"] = "merged/"
    if runs.is_main_process():
        runs.atomic_write_json(run_.work / "train_log.json", trainer.state.log_history)
    metrics["train_minutes"] = round((time.time() - t0) / 60, 2)
    manifest = run_.finish({
        "parent": recipe.parent, "model": recipe.model, "model_source": models.model_source(recipe.model),
        "tokenizer_sha256": tok_sha, "recipe": to_dict(recipe),
        "recipe_path": recipe_path,
        "data": {"name": recipe.data.train, "validation": recipe.data.validation, "sha256": data_sha,
                 "n_train": len(train_rows), "n_val": len(val_rows)},
        "seed": recipe.seed, "metrics": metrics, "artifacts": artifacts,
        "budget": {"tripped": budget.tripped, "history": budget.history} if budget else None})
    return manifest
