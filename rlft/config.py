"""Typed recipes: one dataclass per stage, defaults in one place, loaded from YAML.

A recipe file holds the keys of one stage. Unknown keys and wrong types are errors that
name the file, the key and what is accepted (with the nearest key: "Did you mean"); so is a
key the stage never reads (NOT_READ: "ppo does not read train.max_steps; its length is
ppo.updates"). `--set key=value` overrides get the same checks. A finished run's recipe is read
back typed from its manifest (from_manifest). Nothing in rlft reads a recipe any other way: no
`cfg.get(key, default)`. A key that moved (MOVED) is refused naming its new place, and read moved from a
manifest written before the move. Each field's docstring is its documentation: `rlft <stage> --help-config`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import json
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import reward_models
from rlft import data, tasks, tracking
from rlft.data import augment
from rlft.errors import InputError


@dataclass
class DataCfg:
    """What the stage trains and validates on (the keys every stage understands: shared/DESIGN.md)."""

    train: str = "harbor_sft"
    """A built-in data set name (see `rlft data list`) or a JSONL/JSON/Parquet/CSV file."""
    validation: str | None = "harbor_sft_val"
    """Validation data, same forms as `train`; null for none."""
    n_train: int = 2000
    """Rows of the training set: generated for a built-in set (the first n of its seeded stream), the first
    n_train of a file or hub set (all of them when it has fewer). The manifest's data.n_train is the count."""
    n_val: int = 200
    """Rows generated for a built-in validation set (ignored for files)."""
    max_length: int = 256
    """Longest tokenized example; longer prompts are refused before training."""
    system_prompt: str | None = None
    """A system message put before every chat that has none, in training and evaluation alike ("" for an
    empty one). Null: none is added, and rlft says so when the model's chat template adds its own."""
    augment: dict[str, float] = field(default_factory=dict)
    """Seeded noise on the user turns of the training data, {transformation: rate}: typos, case, punctuation,
    word_order, drop_greeting (rlft/data/augment.py). See it with `rlft data augment NAME --recipe FILE`."""


@dataclass
class QuantCfg:
    """Loading the frozen base in 4-bit (QLoRA; a CUDA GPU and bitsandbytes)."""

    load_in_4bit: bool = False
    """Load the frozen base in 4-bit (bitsandbytes) and train LoRA on top: QLoRA."""
    quant_type: str = "nf4"
    """4-bit data type: nf4 or fp4."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves about 0.4 bit per parameter)."""
    compute_dtype: str = "float32"
    """dtype of the 4-bit matmuls: float32, bfloat16 or float16."""


@dataclass
class LoraCfg:
    """The LoRA adapter (Hu et al. 2021) that trains instead of the model's weights."""

    enabled: bool = False
    """Train a LoRA adapter instead of all weights (always on with 4-bit: Recipe.uses_lora; ppo and grpo
    always train LoRA, and refuse false)."""
    r: int = 16
    """Rank of the adapter."""
    alpha: int = 32
    """Scale: the update is alpha / r * B @ A."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or ["all-linear"]."""


@dataclass
class TrainCfg:
    """The optimisation: optimizer, schedule, length, batches, logging and checkpoints (transformers'
    TrainingArguments for the TRL stages; PPO reads the keys it shares with them)."""

    learning_rate: float = 1e-3
    """Peak learning rate, reached after warmup (LoRA takes rates about ten times a full fine-tune's)."""
    num_epochs: float = 1.0
    """Passes over the training data, when max_steps is -1 (fractions allowed)."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 for num_epochs. 0 (SFT with LoRA only) trains nothing: the
    run is its starting model with an adapter of zeros, a baseline such as the model prompted with a policy
    sheet (data.system_prompt) evaluated by the same harness as every trained run."""
    batch_size: int = 16
    """Rows per forward/backward on each process; an optimizer step sees batch_size x grad_accum x processes
    (GRPO: completions, a multiple of grpo.num_generations)."""
    grad_accum: int = 1
    """Forward/backward passes whose gradients add up to one optimizer step."""
    warmup_ratio: float = 0.05
    """Share of the steps over which the learning rate rises linearly from 0."""
    lr_scheduler: str = "cosine"
    """The schedule after warmup, as transformers names it: cosine, linear, constant ..."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global norm to this before each step."""
    logging_steps: int = 10
    """Log the training figures every N steps (PPO: updates)."""
    eval_steps: int = 50
    """Evaluate the validation loss every N steps (0: only at the end)."""
    save_steps: int = 50
    """Write a checkpoint every N steps (PPO: updates), resumable with --resume."""
    early_stopping_patience: int = 0
    """Stop when the validation loss has not improved for this many evaluations (0: off; sft only)."""
    bf16: bool = False
    """Mixed precision: compute in bfloat16, keep the weights in float32 (GPUs that have it)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them: less memory, more time."""
    optim: str = "adamw_torch"
    """Optimizer name as transformers knows it (e.g. paged_adamw_8bit on GPUs)."""
    group_by_length: bool = False
    """Batch rows of similar length together (a seeded shuffle of length-sorted groups): less padding, the
    same rows each epoch (SFT, DPO and RM; rlft/stages/__init__.py)."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Where training curves go: any of tensorboard, wandb, mlflow ([] for none); every stage, PPO included."""
    liger_kernel: bool = False
    """Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) in the model's layers, through TRL's `use_liger_kernel`
    (SFT, DPO and RM; a CUDA GPU and the liger-kernel package, which rlft does not install). TRL's SFT, DPO and
    KTO trainers keep their own fused LM-head loss in place of Liger's fused cross-entropy. Measured by
    bench/gpu_check.sh beside the same rows without it."""


