"""Drift budgets during training: measure drift every N steps, stop (or warn) when it trips.

A recipe's `budget:` section sets `max_general_ppl_drift` (perplexity on a fixed sample of
held-out chitchat against the reference's, minus 1) and/or `max_kl_task` (KL from the
reference to the policy per response token, exact over the vocabulary, on the reference's
greedy answers to a fixed sample of task prompts), measured every `budget.every`
steps. The reference is the model the stage started from (its parent policy). The KL is logged
as `kl_ref_greedy`: KL(reference || policy) on the reference's greedy answers, a different
quantity from eval.json's `kl_task` (KL(policy || parent) on the policy's samples). The task
prompts are the dev split's (`eval.dev_tasks`), never the test split the README reports.

When a budget trips with `budget.action: stop`, training stops and the weights are put
back to the last measurement that was inside every budget, so what the stage saves is
inside the budget. With `warn`, it is logged and training goes on. Either way the manifest
records which budget tripped, when, and at what value.
"""

from __future__ import annotations

import copy
import math

import torch
from transformers import TrainerCallback

from rlft import data, models, runs
from rlft.data import chitchat
from rlft.eval.generate import generate, kl_on_answers, sequence_nll


class DriftBudget(TrainerCallback):
    def __init__(self, tok, model, reference, general_chats: list, task_chats: list, every: int,
                 max_ppl_drift: float | None, max_kl_task: float | None, action: str, max_new_tokens: int = 48,
                 answers: tuple[list[list[int]], list[list[int]]] | None = None):
        """model: the policy the stage trains, before its first step; reference: the frozen model it is
        measured against, or None for `model` itself with its adapters disabled (see drift_budget).
        answers: (prompt ids, response ids) of the reference's greedy answers to task_chats, when the
        caller has them already (GRPO's kl_ref/task measures on the same ones)."""
        self.tok, self.every, self.action = tok, every, action
        self.max_ppl_drift, self.max_kl_task = max_ppl_drift, max_kl_task
        self.general, self.reference = general_chats, reference
        start = self.reference_of(model)
        self.ref_nll = sequence_nll(start, tok, general_chats)[0] if max_ppl_drift is not None else None
        if max_kl_task is not None and answers is not None:
            self.prompts, self.responses = answers
        elif max_kl_task is not None:
            gen = generate(start, tok, task_chats, max_new_tokens)
            self.prompts, self.responses = gen.prompt_ids, gen.response_ids
        self.history: list[dict] = []
        self.tripped: dict | None = None
        self.good_state: dict | None = None
        self.good_step = 0
        self.writer = None

    def reference_of(self, model):
        """The model drift is measured against: the frozen reference, or `model` with its adapters off."""
        return self.reference if self.reference is not None else models.Reference(model)

    def measure(self, model) -> dict:
        out = {}
        was_training = model.training
        if self.max_ppl_drift is not None:
            nll = sequence_nll(model, self.tok, self.general)[0]
            out["general_ppl_drift"] = math.exp(nll - self.ref_nll) - 1
        if self.max_kl_task is not None:  # KL(reference || policy) on the reference's answers
            kl = kl_on_answers(self.reference_of(model), model, self.prompts, self.responses, self.tok.pad_token_id)
            out["kl_ref_greedy"] = float(kl.sum()) / max(sum(map(len, self.responses)), 1)
        model.train(was_training)
        return out

    def _over(self, values: dict) -> tuple[str, float, float] | None:
        for name, limit in (("general_ppl_drift", self.max_ppl_drift), ("kl_ref_greedy", self.max_kl_task)):
            if limit is not None and values[name] > limit:
                return name, values[name], limit
        return None

    def begin(self, model, log_dir: str, is_main: bool, tensorboard: bool = True) -> None:
        """Keep the starting weights; the budget's own curves go to TensorBoard (logs/budget) when it is in
        train.report_to, and always to the trainer's log history and the manifest."""
        from torch.utils.tensorboard import SummaryWriter

        self.good_state = _trainable_state(model)
        self.writer = SummaryWriter(log_dir=log_dir) if is_main and tensorboard else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.begin(model, f"{args.output_dir}/logs/budget", state.is_world_process_zero,
                   "tensorboard" in (args.report_to or []))

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.tripped and self.action == "stop" or state.global_step % self.every:
            return
        values = self.check(model, state.global_step)
        state.log_history.append({"step": state.global_step, **{f"budget/{k}": v for k, v in values.items()}})
        if self.tripped and self.action == "stop":
            control.should_training_stop = True

    def check(self, model, step: int) -> dict:
        """Measure at `step`, remember the weights while inside every budget, and record a trip."""
        values = self.measure(model)
        self.history.append({"step": step, **values})
        for k, v in values.items():
            if self.writer is not None:
                self.writer.add_scalar(f"budget/{k}", v, step)
        over = self._over(values)
        if over is None:
            self.good_state, self.good_step = _trainable_state(model), step
            return values
        if self.tripped is None:
            name, value, limit = over
            self.tripped = {"budget": "max_kl_task" if name == "kl_ref_greedy" else "max_general_ppl_drift",
                            "step": step, "value": value, "limit": limit, "action": self.action,
                            "kept_step": self.good_step if self.action == "stop" else None}
            then = f"stopping, keeping the weights of step {self.good_step}" if self.action == "stop" else "warning only"
            runs.log(f"drift budget: {name} = {value:.4f} > {limit} at step {step}; {then}")
        return values

    def restore(self, model) -> None:
        """Put back the last weights measured inside the budget (after a stop)."""
        if self.tripped and self.action == "stop" and self.good_state is not None:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in self.good_state.items():
                    params[name].copy_(value)


def _trainable_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def dev_task_chats(recipe) -> list[list[dict]]:
    """The fixed task prompts measured during training: the first budget.samples of eval.dev_tasks."""
    ev = recipe.eval
    tasks = data.load(ev.dev_tasks, "tasks", recipe.seed, ev.n_tasks, recipe.data.system_prompt,
                      task=recipe.task)[:recipe.budget.samples]
    return [t["messages"] for t in tasks]


def drift_budget(recipe, tok, model, reference=None, task_chats: list[list[dict]] | None = None,
                 answers: tuple[list[list[int]], list[list[int]]] | None = None):
    """The drift-budget callback a recipe asks for, or None (DriftBudget above), for `model` before its
    first step. Under (Q)LoRA the reference is the trained model with its adapters disabled
    (models.Reference): the budget holds no copy of the backbone. A full fine-tune trains every weight,
    so only there does the reference need weights of its own: the stage's frozen reference model when
    it has one (`reference`, DPO's), else a frozen copy of `model`, the one copy a budget ever makes.
    task_chats: dev_task_chats(recipe), and answers: the reference's greedy answers to them, when the
    caller has them already (GRPO's)."""
    cfg = recipe.budget
    if cfg.max_general_ppl_drift is None and cfg.max_kl_task is None:
        return None
    if recipe.uses_lora:
        reference = None
    elif reference is None:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    return DriftBudget(tok, model, reference, chitchat.chats("held_out")[-cfg.samples:],
                       task_chats if task_chats is not None else dev_task_chats(recipe), cfg.every,
                       cfg.max_general_ppl_drift, cfg.max_kl_task, cfg.action, answers=answers)
