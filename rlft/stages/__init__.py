"""One file per stage; each exposes `run(recipe, out, ...)`. The trainer arguments they share live here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from rlft import data, models, runs
from rlft.errors import InputError
from rlft.eval.generate import prompt_ids


def trainer_kwargs(recipe, work: Path, has_validation: bool) -> dict:
    """transformers/TRL TrainingArguments common to every stage, from the recipe's `train` section."""
    tr = recipe.train
    if "wandb" in tr.report_to:
        os.environ.setdefault("WANDB_PROJECT", "rlft")  # as rlft's PPO; transformers' own default is "huggingface"
    evaluate = has_validation and tr.eval_steps > 0
    return dict(
        output_dir=str(work), per_device_train_batch_size=tr.batch_size, per_device_eval_batch_size=tr.batch_size,
        gradient_accumulation_steps=tr.grad_accum, learning_rate=tr.learning_rate, num_train_epochs=tr.num_epochs,
        max_steps=tr.max_steps, warmup_steps=tr.warmup_ratio, lr_scheduler_type=tr.lr_scheduler,
        weight_decay=tr.weight_decay, max_grad_norm=tr.max_grad_norm, logging_steps=tr.logging_steps,
        optim=tr.optim, eval_strategy="steps" if evaluate else "no", eval_steps=tr.eval_steps if evaluate else None,
        save_steps=tr.save_steps, seed=recipe.seed, data_seed=recipe.seed, bf16=tr.bf16,
        gradient_checkpointing=tr.gradient_checkpointing, report_to=tr.report_to or "none",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False, use_liger_kernel=tr.liger_kernel,
        logging_nan_inf_filter=False)  # a NaN must reach the log, where faults.NonFiniteGuard sees it


def rl_prompts(recipe, tok, response_length: int, key: str) -> tuple[list[dict], list[list[int]]]:
    """The prompt-only rows an RL stage samples from and their token ids, after checking that every
    prompt leaves room for `response_length` new tokens in data.max_length (`key` names that setting)."""
    rows = data.load(recipe.data.train, "prompt_only", recipe.seed, recipe.data.n_train, recipe.data.system_prompt,
                     recipe.data.augment, first_n=True, task=recipe.task)
    ids = prompt_ids(tok, [r["prompt"] for r in rows])
    for i, p in enumerate(ids):
        if len(p) + response_length > recipe.data.max_length:
            raise InputError(f"{recipe.data.train}, row {i + 1}: the prompt is {len(p)} tokens, and with "
                             f"{key}={response_length} it does not fit in data.max_length="
                             f"{recipe.data.max_length}; shorten the prompt or raise data.max_length")
    return rows, ids


def tokenizer_and_parent(recipe, stage: str) -> tuple[object, str, dict]:
    """(tokenizer, its sha256, the parent's manifest) for a stage that continues from an SFT run;
    refuses a missing parent, an unfinished one, or one of another base model or tokenizer."""
    if recipe.parent is None:
        raise InputError(f"{stage} needs a parent SFT run: set `parent` in the recipe or run `make sft` first")
    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    tok_sha = models.tokenizer_sha256(tok)
    return tok, tok_sha, runs.check_parent(recipe.parent, recipe.model, tok_sha, stage)


def group_by_length(trainer, recipe) -> None:
    """train.group_by_length: batches of rows of similar length, so that less of each batch is padding.

    transformers' LengthGroupedSampler (megabatches of 50 batches, each sorted by length, in a shuffled
    order; Hugging Face's `group_by_length`) on the tokenized rows' lengths, the prompt and every answer
    together, so that DPO's and the reward model's pairs group as SFT's chats do (transformers infers
    lengths only from an `input_ids` column, which TRL's preference rows do not have). Its shuffle
    follows the recipe's seed and the epoch, so a resumed run sees the same batches.

    The trainer's evaluations in one process (validation, and DPO's and SFT's scoring of training rows for
    the train/validation gap; `predict` too) take their rows longest first, so that each batch holds rows of
    similar length too. A figure that is a mean over rows (DPO's rewards and accuracies, the reward trainer's
    accuracy) is the same in any order when every batch is full; one averaged over a batch's tokens (SFT's
    loss, DPO's NLL term in [sigmoid, sft]) weighs rows a little differently than in file order.
    """
    def sampler(dataset):
        return length_grouped_sampler(recipe, _lengths(dataset), int(trainer.state.epoch or 0))

    in_file_order = trainer._get_eval_sampler

    def eval_sampler(dataset):
        if dataset is None or trainer.args.world_size > 1:  # several processes: each takes its share in order
            return in_file_order(dataset)
        return longest_first(_lengths(dataset))

    trainer._get_train_sampler = sampler  # the hooks Trainer offers for the order of its rows
    trainer._get_eval_sampler = eval_sampler