@dataclass
class EvalCfg:
    """The evaluation harness at the end of a policy stage (rlft/eval/harness.py; `rlft eval --run` reads the
    same keys back from the run's manifest)."""

    enabled: bool = True
    """Run the evaluation harness at the end of the stage."""
    tasks: str = "harbor_test"
    """What the evaluation at the end of a stage reports: a tasks file (contract format) or a built-in
    set (harbor_test, the split nobody tunes on; harbor_dev, the one recipes are tuned on)."""
    dev_tasks: str = "harbor_dev"
    """Task prompts that anything during training reads (drift budgets, GRPO's KL to the reference):
    a tasks file or a built-in set, never the test split."""
    n_tasks: int = 110
    """Tasks drawn from a built-in set (eval.tasks, and eval.dev_tasks where training reads them); a tasks
    file is read whole."""
    max_new_tokens: int = 96
    """Longest answer generated for a task (greedy) and for the KL samples."""
    batch_size: int = 32
    """Rows per generation batch in the evaluation and its retention pass (memory, not maths)."""
    n_general: int = 64
    """Held-out chitchat conversations for general NLL and KL."""
    n_kl_tasks: int | None = None
    """Task prompts sampled for kl_task and kl_task_base (default: every task); on a model that generates
    slowly, the first N are enough for KL and leave accuracy measured on all."""
    n_samples: int = 4
    """Prompts shown side by side with the parent's answers."""
    reward: str | dict[str, float] | None = None
    """A reward from reward_models/ whose mean on the answers is reward_mean: a name (harbor_facts,
    learned:RUN_DIR, ensemble:RUN,RUN) or a weighted sum {harbor_facts: 0.5, learned:runs/x/rm: 1.0}."""
    judge: str | None = None
    """An optional model judge (a model name or folder, or a finished run): pairwise against the parent in
    both orders, with a length-controlled win rate (eval.json's `model_judge`)."""
    gate: bool = False
    """After the evaluation, answer `rlft verdict` for the run: exit code 1 (do not ship) unless it beats
    its parent on the held-out judge inside the drift budgets without refusing more (the run is kept)."""


@dataclass
class BudgetCfg:
    """Drift budgets during training (sft, dpo, ppo, grpo; rlft/eval/budget.py): drift from the model the stage
    started from, measured every `every` steps; a trip stops the stage and keeps the last weights inside every
    budget, or warns. The manifest records each measurement and any trip. Null budgets: nothing is measured."""

    max_general_ppl_drift: float | None = None
    """Held-out chitchat perplexity over the reference's, minus 1. Also what `rlft verdict` allows by default."""
    max_kl_task: float | None = None
    """KL(reference || policy) per token on the reference's greedy answers to eval.dev_tasks prompts (logged
    as kl_ref_greedy). Also what `rlft verdict` allows by default (on eval.json's kl_task)."""
    every: int = 25
    """Measure the budgets every N optimizer steps (PPO: every N updates)."""
    action: str = "stop"
    """stop (and keep the last weights inside the budget) or warn."""
    samples: int = 16
    """Fixed held-out chats and dev task prompts the budgets are measured on (GRPO's KL to the reference
    reads the same task prompts)."""


@dataclass
class BaseCfg:
    """Pretraining of the shipped base model (rlft-tiny) from scratch."""

    vocab_size: int = 4096
    """Size of the byte-level BPE vocabulary trained on the mixture (special tokens included)."""
    hidden_size: int = 256
    """Width of the Llama-architecture model."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (as many key/value heads: no grouped-query attention)."""
    intermediate_size: int = 704
    """Width of the SwiGLU feed-forward layer."""
    context_length: int = 256
    """Tokens per packed training block; the model's positions reach twice as far."""
    skill_chats: int = 60000
    """Prior-skill chats (counting) in the mixture."""
    harbor_chats: int = 6000
    """Harbor Goods dialogues of mixed tone in the mixture."""
    chitchat_repeats: int = 2
    """How many times the chitchat training part is repeated in the mixture."""


@dataclass
class SftCfg:
    """Supervised fine-tuning on chats (TRL's SFTTrainer)."""

    assistant_only_loss: bool = True
    """Loss on the assistant's tokens only (needs {% generation %} in the chat template)."""
    packing: bool = False
    """Put each batch's chats in one padding-free row; without flash attention the row is attended whole
    behind a block mask, which can cost more than the padding saved (on CPUs it does)."""
    freeze_embeddings: bool = False
    """Freeze the token embeddings (full fine-tuning only)."""
    freeze_layers: int = 0
    """Freeze the first N transformer layers (full fine-tuning only)."""
    freeze_modules: list[str] = field(default_factory=list)
    """Freeze parameters whose name contains any of these strings."""
    merge_adapter: bool = False
    """Also save the adapter merged into the base as a plain transformers model."""