def _lengths(dataset) -> list[int]:
    """Each tokenized row's length: the sum of its token columns (input_ids, prompt_ids, chosen_ids, ...)."""
    columns = [c for c in dataset.column_names if c.endswith("ids")]
    return [sum(len(row[c]) for c in columns) for row in dataset.select_columns(columns)]


def longest_first(lengths: list[int]) -> list[int]:
    """The order of an evaluation's rows under train.group_by_length (bench/padding.py counts it too)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def length_grouped_sampler(recipe, lengths: list[int], epoch: int):
    """The order of one epoch's training rows under train.group_by_length (bench/padding.py counts it too)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return LengthGroupedSampler(recipe.train.batch_size * recipe.train.grad_accum, lengths=lengths,
                                generator=torch.Generator().manual_seed(recipe.seed * 1_000 + epoch))


@contextlib.contextmanager
def scored_positions_on_cpu():
    """While open, TRL's fused LM head (trl/trainer/utils.py, `add_fused_lm_head`: the log-probs of DPO,
    KTO, GRPO and RLOO, and TRL's SFT loss on packed rows) projects onto the vocabulary only the
    positions whose next token it scores, on CPU as it does where its Triton kernel runs. Elsewhere TRL
    projects every position, prompt and padding included, and zeroes the extra rows, so that compilers
    such as Neuron's see fixed shapes; eager CPU gains nothing from them. Each scored row's figures
    are the same either way, up to fp32 rounding (tests/test_dpo.py).

    TRL reads that rule, `_use_triton`, from trl.trainer.utils on every call; the kernels keep their own
    copy, which picks Triton or torch tiles and stays as it is. The switch is a module global, so it
    holds for whatever runs while it is open: `rlft.cli` opens it around one stage (sft, dpo or grpo),
    from the building of its trainer (DPO's precomputed reference pass runs there) to its last step."""
    import trl.trainer.utils as fused

    triton_rule = fused._use_triton
    fused._use_triton = lambda device: device.type == "cpu" or triton_rule(device)
    try:
        yield
    finally:
        fused._use_triton = triton_rule


def mean_train_loss(trainer) -> float | None:
    """The training loss over every optimizer step of the run, from the logged losses (each weighted by
    the steps it covers). TrainOutput.training_loss is the mean over the steps this process trained
    (transformers' Trainer._finalize_training), so after --resume it would cover the resumed steps
    only; the log history is restored from the checkpoint, so this figure means the same either way."""
    last, total, steps = 0, 0.0, 0
    for entry in trainer.state.log_history:
        if "loss" in entry and "step" in entry and entry["step"] > last:
            total += entry["loss"] * (entry["step"] - last)
            steps += entry["step"] - last
            last = entry["step"]
    return total / steps if steps else None


def last_evaluation(trainer, budget=None) -> dict | None:
    """The validation metrics transformers logged for the weights the trainer holds after training, or None
    when it logged none for them (the caller evaluates): the last step's evaluation (transformers
    evaluates at the last step whenever eval_steps is set), or the best checkpoint's when
    load_best_model_at_end put that one back. None after a drift budget stopped training and restored
    earlier weights."""
    if budget is not None and budget.tripped and budget.action == "stop":
        return None
    state = trainer.state
    # the checkpoint put back is named by its step; best_global_step may be a later, better evaluation
    # that fell between saves and so was never a checkpoint (transformers' _save_checkpoint)
    best = trainer.args.load_best_model_at_end and state.best_model_checkpoint is not None
    step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[1]) if best else state.global_step
    return next((e for e in reversed(state.log_history) if "eval_loss" in e and e.get("step") == step), None)