@dataclass
class DpoCfg:
    """Preference optimisation on chosen/rejected pairs (TRL's DPO, KTO, ORPO and SimPO trainers)."""

    beta: float = 0.1
    """Strength of the pull toward the reference (the SFT policy)."""
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    """TRL loss names: sigmoid (DPO), ipo, hinge, robust, apo_zero, apo_down, sft (NLL on chosen) ...,
    several for a mixture; [kto] for KTO on the pairs split into desirable/undesirable answers;
    [orpo] or [simpo] for TRL's reference-free ORPO and SimPO (trl.experimental)."""
    loss_weights: list[float] | None = None
    """Weights of a loss mixture, one per loss_type."""
    label_smoothing: float = 0.0
    """Assumed label noise for the robust loss."""
    precompute_ref_log_probs: bool = False
    """Score the reference once before training, so no reference copy stays in memory."""
    skip_bad_rows: bool = False
    """Skip (and list in the manifest) pairs whose prompt does not fit, instead of refusing."""


@dataclass
class RmCfg:
    """A Bradley-Terry reward model on the preference pairs (TRL's RewardTrainer)."""

    backbone: str = "policy"
    """policy (the recipe's model with a scalar head) or minilm (all-MiniLM-L6-v2, shipped in a wheel)."""
    center_rewards_coefficient: float | None = None
    """Pull the mean reward toward 0 (Eisenstein et al. 2023), as TRL's RewardConfig."""


@dataclass
class PpoCfg:
    """rlft's own PPO with a value adapter and head on the policy's backbone (rlft/stages/ppo.py)."""

    reward: str | dict[str, float] = "harbor_facts"
    """The reward: a name from reward_models/ (harbor_facts, house_tone), learned:RUN_DIR (an rm run),
    ensemble:RUN,RUN, or a weighted sum {harbor_facts: 1.0, house_tone: 0.5}."""
    updates: int = 40
    """PPO updates; each samples rollout_batch_size prompts, scores them and trains on them."""
    rollout_batch_size: int = 32
    """Prompts (episodes) per update."""
    forward_batch_size: int = 16
    """Rows per generate / scoring forward pass (memory, not maths)."""
    mini_batches: int = 1
    """Optimizer steps per PPO epoch: the rollout is split into this many shuffled minibatches."""
    micro_batch_size: int = 16
    """Rows per forward/backward inside a minibatch; gradients accumulate to one step per minibatch."""
    ppo_epochs: int = 4
    """Passes over each rollout."""
    response_length: int = 64
    """max_new_tokens of a sampled response."""
    temperature: float = 0.7
    """Sampling temperature; log-probabilities are computed at the same temperature."""
    kl_coef: float = 0.05
    """beta: per-token KL penalty to the reference (the SFT policy) in the reward."""
    kl_estimator: str = "k1"
    """k1 (log ratio) or k3 (never negative) for the per-token penalty."""
    kl_target: float | None = None
    """Adapt kl_coef toward this KL per response (Ziegler et al. 2019); null: fixed kl_coef."""
    kl_horizon: int = 10000
    """Episodes over which the adaptive controller moves kl_coef."""
    gamma: float = 1.0
    """Discount of later rewards in GAE (1: none)."""
    lam: float = 0.95
    """GAE lambda."""
    cliprange: float = 0.2
    """epsilon: the policy ratio is clipped to [1 - cliprange, 1 + cliprange] in the surrogate loss."""
    cliprange_value: float = 0.2
    """New values may move at most this far from the rollout's in the clipped value loss."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Entropy bonus (0: none, as the N+ details)."""
    whiten_rewards: bool = False
    """Scale the per-token rewards to unit variance over the batch before GAE (mean kept)."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score of a response that never emits the stop token; null: none."""
    value_learning_rate: float | None = None
    """Learning rate of the value adapter and head; null: train.learning_rate; 0: the critic is never trained,
    so every value is 0 and each advantage is the whitened GAE of the rewards alone (a control without a
    baseline)."""
    value_layers: float = 0.25
    """The share of the decoder layers, counted from the top and rounded up, that the value adapter sits on
    (1.0: every layer). In one process its passes start from the reference pass's hidden state under them."""
    sample_every: int = 10
    """Print and log sample responses every N updates."""


@dataclass
class GrpoCfg:
    """GRPO or RLOO on TRL's trainers: a group of completions per prompt is its own baseline."""

    algorithm: str = "grpo"
    """grpo (TRL's GRPOTrainer) or rloo (TRL's RLOOTrainer, leave-one-out baseline)."""
    reward: str | dict[str, float] = "harbor_facts"
    """As ppo.reward: a name, learned:RUN_DIR, ensemble:..., or a weighted sum."""
    num_generations: int = 8
    """Completions per prompt: the group the baseline is computed over."""
    max_completion_length: int = 64
    """max_new_tokens of a sampled completion."""
    temperature: float = 0.7
    """Sampling temperature of the completions."""
    beta: float = 0.04
    """KL penalty to the reference (TRL's default 0 skips the reference; rlft measures the KL anyway)."""
    loss_type: str = "dapo"
    """TRL's GRPO loss aggregation: grpo, dr_grpo, dapo, bnpo (grpo only)."""
    scale_rewards: str = "group"
    """group, batch or none: divide advantages by the reward std (grpo only)."""
    num_iterations: int = 1
    """Optimisation passes per generation batch (mu in the GRPO paper)."""
    epsilon: float = 0.2
    """Clip range of the importance ratio."""


@dataclass
class Recipe:
    """A stage's recipe: the top-level keys, then one section each (the stage's own last)."""

    model: str = "rlft-tiny"
    """rlft-tiny, smollm2-135m-instruct (offline, from its wheel), a .gguf file (converted once), a hub
    id, or a folder saved with save_pretrained."""
    task: str = tasks.DEFAULT
    """The task: harbor (Harbor Goods), or the dotted name of an importable module of your own that provides
    the task interface (rlft/tasks/__init__.py). The built-in data set names are its (`<NAME>_sft`, ...), its
    REWARDS may be named as rewards, and the evaluation uses its judge and tone. The defaults below name
    Harbor's sets: a recipe with a task of its own names its own."""
    parent: str | None = None
    """The run this stage continues from; null: the stage's default."""
    seed: int = 0
    """Seeds data generation and order, new weights (LoRA's A, heads) and sampling."""
    dtype: str = "float32"
    """Weights dtype for full-precision loading: float32, bfloat16 or float16."""
    trust_remote_code: bool = False
    """Run the model's own Python code from the hub (off: only transformers' code runs)."""
    data: DataCfg = field(default_factory=DataCfg)
    quant: QuantCfg = field(default_factory=QuantCfg)
    lora: LoraCfg = field(default_factory=LoraCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    budget: BudgetCfg = field(default_factory=BudgetCfg)

    @property
    def uses_lora(self) -> bool:
        """Whether a LoRA adapter trains instead of the model's weights: asked for, or implied by a 4-bit base,
        whose packed weights cannot train. The one place that rule is written."""
        return self.lora.enabled or self.quant.load_in_4bit


@dataclass
class BaseRecipe(Recipe):
    eval: EvalCfg = field(default_factory=lambda: EvalCfg(enabled=False))  # no harness: base measures its card itself
    base: BaseCfg = field(default_factory=BaseCfg)


@dataclass
class SftRecipe(Recipe):
    sft: SftCfg = field(default_factory=SftCfg)


@dataclass
class DpoRecipe(Recipe):
    dpo: DpoCfg = field(default_factory=DpoCfg)


@dataclass
class RmRecipe(Recipe):
    eval: EvalCfg = field(default_factory=lambda: EvalCfg(enabled=False))  # no harness: rm measures its scorer itself
    rm: RmCfg = field(default_factory=RmCfg)


@dataclass
class PpoRecipe(Recipe):
    lora: LoraCfg = field(default_factory=lambda: LoraCfg(enabled=True))  # always: a policy and a value adapter
    ppo: PpoCfg = field(default_factory=PpoCfg)


@dataclass
class GrpoRecipe(Recipe):
    lora: LoraCfg = field(default_factory=lambda: LoraCfg(enabled=True))  # always: a new adapter on the SFT policy
    grpo: GrpoCfg = field(default_factory=GrpoCfg)


STAGES: dict[str, type[Recipe]] = {"base": BaseRecipe, "sft": SftRecipe, "dpo": DpoRecipe, "rm": RmRecipe,
                                   "ppo": PpoRecipe, "grpo": GrpoRecipe}


# --- what each stage reads -------------------------------------------------------------------
# Every stage's recipe has the shared sections, but not every stage reads every key in them. A
# recipe or --set that gives a key its stage never reads anything but the stage's own value (its
# default, which to_dict writes) is refused, saying why: it would change nothing. A section name
# stands for each of its keys. model, parent, seed, data.train and data.validation are accepted
# by every stage (shared/DESIGN.md: keys every stage understands), even where one does not use them.
_NO_VALIDATION = "it has no validation loss (the drift budget is measured every budget.every steps)"
_OWN_BATCHES = "it draws its own batches, not from stored rows"
_NO_LIGER = "Liger's kernels go through the TRL trainers of sft, dpo and rm"
NOT_READ: dict[str, dict[str, str]] = {
    "base": {
        "task": "it pretrains rlft-tiny, whose mixture and model card are Harbor Goods' (tasks.pretrain_rows)",
        "dtype": "it builds a new model in float32", "trust_remote_code": "it builds a new model with rlft's code",
        **dict.fromkeys(["data.n_train", "data.n_val", "data.max_length", "data.system_prompt", "data.augment"],
                        "its data is the pretraining mixture (base.*: skill_chats, harbor_chats, context_length)"),
        "quant": "it trains every weight of a new model", "lora": "it trains every weight of a new model",
        "eval": "it measures the new model for its model card itself; the harness does not run",
        "budget": "it trains a new model, so there is no starting model to drift from",
        "train.early_stopping_patience": "it does not stop early; its length is train.max_steps or num_epochs",
        "train.group_by_length": "it trains on packed blocks of equal length", "train.liger_kernel": _NO_LIGER},
    "sft": {},
    "dpo": {"train.early_stopping_patience": "only sft stops early; dpo's length is train.max_steps or num_epochs"},
    "rm": {"eval": "it measures its scorer itself (pair accuracy, length-bias probe) into eval.json; the harness "
                   "does not run",
           "budget": "it trains a scorer, not a policy: nothing it makes is measured for drift",
           "train.early_stopping_patience": "only sft stops early; rm's length is train.max_steps or num_epochs"},
    "ppo": {
        **dict.fromkeys(["train.max_steps", "train.num_epochs"], "its length is ppo.updates"),
        "train.batch_size": "its batch is ppo.rollout_batch_size prompts, split into ppo.mini_batches",
        "train.grad_accum": "gradients accumulate over each minibatch in pieces of ppo.micro_batch_size rows",
        "train.eval_steps": _NO_VALIDATION, "train.early_stopping_patience": _NO_VALIDATION,
        "train.optim": "it steps torch's AdamW (eps 1e-5, Huang et al. 2024)",
        "train.bf16": "its weights run in `dtype`; set dtype: bfloat16 for bf16",
        "train.group_by_length": _OWN_BATCHES, "train.liger_kernel": _NO_LIGER,
        "data.n_val": "it samples prompts from data.train only",
        "lora.enabled": "it always trains LoRA adapters (a policy and a value adapter on one backbone)"},
    "grpo": {
        "train.eval_steps": _NO_VALIDATION, "train.early_stopping_patience": _NO_VALIDATION,
        "train.group_by_length": _OWN_BATCHES, "train.liger_kernel": _NO_LIGER,
        "data.n_val": "it samples prompts from data.train only",
        "lora.enabled": "it always trains a new LoRA adapter on the SFT policy"},
}


# --- keys that moved ------------------------------------------------------------------------------
# {old dotted key: new one}. A recipe file or --set that uses an old key is refused, naming the new one
# (_build). A run's manifest written before the move is read with its keys moved (from_manifest), and
# the run fingerprint hashes the recipe in the shape before the move (fingerprint_dict), so that moving
# a key retrains no finished run.
MOVED = {"eval.max_general_ppl_drift": "budget.max_general_ppl_drift", "eval.max_kl_task": "budget.max_kl_task",
         "eval.budget_every": "budget.every", "eval.budget_action": "budget.action",
         "eval.budget_samples": "budget.samples"}


def unread_keys(stage: str) -> dict[str, str]:
    """NOT_READ[stage] with each section name spelled out as its keys: {"train.max_steps": why, ...}."""
    hints = typing.get_type_hints(STAGES[stage])
    out = {}
    for key, why in NOT_READ[stage].items():
        if "." not in key and dataclasses.is_dataclass(hints[key]):
            out.update({f"{key}.{f.name}": why for f in dataclasses.fields(hints[key])})
        else:
            out[key] = why
    return out


def _value_at(recipe: Recipe, dotted: str) -> typing.Any:
    node = recipe
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _check_reads(recipe: Recipe, stage: str, where: str) -> None:
    """Refuse a key the stage never reads, set to anything but the stage's own value."""
    own = STAGES[stage]()
    for key, why in unread_keys(stage).items():
        if _value_at(recipe, key) != _value_at(own, key):
            raise InputError(f"{where}: {stage} does not read {key}; {why}. Remove {key} from the recipe or --set.")


# --- loading and checking ------------------------------------------------------------------


def _type_name(tp: typing.Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _check(value: typing.Any, tp: typing.Any, where: str, path: str = "",
           unread: typing.Mapping[str, str] = types.MappingProxyType({})) -> typing.Any:
    """Return value converted to tp, or raise InputError naming `where`. path: the dotted key of value
    ("train."); unread: {dotted key: why} the stage does not read, left out of the keys an error offers."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:  # a mapping or a list goes to its own option, whose error is the precise one
            if (isinstance(value, dict) and typing.get_origin(option) is dict) or (
                    isinstance(value, list) and typing.get_origin(option) is list):
                return _check(value, option, where)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, where)
            except InputError as e:
                errors.append(str(e))
        raise InputError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is dict:
        key_t, value_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return {_check(k, key_t, f"{where} key"): _check(v, value_t, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):  # "--set lora.target_modules=q_proj,v_proj"
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, where, path, unread)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as text
    elif tp is str:
        if isinstance(value, str):
            return value
    raise InputError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, values: dict, where: str, path: str = "",
           unread: typing.Mapping[str, str] = types.MappingProxyType({})) -> typing.Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in known and path + key in MOVED:
            new = MOVED[path + key]
            section, new_key = new.split(".")
            raise InputError(f"{where}: {path}{key} moved to {new}: the drift budget, a training control, has its "
                             f"own section `{section}:`, where this key is `{new_key}`")
        if key not in known:
            accepted = [k for k in known if path + k not in unread]
            close = difflib.get_close_matches(str(key), known, n=1)  # a near key the stage does not read, too
            hint = f" Did you mean {close[0]!r}?" if close else ""
            if close and path + close[0] in unread:
                hint += f" This stage does not read {path}{close[0]}: {unread[path + close[0]]}."
            raise InputError(f"{where}: unknown key {key!r}.{hint} Accepted keys: {', '.join(accepted)}.")
        kwargs[key] = _check(value, hints[key], f"{where}.{key}" if not where.endswith(":") else f"{where} {key}",
                             f"{path}{key}.", unread)
    return cls(**kwargs)


def _parse_scalar(text: str) -> typing.Any:
    """A --set value is read as YAML (safe loader): 3, 1e-4, true, null, [a, b], text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(values: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise InputError(f"--set {assignment!r}: expected key=value, for example --set train.learning_rate=1e-4")
    key, text = assignment.split("=", 1)
    node = values
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = _parse_scalar(text)


def load_recipe(stage: str, path: str | Path | None, overrides: list[str] = (),
                default_parent: str | None = None) -> Recipe:
    """Read a recipe YAML for `stage`, apply --set overrides, and check every key and type.
    default_parent: the parent where neither the file nor an override names one (the CLI's
    runs/<recipe>/<previous stage>), part of the recipe from the start: nothing changes it later."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    values: dict = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise InputError(f"recipe {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise InputError(f"recipe {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"recipe {path}: the top level must be a mapping of keys, not {type(loaded).__name__}")
        values = loaded or {}
    for assignment in overrides:
        apply_override(values, assignment)
        where = f"{where} (with --set)" if "--set" not in where else where
    if default_parent is not None and values.get("parent") is None:
        values = {**values, "parent": default_parent}
    recipe = _build(STAGES[stage], values, f"{where}:", unread=unread_keys(stage))
    _check_reads(recipe, stage, where)
    _check_task(recipe, where, unread_keys(stage))
    _check_values(recipe, where)
    return recipe


def from_manifest(manifest: dict, where: str) -> Recipe:
    """The typed recipe a finished run recorded (its manifest's `recipe`, as to_dict wrote it), for
    `rlft eval` and whatever else reads a run back. Keys and types are checked as in load_recipe; what
    the stage reads is not, since the run has been trained with exactly these values."""
    stage = manifest.get("stage")
    if stage not in STAGES:
        raise InputError(f"{where}: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return _build(STAGES[stage], _move_keys(manifest.get("recipe") or {}), f"{where} recipe:")


def _move_keys(stored: dict) -> dict:
    """A stored recipe with the keys MOVED since it was written put where they are now (a run made
    before the move still evaluates, compares and resumes); a recipe in today's shape is unchanged."""
    stored = {k: dict(v) if isinstance(v, dict) else v for k, v in stored.items()}  # sections copied
    for old, new in MOVED.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        if isinstance(stored.get(old_section), dict) and old_key in stored[old_section]:
            stored.setdefault(new_section, {})[new_key] = stored[old_section].pop(old_key)
    return stored


def fingerprint_dict(recipe: Recipe) -> dict:
    """to_dict(recipe) as the run fingerprint hashes it: the MOVED keys back where runs made before the
    move hashed them, and the built-in task left out as runs made before the `task` key hashed it, so
    a finished run is still up to date after either change. The manifest stores to_dict(recipe);
    from_manifest reads both shapes."""
    values = to_dict(recipe)
    if values.get("task") == tasks.DEFAULT:
        del values["task"]
    for old, new in MOVED.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        values[old_section][old_key] = values[new_section].pop(new_key)
    for section in {new.split(".")[0] for new in MOVED.values()}:
        if not values[section]:  # a section made of moved keys only (budget) did not exist before
            del values[section]
    return values


_DATA_KEYS = ("data.train", "data.validation", "eval.tasks", "eval.dev_tasks")
"""The keys that may name a built-in data set."""


def _check_task(recipe: Recipe, where: str, unread: typing.Mapping[str, str]) -> None:
    """The task imports and has the interface; every built-in set the recipe names (where its stage reads
    it) is that task's, so a recipe with a task of its own that kept a default (harbor_sft) is refused
    here, not trained on Harbor; nothing that trains or tunes reads the test split."""
    task = tasks.load(recipe.task, f"{where}: task")
    own = data.names(recipe.task)
    for key in _DATA_KEYS:
        value = _value_at(recipe, key)
        other = [name for name in tasks.BUILTIN if value in data.names(name)]
        if key not in unread and value not in own and other:
            raise InputError(f"{where}: {key} is {value!r}, a data set of the task {other[0]!r}, but the recipe's "
                             f"task is {recipe.task!r}; its data sets: {', '.join(own)}")
    for key in ("data.train", "data.validation", "eval.dev_tasks"):
        if _value_at(recipe, key) in data.test_sets(recipe.task):
            raise InputError(f"{where}: {key} is {_value_at(recipe, key)!r}, the test split: nothing that trains "
                             f"or tunes may read it (it is what the README reports). Use {task.NAME}_dev for "
                             f"tuning and budgets.")


def _check_values(recipe: Recipe, where: str) -> None:
    """Ranges that types alone cannot say."""
    positive = {
        "data.n_train": recipe.data.n_train, "data.max_length": recipe.data.max_length,
        "train.batch_size": recipe.train.batch_size, "train.grad_accum": recipe.train.grad_accum,
        "train.logging_steps": recipe.train.logging_steps, "train.save_steps": recipe.train.save_steps,
        "lora.r": recipe.lora.r, "eval.max_new_tokens": recipe.eval.max_new_tokens,
        "eval.batch_size": recipe.eval.batch_size, "budget.every": recipe.budget.every,
        "budget.samples": recipe.budget.samples,
    }
    for key, value in positive.items():
        if value <= 0:
            raise InputError(f"{where}: {key} must be positive, got {value}")
    if recipe.train.learning_rate <= 0:
        raise InputError(f"{where}: train.learning_rate must be positive, got {recipe.train.learning_rate}")
    if recipe.train.num_epochs <= 0 and recipe.train.max_steps < 0:
        raise InputError(f"{where}: set train.num_epochs > 0 or train.max_steps > 0")
    untrained = recipe.train.max_steps == 0 and isinstance(recipe, SftRecipe) and recipe.uses_lora
    if recipe.train.max_steps < -1 or (recipe.train.max_steps == 0 and not untrained):
        raise InputError(f"{where}: train.max_steps must be positive, or -1 to train for train.num_epochs "
                         f"(0, no training, is for an SFT recipe with LoRA: a baseline); got {recipe.train.max_steps}")
    fractions = {"train.warmup_ratio": recipe.train.warmup_ratio, "lora.dropout": recipe.lora.dropout}
    for key, value in fractions.items():
        if not 0 <= value < 1:
            raise InputError(f"{where}: {key} must lie in [0, 1), got {value}")
    tr = recipe.train
    if isinstance(recipe, SftRecipe) and recipe.data.validation and tr.early_stopping_patience > 0 \
            and tr.eval_steps > 0 and tr.save_steps % tr.eval_steps:
        raise InputError(f"{where}: with early stopping the best checkpoint is kept, so train.save_steps "
                         f"({tr.save_steps}) must be a multiple of train.eval_steps ({tr.eval_steps})")
    if recipe.lora.alpha <= 0:
        raise InputError(f"{where}: lora.alpha must be positive, got {recipe.lora.alpha}")
    if recipe.eval.n_tasks <= 0 or recipe.eval.n_general < 0:
        raise InputError(f"{where}: eval.n_tasks must be positive and eval.n_general not negative, got "
                         f"{recipe.eval.n_tasks} and {recipe.eval.n_general}")
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    _check_choice(recipe.train.lr_scheduler, "train.lr_scheduler", SchedulerType, where)
    _check_choice(recipe.train.optim, "train.optim", OptimizerNames, where)

    tracking.check(recipe.train.report_to, where)
    augment.check(recipe.data.augment, f"{where} data.augment")
    if isinstance(recipe, DpoRecipe) and recipe.dpo.beta <= 0:
        raise InputError(f"{where}: dpo.beta must be positive, got {recipe.dpo.beta}")
    if recipe.dtype not in ("float32", "bfloat16", "float16"):
        raise InputError(f"{where}: dtype must be float32, bfloat16 or float16, got {recipe.dtype!r}")
    _check_reward(recipe.eval.reward, "eval.reward", where, recipe.task)
    if recipe.train.liger_kernel:
        _check_liger(recipe, where)
    if isinstance(recipe, PpoRecipe):
        _check_ppo(recipe.ppo, where, recipe.task)
    if isinstance(recipe, GrpoRecipe):
        _check_reward(recipe.grpo.reward, "grpo.reward", where, recipe.task)
        g = recipe.grpo
        if g.algorithm not in ("grpo", "rloo"):
            raise InputError(f"{where}: grpo.algorithm must be grpo or rloo, got {g.algorithm!r}")
        if g.num_generations < 2:
            raise InputError(f"{where}: grpo.num_generations must be at least 2 (the baseline is the group's "
                             f"other completions), got {g.num_generations}")
        if recipe.train.batch_size * recipe.train.grad_accum % g.num_generations:
            raise InputError(f"{where}: train.batch_size x train.grad_accum ({recipe.train.batch_size} x "
                             f"{recipe.train.grad_accum}) must be a multiple of grpo.num_generations "
                             f"({g.num_generations}): every prompt's group is generated in one batch")
    if recipe.budget.action not in ("stop", "warn"):
        raise InputError(f"{where}: budget.action must be stop or warn, got {recipe.budget.action!r}")
    if recipe.quant.quant_type not in ("nf4", "fp4"):
        raise InputError(f"{where}: quant.quant_type must be nf4 or fp4, got {recipe.quant.quant_type!r}")


def _check_choice(value: str, key: str, enum, where: str) -> None:
    """A name transformers accepts (its SchedulerType or OptimizerNames), refused here rather than an hour in."""
    names = [e.value for e in enum]
    if value not in names:
        raise InputError(f"{where}: {key} {value!r} is not one transformers knows; choose from {', '.join(names)}")


def _check_liger(recipe: Recipe, where: str) -> None:
    """train.liger_kernel is refused here, where it cannot run, rather than when the trainer starts (the
    stages whose trainers take no Liger kernels refused it in _check_reads)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise InputError(f"{where}: train.liger_kernel is true, but no CUDA GPU is visible, and Liger's kernels are "
                         f"Triton kernels for GPUs; set train.liger_kernel: false")
    if importlib.util.find_spec("liger_kernel") is None:
        raise InputError(f"{where}: train.liger_kernel is true, but the liger-kernel package is not installed "
                         f"(rlft does not depend on it: it brings Triton); install it with `.venv/bin/pip install "
                         f"liger-kernel` or set train.liger_kernel: false")


def _check_reward(spec: str | dict | None, key: str, where: str, task: str) -> None:
    if spec is None:
        return
    rules = reward_models.rules(task)
    for name in [spec] if isinstance(spec, str) else list(spec):
        if name not in rules and not name.startswith(("learned:", "ensemble:")):
            raise InputError(f"{where}: {key}: unknown reward {name!r}; rewards: "
                             f"{', '.join(rules)}, learned:RUN_DIR, ensemble:RUN_DIR,RUN_DIR")


def _check_ppo(p: PpoCfg, where: str, task: str) -> None:
    _check_reward(p.reward, "ppo.reward", where, task)
    for key in ("updates", "rollout_batch_size", "forward_batch_size", "mini_batches", "micro_batch_size",
                "ppo_epochs", "response_length", "sample_every", "kl_horizon"):
        if getattr(p, key) <= 0:
            raise InputError(f"{where}: ppo.{key} must be positive, got {getattr(p, key)}")
    if p.rollout_batch_size % p.mini_batches:
        raise InputError(f"{where}: ppo.rollout_batch_size ({p.rollout_batch_size}) must be a multiple of "
                         f"ppo.mini_batches ({p.mini_batches})")
    if p.kl_estimator not in ("k1", "k3"):
        raise InputError(f"{where}: ppo.kl_estimator must be k1 or k3, got {p.kl_estimator!r}")
    if p.temperature <= 0:
        raise InputError(f"{where}: ppo.temperature must be positive (PPO samples), got {p.temperature}")
    if p.kl_target is not None and p.kl_target <= 0:
        raise InputError(f"{where}: ppo.kl_target must be positive or null, got {p.kl_target}")
    if p.value_learning_rate is not None and p.value_learning_rate < 0:
        raise InputError(f"{where}: ppo.value_learning_rate must be 0 or more, or null, got {p.value_learning_rate}")
    if not 0 < p.value_layers <= 1:
        raise InputError(f"{where}: ppo.value_layers must lie in (0, 1] (a share of the layers), got {p.value_layers}")
    if not (0 <= p.gamma <= 1 and 0 <= p.lam <= 1):
        raise InputError(f"{where}: ppo.gamma and ppo.lam must lie in [0, 1], got {p.gamma} and {p.lam}")


def to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


# --- documentation: the docstring under each field, shown by `rlft <stage> --help-config` ------------


@functools.cache
def field_docs() -> dict[str, str]:
    """The docstrings written in this file, each on one line: {"TrainCfg": the class's, "TrainCfg.max_steps":
    the string under that field}. Read from the source, since Python keeps no docstring of a field."""
    docs = {}
    for node in ast.parse(Path(__file__).read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ClassDef):
            continue
        if ast.get_docstring(node):
            docs[node.name] = " ".join(ast.get_docstring(node).split())
        for statement, after in zip(node.body, node.body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[f"{node.name}.{statement.target.id}"] = " ".join(after.value.value.split())
    return docs


def field_doc(cls: type, name: str) -> str | None:
    """The docstring of field `name` of dataclass `cls`, where it or a class it inherits from declares it."""
    docs = field_docs()
    return next((docs[f"{k.__name__}.{name}"] for k in cls.__mro__ if f"{k.__name__}.{name}" in docs), None)


def help_text(stage: str, width: int = 100) -> str:
    """What `rlft <stage> --help-config` prints: each key the stage reads (NOT_READ left out), by section,
    with its type, the stage's default and the docstring under its field."""
    own, unread = STAGES[stage](), unread_keys(stage)
    wrap = functools.partial(textwrap.wrap, width=width, break_on_hyphens=False, break_long_words=False)
    indent = " " * 6
    lines = wrap(f"rlft {stage}: the recipe keys it reads, as `key: type = default` and what each does. Set "
                 f"them in the recipe file, by section, or with --set section.key=value; a key not listed here "
                 f"is refused.")
    sections = [("top level", own, "")] + [(f.name, getattr(own, f.name), f"{f.name}.") for f in dataclasses.fields(own)
                                           if dataclasses.is_dataclass(getattr(own, f.name))]
    for title, values, prefix in sections:
        keys = [f for f in dataclasses.fields(values)
                if not dataclasses.is_dataclass(getattr(values, f.name)) and prefix + f.name not in unread]
        if not keys:
            continue
        about = field_docs().get(type(values).__name__) if prefix else None
        lines += [""] + wrap(f"{title}: {about}" if about else f"{title}:", subsequent_indent="  ")
        for f in keys:
            lines.append(f"  {prefix}{f.name}: {f.type} = {json.dumps(getattr(values, f.name))}")
            lines += wrap(field_doc(type(values), f.name) or "", initial_indent=indent, subsequent_indent=indent)
    return "\n".join(lines)


def recipe_name(path: str | Path | None) -> str:
    """runs/<recipe name>/<stage>: the recipe's folder name (recipes/customer_support/sft.yaml)."""
    return Path(path).resolve().parent.name if path else "default"
