"""GPU check: QLoRA SFT, DPO and PPO at the shapes users train, through rlft and through TRL directly.

    bash bench/gpu_check.sh                          (one H200, at most 8 minutes: bench/gpu_check.md, .json)
    bash bench/gpu_check.sh --tiny --out /tmp/x.md   (the same rows at tiny sizes, on any CPU: the tests)

The rows, each timed over a few optimizer steps after its warm-up steps:
  - SFT of the Qwen2.5-0.5B and Llama-3.1-8B architectures on rows of 2,048 tokens, gradient
    checkpointing off and on, through `rlft sft` with the shipped recipe of that model
    (recipes/qwen2.5-0.5b, recipes/llama-3.1-8b-qlora) and through TRL's SFTTrainer driven directly
    with the same settings (read from the same resolved recipe, written out by hand, no rlft code);
  - DPO of the 0.5B at prompt 512 + answer 512, `rlft dpo` and TRL's DPOTrainer;
  - rlft's PPO of the 0.5B at prompt 512 + response 512 (its own loop; TRL 1.16 has no PPO trainer
    outside trl.experimental, and bench/ppo_vs_trl112.py compares it with TRL 1.12's);
  - where liger-kernel is installed, the checkpointed SFT rows again with `train.liger_kernel: true`.
Every model is QLoRA as the recipes ship it: 4-bit NF4 with double quantization, LoRA r 16 on all
linear layers, bf16 compute, paged 8-bit AdamW (PPO: AdamW).

Deliberate choices:
1. The architectures' configs are written here and the weights are random (no hub): speed does not
   depend on the weights. The tokenizer is rlft's byte-level BPE trained on Harbor chats (under 3,000
   tokens); the embedding and LM head keep the architecture's own vocabulary, so their cost is the
   real one.
2. The data are Harbor support chats joined into long multi-turn conversations, written as JSONL and
   read by both sides: every SFT row is longer than 2,048 tokens and cut to exactly 2,048, every DPO
   answer is long enough to fill prompt + answer = 1,024, so no SFT or DPO batch holds padding.
   TRL direct's DPO starts from the base weights, rlft's from the base with its SFT row's adapter
   merged (its parent): the same architecture and shapes.
3. One clock for both sides: a TrainerCallback added to every Trainer, rlft's and TRL's alike (by
   wrapping `Trainer.train`), marks the wall time once the GPU has finished each optimizer step, and
   transformers' count of the non-padding tokens trained. PPO, rlft's own loop, is marked where it logs
   each update, so an update's time is all of it (rollout, scoring, optimisation, logging), and its
   tokens are the episodes' prompts (the file's mean length) and responses. The first steps
   (kernel selection, the allocator, the paged optimizer's first pages) are warm-up, not timed.
4. MFU = model FLOPs per token x tokens per second / peak. Per token: 4N for frozen 4-bit weights
   with LoRA (forward 2N, backward through the activations 2N, no weight gradients; full training
   would be 6N), so 4N for SFT; 6N for DPO (the policy's 4N and the reference's forward);
   (2 + 3 x 2 + 8 x ppo_epochs)N for PPO (sampling; the policy, reference and value passes; policy and
   value forward and backward in each epoch). N = the weights a token is multiplied by: the decoder
   and the LM head (counted once when tied), not the input embedding, a lookup. Recomputation under
   gradient checkpointing and attention's T^2 term are not counted. Two peaks: the device's dense bf16
   datasheet figure (989 TFLOP/s for an H200) and the bf16 matmul rate measured here.
5. Verdicts follow bench/results.md's rule: each side's tokens per second over its timed steps, the
   ratio's range from the slowest and fastest steps, *met* only when the whole range meets the target.
6. Budget: each row stops training at its time guard (after at least one timed step); a row that
   would not fit in what is left of --budget-s is skipped, with the reason, in the table. A row that
   runs out of GPU memory is retried once at half the batch, and the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CUDA = torch.cuda.is_available()
SPEC_BF16_TFLOPS = {"H200": 989.0}  # dense bf16 from the datasheet (SXM); other devices: --peak-tflops
MFU_TARGETS = {"qwen2.5-0.5b": 0.15, "llama-3.1-8b": 0.35}  # SFT rows (issue 20)
RATIO_TARGET = 0.97  # rlft's tokens/s at least 97% of TRL direct's


# --- architectures and sizes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    config: dict
    recipes: str
    """The folder of the shipped recipes for this model."""


ARCHS = {
    "qwen2.5-0.5b": Arch(dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                              num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                              max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True,
                              rms_norm_eps=1e-6), "recipes/qwen2.5-0.5b"),
    "llama-3.1-8b": Arch(dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                              num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                              max_position_embeddings=131072, rope_theta=500000.0,
                              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                high_freq_factor=4.0, original_max_position_embeddings=8192),
                              tie_word_embeddings=False, rms_norm_eps=1e-5), "recipes/llama-3.1-8b-qlora"),
}
SMALL = "qwen2.5-0.5b"  # DPO and PPO rows
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


@dataclass(frozen=True)
class Sizes:
    seq: int
    """SFT tokens per row."""
    prompt: int
    """DPO and PPO prompt tokens (at most)."""
    answer: int
    """DPO: prompt + answer is the sequence length."""
    response: int
    """PPO: new tokens per response."""
    sft_batch: dict
    """(architecture, gradient checkpointing) -> rows per step."""
    dpo_batch: int
    ppo_batch: int
    warmup: int
    timed: int
    ppo_warmup: int
    ppo_timed: int
    guard_s: dict
    """Seconds of training a row may take, by architecture and for "ppo"."""
    load_s: dict
    """About how long loading and preparing a row takes, by architecture (for the budget)."""
    tokenizer_vocab: int
    harbor_chats: int


FULL = Sizes(
    seq=2048, prompt=512, answer=512, response=512,
    # Saved activations without checkpointing, bf16, LoRA with dropout: about 1.7 MB a token on the 0.5B
    # (24 layers, d 896, MLP 4864) and 8 MB on the 8B (32 layers, d 4096, MLP 14336), so 16 x 2,048 and
    # 4 x 2,048 tokens hold 55-65 GB of the H200's 141. With checkpointing only each layer's input stays.
    sft_batch={(SMALL, False): 16, (SMALL, True): 32, ("llama-3.1-8b", False): 4, ("llama-3.1-8b", True): 8},
    dpo_batch=8, ppo_batch=32, warmup=2, timed=4, ppo_warmup=1, ppo_timed=2,
    guard_s={SMALL: 30.0, "llama-3.1-8b": 60.0, "ppo": 90.0}, load_s={SMALL: 20.0, "llama-3.1-8b": 45.0},
    tokenizer_vocab=8000, harbor_chats=3000)
TINY_SIZES = Sizes(
    seq=128, prompt=64, answer=64, response=16,
    sft_batch={(a, c): 2 for a in ARCHS for c in (False, True)}, dpo_batch=2, ppo_batch=4,
    warmup=1, timed=2, ppo_warmup=1, ppo_timed=1,
    guard_s={SMALL: math.inf, "llama-3.1-8b": math.inf, "ppo": math.inf}, load_s={SMALL: 0.0, "llama-3.1-8b": 0.0},
    tokenizer_vocab=1000, harbor_chats=300)


@dataclass
class Row:
    stage: str
    """sft, dpo or ppo."""
    side: str
    """rlft, or trl (TRL's trainer driven directly)."""
    arch: str
    ckpt: bool
    batch: int
    liger: bool = False
    result: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.arch}/ckpt-{'on' if self.ckpt else 'off'}{'+liger' if self.liger else ''}/{self.side}"


def plan(sizes: Sizes) -> list[Row]:
    """Every row, in the order they run: the two sides of each comparison one after the other."""
    rows = [Row("sft", side, arch, ckpt, sizes.sft_batch[arch, ckpt])
            for arch in ARCHS for ckpt in (False, True) for side in ("rlft", "trl")]
    rows += [Row("dpo", side, SMALL, True, sizes.dpo_batch) for side in ("rlft", "trl")]
    rows.append(Row("ppo", "rlft", SMALL, True, sizes.ppo_batch))
    # Liger patches some functions module-wide (the rotary embedding), so its rows come last
    rows += [Row("sft", "rlft", arch, True, sizes.sft_batch[arch, True], liger=True) for arch in ARCHS]
    return rows


# --- the clock ---------------------------------------------------------------------------------------


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


class Clock(TrainerCallback):
    """(seconds, tokens trained) when training starts and after each optimizer step, once the GPU is done.
    Tokens are transformers' count of the non-padding input tokens (`state.num_input_tokens_seen`), which
    `clocked` turns on for both sides: rlft's CPU loss path skips TRL's own count."""

    def __init__(self, guard_s: float, min_marks: int):
        self.guard_s, self.min_marks = guard_s, min_marks
        self.marks: list[tuple[float, float]] = []
        self.stopped_by_guard = False
        self.layers: dict = {}

    def mark(self, tokens: float) -> None:
        _sync()
        self.marks.append((time.perf_counter(), float(tokens)))

    def over_time(self) -> bool:
        return len(self.marks) >= self.min_marks and self.marks[-1][0] - self.marks[0][0] > self.guard_s

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.layers = quantized_layers(model)
        self.mark(state.num_input_tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        self.mark(state.num_input_tokens_seen)
        if self.over_time():
            self.stopped_by_guard = control.should_training_stop = True


class OutOfTime(Exception):
    """Raised from PPO's logging to end a row at its time guard (its loop has no stop flag)."""


@contextlib.contextmanager
def clocked(clock: Clock, ppo_tokens=None):
    """Every Trainer started inside gets `clock`; with `ppo_tokens(metrics)`, each PPO update logged by
    rlft's Tracker is marked with the tokens of its episodes."""
    from transformers import Trainer

    from rlft import tracking

    train, log = Trainer.train, tracking.Tracker.log
    tokens = [0.0]

    def train_clocked(self, *args, **kwargs):
        self.args.include_num_input_tokens_seen = "non_padding"  # the attention mask's sum, every micro-batch
        self.add_callback(clock)
        return train(self, *args, **kwargs)

    def log_clocked(self, metrics, step):
        log(self, metrics, step)
        tokens[0] += ppo_tokens(metrics)
        clock.mark(tokens[0])
        if clock.over_time():
            clock.stopped_by_guard = True
            raise OutOfTime

    Trainer.train = train_clocked
    if ppo_tokens is not None:
        tracking.Tracker.log = log_clocked
    try:
        yield clock
    finally:
        Trainer.train, tracking.Tracker.log = train, log


def quantized_layers(model) -> dict:
    """4-bit layers and the plain Linear layers left in the decoder (LoRA's own and the LM head aside)."""
    import bitsandbytes as bnb

    named = list(model.named_modules()) if model is not None else []
    return {"linear4bit": sum(isinstance(m, bnb.nn.Linear4bit) for _, m in named),
            "plain_linear_left": sum(type(m) is torch.nn.Linear for n, m in named
                                     if "lora_" not in n and "lm_head" not in n)}


def timed(marks: list[tuple[float, float]], first: int) -> dict:
    """Seconds, tokens and tokens per second from mark `first` (the end of warm-up) to the last."""
    marks = marks[first:]
    steps = [(t1 - t0, n1 - n0) for (t0, n0), (t1, n1) in zip(marks, marks[1:])]
    if not steps:
        raise RuntimeError("no timed step: the row stopped before its warm-up ended")
    seconds, tokens = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    per_step = [n / t for t, n in steps]
    return {"timed_steps": len(steps), "timed_seconds": round(seconds, 4), "tokens": tokens,
            "tokens_per_step": tokens / len(steps), "tokens_per_second": tokens / seconds,
            "tokens_per_second_min": min(per_step), "tokens_per_second_max": max(per_step),
            "step_seconds": [round(t, 4) for t, _ in steps]}


# --- models and data ---------------------------------------------------------------------------------


def build_tokenizer(sizes: Sizes):
    from rlft.stages.base import train_tokenizer
    from rlft.tasks.harbor import generator as harbor

    return train_tokenizer([r["messages"] for r in harbor.sft_rows(0, sizes.harbor_chats)], sizes.tokenizer_vocab)


def arch_config(arch: str, tok, tiny: bool):
    from transformers import AutoConfig

    spec = {**ARCHS[arch].config, **(TINY if tiny else {})}
    config = AutoConfig.for_model(spec.pop("model_type"), **spec, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, bos_token_id=None)
    assert len(tok) <= config.vocab_size, "the tokenizer must fit in the architecture's vocabulary"
    return config


def loaded_tokenizer(arch: str, tok, tiny: bool, folder: Path):
    """The tokenizer as a model folder of `arch` gives it back. transformers 5 loads a folder whose config
    says qwen2 with its own Qwen2Tokenizer, whatever tokenizer_config.json names, and that splits text
    (digits, leading spaces) otherwise than rlft's BPE did: lengths are measured with what the rows load."""
    from transformers import AutoTokenizer

    arch_config(arch, tok, tiny).save_pretrained(folder)
    tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_model(arch: str, folder: Path, tok, tiny: bool) -> dict:
    """The architecture with random weights, saved with the tokenizer; its parameter counts."""
    from transformers import AutoModelForCausalLM

    config = arch_config(arch, tok, tiny)
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):  # random init on the GPU: seconds, not minutes, for 8B
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    matmul = total - embed.numel() + (head.numel() if head is embed else 0)  # the lookup out, the head in
    del model
    free()
    return {"parameters": total, "matmul_parameters": matmul, "tied": bool(config.tie_word_embeddings)}


def harbor_turns(tok, n: int) -> list[dict]:
    """Harbor exchanges (a customer's message and the house reply, with a rejected reply) and their tokens
    in the chat template: the bricks long conversations are built from (the template is a plain
    concatenation of turns, so counts add up; every file's real lengths are checked after)."""
    from rlft.tasks.harbor import generator as harbor

    def length(chat, prompt=False):
        return len(tok.apply_chat_template(chat, tokenize=True, return_dict=False, add_generation_prompt=prompt))

    out = []
    for pair in harbor.pair_rows(0, n):
        exchange = pair["prompt"] + pair["chosen"]
        out.append({"exchange": exchange, "question": pair["prompt"], "chosen": pair["chosen"][0]["content"],
                    "rejected": pair["rejected"][0]["content"], "n_exchange": length(exchange),
                    "n_question": length(pair["prompt"], prompt=True),
                    "n_chosen": len(tok(pair["chosen"][0]["content"])["input_ids"]),
                    "n_rejected": len(tok(pair["rejected"][0]["content"])["input_ids"])})
    return out


def conversation(turns: list[dict], start: int, at_least: int) -> list[dict]:
    """Exchanges from `start` on, cycling, joined into one chat of at least `at_least` tokens."""
    chat, n, i = [], 0, start
    while n < at_least:
        chat += turns[i % len(turns)]["exchange"]
        n += turns[i % len(turns)]["n_exchange"]
        i += 1
    return chat


def prompt_of(turns: list[dict], start: int, at_most: int) -> list[dict]:
    """A chat that ends with a customer's question, at most `at_most` tokens: earlier exchanges, then it."""
    # a question short enough to leave room for history
    i = next(k for k in range(start, start + len(turns)) if turns[k % len(turns)]["n_question"] <= at_most // 2)
    question = turns[i % len(turns)]
    chat, n = [], question["n_question"]
    for k in range(i + 1, i + 1 + len(turns)):  # every exchange that still fits, in order
        if n + turns[k % len(turns)]["n_exchange"] <= at_most:
            chat += turns[k % len(turns)]["exchange"]
            n += turns[k % len(turns)]["n_exchange"]
    return chat + question["question"]


def answer_of(turns: list[dict], start: int, key: str, at_least: int) -> list[dict]:
    """One assistant message of at least `at_least` tokens: replies (chosen or rejected) one after another."""
    parts, n, i = [], 0, start
    while n < at_least:
        parts.append(turns[i % len(turns)][key])
        n += turns[i % len(turns)][f"n_{key}"]
        i += 1
    return [{"role": "assistant", "content": " ".join(parts)}]


def write_data(toks: dict, sizes: Sizes, folder: Path) -> dict:
    """The SFT, DPO and PPO files (JSONL, read by rlft and by TRL direct alike) and their token counts,
    measured with each architecture's tokenizer as its rows load it (`loaded_tokenizer`)."""
    from rlft.data import write_jsonl

    tok = toks[SMALL]  # DPO's and PPO's model
    turns = harbor_turns(tok, 400)
    n_sft = max(sizes.sft_batch.values()) * (sizes.warmup + sizes.timed)
    n_dpo = sizes.dpo_batch * 2 * (sizes.warmup + sizes.timed)  # the recipe accumulates 2 batches a step
    n_ppo = sizes.ppo_batch * (sizes.ppo_warmup + sizes.ppo_timed)
    sft = [{"messages": conversation(turns, 7 * r, sizes.seq * 3 // 2)} for r in range(n_sft)]  # for both tokenizers
    long = 2 * (sizes.prompt + sizes.answer)  # fills the sequence after any prompt
    dpo = [{"prompt": prompt_of(turns, 5 * r, sizes.prompt), "chosen": answer_of(turns, 3 * r, "chosen", long),
            "rejected": answer_of(turns, 3 * r + 1, "rejected", long)} for r in range(n_dpo)]
    ppo = [{"prompt": prompt_of(turns, 11 * r, sizes.prompt)} for r in range(n_ppo)]
    files = {name: folder / f"{name}.jsonl" for name in ("sft", "dpo", "ppo")}
    for name, rows in (("sft", sft), ("dpo", dpo), ("ppo", ppo)):
        write_jsonl(rows, files[name])

    def length(chat, prompt=False):
        return len(tok.apply_chat_template(chat, tokenize=True, return_dict=False, add_generation_prompt=prompt))

    sft_min = min(len(t.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
                  for t in toks.values() for r in sft)
    prompts = [length(r["prompt"], prompt=True) for r in dpo + ppo]
    answers = [len(tok(r[k][0]["content"])["input_ids"]) for r in dpo for k in ("chosen", "rejected")]
    assert sft_min > sizes.seq and max(prompts) <= sizes.prompt, (sft_min, max(prompts))
    assert min(answers) > sizes.prompt + sizes.answer, "every DPO answer fills the sequence"
    ppo_prompts = prompts[len(dpo):]
    return {"files": files, "sft_row_tokens_min": sft_min, "prompt_tokens_max": max(prompts),
            "ppo_prompt_tokens_mean": sum(ppo_prompts) / len(ppo_prompts),
            "dpo_prompt_tokens_mean": sum(prompts[:len(dpo)]) / len(dpo)}


def free() -> None:
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


# --- one row: rlft's command, or TRL's trainer driven directly -------------------------------------


@dataclass
class Context:
    sizes: Sizes
    tiny: bool
    work: Path
    models: dict
    """Architecture -> saved model folder."""
    data: dict
    parents: dict = field(default_factory=dict)
    """Architecture -> the rlft SFT run DPO and PPO continue from."""


def recipe_sets(row: Row, ctx: Context) -> tuple[str, list[str]]:
    """The shipped recipe of the row's model and the --set overrides that give it the row's shape."""
    s = ctx.sizes
    steps = s.warmup + s.timed
    parent = [f"parent={ctx.parents[row.arch]}"] if row.side == "rlft" and row.stage != "sft" else []
    sets = [*parent, f"model={ctx.models[row.arch]}", f"train.gradient_checkpointing={str(row.ckpt).lower()}",
            "train.report_to=[]", "train.save_steps=100000", "eval.enabled=false", "budget.max_kl_task=null"]
    if not CUDA and row.stage != "ppo":
        sets.append("train.optim=adamw_torch")  # bitsandbytes' paged optimizers need CUDA
    if row.liger:
        sets.append("train.liger_kernel=true")
    if row.stage == "sft":
        sets += [f"data.train={ctx.data['files']['sft']}", "data.validation=null", f"data.max_length={s.seq}",
                 f"train.batch_size={row.batch}", "train.grad_accum=1", f"train.max_steps={steps}",
                 f"train.logging_steps={steps}", "train.eval_steps=0", "sft.merge_adapter=false"]
    elif row.stage == "dpo":
        sets += [f"data.train={ctx.data['files']['dpo']}", "data.validation=null",
                 f"data.max_length={s.prompt + s.answer}", f"train.batch_size={row.batch}",
                 f"train.max_steps={steps}", f"train.logging_steps={steps}", "train.eval_steps=0"]
    else:
        updates = s.ppo_warmup + s.ppo_timed
        sets += [f"data.train={ctx.data['files']['ppo']}",
                 f"data.max_length={s.prompt + s.response}", f"ppo.updates={updates}",
                 f"ppo.rollout_batch_size={row.batch}", f"ppo.forward_batch_size={row.batch}",
                 f"ppo.micro_batch_size={min(8, row.batch // 2)}", f"ppo.response_length={s.response}",
                 f"ppo.sample_every={updates}"]
    return f"{ARCHS[row.arch].recipes}/{row.stage}.yaml", sets


def run_rlft(row: Row, ctx: Context, clock: Clock, out: Path) -> None:
    from rlft import cli

    recipe, sets = recipe_sets(row, ctx)
    args = [row.stage, "--recipe", recipe, "--output-dir", str(out), "--force"]
    for s in sets:
        args += ["--set", s]
    ppo_tokens = None
    if row.stage == "ppo":  # every episode's prompt and response
        prompt = ctx.data["ppo_prompt_tokens_mean"]
        ppo_tokens = lambda m: row.batch * (prompt + m["response/length_mean"])  # noqa: E731
    with clocked(clock, ppo_tokens):
        try:
            code = cli.main(args)
        except OutOfTime:
            return
    if code != 0:
        raise RuntimeError(f"rlft {row.stage} exited with code {code}")


def load_4bit(folder: Path, recipe):
    """TRL direct's model: transformers and bitsandbytes as a TRL user writes them."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = recipe.quant
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                             bnb_4bit_use_double_quant=q.double_quant,
                             bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype))
    return AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, recipe.dtype), quantization_config=bnb,
                                                device_map={"": 0} if CUDA else None)


def trl_args(recipe, out: Path) -> dict:
    """TrainingArguments from the recipe's values, written out here rather than taken from rlft."""
    tr = recipe.train
    return dict(output_dir=str(out), per_device_train_batch_size=tr.batch_size,
                gradient_accumulation_steps=tr.grad_accum, learning_rate=tr.learning_rate, max_steps=tr.max_steps,
                warmup_steps=tr.warmup_ratio, lr_scheduler_type=tr.lr_scheduler, weight_decay=tr.weight_decay,
                max_grad_norm=tr.max_grad_norm, logging_steps=tr.logging_steps, optim=tr.optim, bf16=tr.bf16,
                gradient_checkpointing=tr.gradient_checkpointing, save_strategy="no", report_to="none",
                seed=recipe.seed, use_cpu=not CUDA)


def run_trl(row: Row, ctx: Context, clock: Clock, out: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from rlft import config

    path, sets = recipe_sets(row, ctx)
    recipe = config.load_recipe(row.stage, path, sets)
    folder = ctx.models[row.arch]
    tok = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(line) for line in Path(ctx.data["files"][row.stage]).read_text().splitlines()]
    targets = recipe.lora.target_modules
    lora = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
                      target_modules="all-linear" if targets == ["all-linear"] else targets, task_type="CAUSAL_LM")
    model = load_4bit(folder, recipe)
    if row.stage == "sft":
        args = SFTConfig(**trl_args(recipe, out), max_length=recipe.data.max_length,
                         assistant_only_loss=recipe.sft.assistant_only_loss)
        trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(rows),
                             peft_config=lora)
    else:
        d = recipe.dpo
        args = DPOConfig(**trl_args(recipe, out), max_length=recipe.data.max_length, beta=d.beta,
                         loss_type=d.loss_type, loss_weights=d.loss_weights)
        trainer = DPOTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(rows),
                             peft_config=lora)
    with clocked(clock):
        trainer.train()


def measure(row: Row, ctx: Context) -> dict:
    """Run one row and return its figures; the first marks are warm-up."""
    s = ctx.sizes
    ppo = row.stage == "ppo"
    warmup, n_timed = (s.ppo_warmup, s.ppo_timed) if ppo else (s.warmup, s.timed)
    # Trainer rows mark the start of training too; PPO is first marked at the end of its first update
    first = warmup - 1 if ppo else warmup
    clock = Clock(s.guard_s["ppo" if ppo else row.arch], min_marks=first + 2)
    out = ctx.work / "runs" / row.id.replace("/", "_")
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated() / 2**30 if CUDA else None  # anything an earlier row left behind
    t0 = time.perf_counter()
    (run_rlft if row.side == "rlft" else run_trl)(row, ctx, clock, out)
    result = {"wall_seconds": round(time.perf_counter() - t0, 1), "warmup_steps": warmup,
              "planned_timed_steps": n_timed, "stopped_by_guard": clock.stopped_by_guard, **clock.layers,
              **timed(clock.marks, first),
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None,
              "held_before_gib": round(held, 2) if CUDA else None}
    if row.side == "rlft" and row.stage == "sft" and not row.liger:
        ctx.parents.setdefault(row.arch, out)  # a finished SFT run: the parent of DPO and PPO
    return result


# --- figures ---------------------------------------------------------------------------------------


def flops_per_token(row: Row, ctx: Context, n: int) -> float:
    """Model FLOPs per token under the stated convention (docstring, 4)."""
    if row.stage == "sft":
        return 4 * n
    if row.stage == "dpo":
        return 6 * n
    from rlft import config

    path, sets = recipe_sets(row, ctx)
    epochs = config.load_recipe("ppo", path, sets).ppo.ppo_epochs
    return (2 + 3 * 2 + 8 * epochs) * n


def verdict(low: float, high: float, target: float) -> str:
    if low >= target:
        return "met"
    if high < target:
        return "missed"
    return "within noise"


def add_mfu(row: Row, ctx: Context, archs: dict, peaks: dict, tiny: bool) -> None:
    r = row.result
    per_token = flops_per_token(row, ctx, archs[row.arch]["matmul_parameters"])
    r["flops_per_token"] = per_token
    for name, peak in peaks.items():
        r[f"mfu_{name}"] = per_token * r["tokens_per_second"] / (peak * 1e12) if peak else None
    target = MFU_TARGETS[row.arch] if row.stage == "sft" else None
    r["mfu_target"] = target
    if target is None:
        r["mfu_verdict"] = None
    elif tiny or not peaks["spec"]:
        r["mfu_verdict"] = "not judged (tiny sizes)" if tiny else "not judged (no datasheet peak for this device)"
    else:
        scale = per_token / (peaks["spec"] * 1e12)
        r["mfu_verdict"] = verdict(r["tokens_per_second_min"] * scale, r["tokens_per_second_max"] * scale, target)


def compare(a: Row, b: Row, target: float | None, tiny: bool) -> dict:
    """a's tokens/s over b's, with the range from their slowest and fastest steps."""
    out = {"a": a.id, "b": b.id, "target": target}
    if not (a.result.get("tokens_per_second") and b.result.get("tokens_per_second")):
        return {**out, "ratio": None, "verdict": "not measured"}
    ra, rb = a.result, b.result
    low, high = ra["tokens_per_second_min"] / rb["tokens_per_second_max"], ra["tokens_per_second_max"] / rb[
        "tokens_per_second_min"]
    judged = "not judged (tiny sizes)" if tiny else verdict(low, high, target if target is not None else 1.0)
    if target is None and not tiny:  # liger: does it pay?
        judged = {"met": "pays", "missed": "costs"}.get(judged, judged)
    return {**out, "ratio": ra["tokens_per_second"] / rb["tokens_per_second"], "ratio_min": low, "ratio_max": high,
            "verdict": judged}


def comparisons(rows: list[Row], tiny: bool) -> list[dict]:
    by_id = {r.id: r for r in rows}
    out = []
    for r in rows:
        if r.side == "trl":
            out.append({"name": f"{r.stage} {r.arch} ckpt {'on' if r.ckpt else 'off'}: rlft / TRL direct",
                        **compare(by_id[r.id.replace("/trl", "/rlft")], r, RATIO_TARGET, tiny)})
        if r.liger:
            out.append({"name": f"{r.stage} {r.arch} ckpt on: with liger / without",
                        **compare(r, by_id[r.id.replace("+liger", "")], None, tiny)})
    return out


# --- the table -------------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}" if abs(x) >= 100 else f"{x:.3g}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2g}%"


def shape(row: Row, s: Sizes) -> str:
    if row.stage == "sft":
        return f"{s.seq}"
    if row.stage == "dpo":
        return f"pairs of {s.prompt}+{s.answer}"
    return f"{s.prompt}+{s.response} (prompt+response)"


def header(report: dict, tiny: bool) -> list[str]:
    peaks, archs = report["peak_tflops"], report["architectures"]
    spec = f"{peaks['spec']:.0f} TFLOP/s (datasheet, dense bf16)" if peaks["spec"] else "none known for this device"
    n = ", ".join(f"{a} {v['matmul_parameters'] / 1e6:,.{0 if v['matmul_parameters'] > 1e7 else 3}f}M"
                  for a, v in archs.items())
    return [
        f"# GPU check: {report['device']}", "",
        *(["Tiny sizes (--tiny): the same rows and code paths at tiny shapes, as the tests run them; the figures "
           "measure the plumbing, not a GPU.", ""] if tiny else []),
        f"QLoRA as the recipes ship it: 4-bit NF4 + double quantization, LoRA r 16 on all linear layers, bf16 "
        f"compute, {report['optimizer']}; random weights from the architectures' configs (no hub). "
        f"{report['versions']}.", "",
        f"Peaks: {spec}; bf16 matmul measured here {peaks['measured']:.{0 if CUDA else 3}f} TFLOP/s.", "",
        "MFU convention: model FLOPs per token x tokens/s / peak. 6N for full training (no row here); 4N for frozen "
        "4-bit weights with LoRA (forward 2N, backward through the activations 2N), so 4N for SFT; 6N for DPO (the "
        "policy's 4N and the reference's forward 2N); (8 + 8 x ppo_epochs)N for PPO (sampling 2N; policy, "
        "reference and value passes 3 x 2N; policy and value forward and backward each epoch). N = the weights a "
        f"token is multiplied by, the decoder and the LM head (once when tied), not the input embedding: {n}. "
        "Recomputation under gradient checkpointing and attention's T^2 term are not counted. Tokens are every "
        "non-padding token a step trains on (SFT: rows x sequence; DPO: chosen and rejected sequences; PPO: "
        "prompt + response of every episode); PPO's steps are whole updates.", ""]


def row_line(row: Row, sizes: Sizes) -> str:
    r = row.result
    if "tokens_per_second" not in r:
        return f"| {row.id} | {shape(row, sizes)} | {row.batch} | - | {r.get('skipped') or r.get('failed')} |" + \
            " - |" * 5
    target = f">= {100 * r['mfu_target']:.0f}%" if r["mfu_target"] else "-"
    guard = " (time guard)" if r["stopped_by_guard"] else ""
    return (f"| {row.id} | {shape(row, sizes)} | {row.batch} | {r['warmup_steps']} + {r['timed_steps']}{guard} | "
            f"{fmt(r['tokens_per_second'])} [{fmt(r['tokens_per_second_min'])}, {fmt(r['tokens_per_second_max'])}] "
            f"| {fmt(r['peak_gib'], 1)} | {pct(r['mfu_spec'])} | {pct(r['mfu_measured'])} | {target} "
            f"| {r['mfu_verdict'] or '-'} |")


def render(report: dict, rows: list[Row], comps: list[dict], sizes: Sizes, tiny: bool) -> str:
    lines = header(report, tiny) + [
        "| row | shape | batch | steps (warm-up + timed) | tokens/s [slowest, fastest step] | peak GiB "
        "| MFU (datasheet) | MFU (measured) | MFU target | verdict |", "|---|---|---|---|---|---|---|---|---|---|",
        *(row_line(row, sizes) for row in rows),
        "", f"rlft against TRL direct (target: rlft's tokens/s at least {RATIO_TARGET:.2f} of TRL's) and Liger's "
            f"kernels against the same row without them; the range pairs each side's slowest and fastest step:", "",
        "| comparison | ratio of tokens/s [range] | target | verdict |", "|---|---|---|---|"]
    for c in comps:
        ratio = f"{c['ratio']:.3f} [{c['ratio_min']:.3f}, {c['ratio_max']:.3f}]" if c["ratio"] else "-"
        target = f">= {c['target']:.2f}" if c["target"] else "-"
        lines.append(f"| {c['name']} | {ratio} | {target} | {c['verdict']} |")
    notes = [f"- {row.id}: {row.result['note']}" for row in rows if row.result.get("note")]
    notes += [f"- {row.id}: {row.result['plain_linear_left']} plain Linear layers left beside "
              f"{row.result['linear4bit']} 4-bit ones" for row in rows if row.result.get("plain_linear_left")]
    lines += ["", *(["Notes:", *notes, ""] if notes else []),
              f"Command: `bash bench/gpu_check.sh{' --tiny' if tiny else ''}`; {report['wall_seconds']:.0f} s in all"
              + (f", within a budget of {report['budget_s']:.0f} s." if report["budget_s"] else ".")]
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------------


def matmul_tflops(n: int, reps: int = 10) -> float:
    device = "cuda" if CUDA else "cpu"
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def liger_missing() -> str | None:
    """Why the Liger rows cannot run here, or None."""
    if not CUDA:
        return "skipped: no CUDA GPU (Liger's kernels are Triton kernels)"
    if importlib.util.find_spec("liger_kernel") is None:
        return "skipped: liger-kernel is not installed (rlft does not depend on it; pip install liger-kernel)"
    return None


def run_rows(rows: list[Row], ctx: Context, archs: dict, tok, deadline: float | None) -> None:
    """Measure every row in order, building each architecture before its first row; skip what cannot run."""
    s = ctx.sizes
    for row in rows:
        # loading and preparing (three times that when the model is built first), then the training guard
        load = s.load_s[row.arch] * (1 if row.arch in ctx.models else 3)
        need = load + s.guard_s["ppo" if row.stage == "ppo" else row.arch]
        left = deadline - time.perf_counter() if deadline else math.inf
        reason = liger_missing() if row.liger else None
        if reason is None and row.stage != "sft" and row.side == "rlft" and row.arch not in ctx.parents:
            reason = "skipped: no finished rlft SFT row of this model to continue from"
        if reason is None and need > left:
            reason = f"skipped: {max(left, 0):.0f} s of the budget left, the row needs about {need:.0f} s"
        if reason:
            row.result = {"skipped": reason}
            print(f"gpu_check: {row.id}: {reason}", flush=True)
            continue
        if row.arch not in ctx.models:
            folder = ctx.work / row.arch
            archs[row.arch] = build_model(row.arch, folder, tok, ctx.tiny)
            ctx.models[row.arch] = folder
        print(f"gpu_check: {row.id} (batch {row.batch})", flush=True)
        row.result = attempt(row, ctx)
        free()


def attempt(row: Row, ctx: Context) -> dict:
    """measure(row), retried once at half the batch when the GPU runs out of memory."""
    for tries in range(2):
        try:
            result = measure(row, ctx)
            if tries:
                result["note"] = f"ran out of GPU memory at batch {row.batch * 2}; measured at {row.batch}"
            return result
        except torch.OutOfMemoryError:
            pass  # freed below, once the exception and its frames (the model among them) are gone
        except Exception as e:  # one failed row must not lose the others' figures
            traceback.print_exc()
            return {"failed": f"failed: {type(e).__name__}: {str(e)[:200]}"}
        free()
        if tries or row.batch < 2:
            break
        row.batch //= 2
    return {"failed": f"failed: out of GPU memory at batch {row.batch}"}


def sizes_json(sizes: Sizes) -> dict:
    out = {k: v for k, v in vars(sizes).items() if k not in ("sft_batch", "guard_s")}
    out["sft_batch"] = {f"{arch}/ckpt-{'on' if ckpt else 'off'}": b for (arch, ckpt), b in sizes.sft_batch.items()}
    out["guard_s"] = {k: v if math.isfinite(v) else None for k, v in sizes.guard_s.items()}
    return out


def versions() -> str:
    import bitsandbytes
    import peft
    import transformers
    import trl

    return (f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
            f"peft {peft.__version__}, bitsandbytes {bitsandbytes.__version__}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/gpu_check.md", help="the table; the figures go beside it as .json")
    p.add_argument("--tiny", action="store_true", help="the same rows at tiny sizes, on any device (the tests)")
    p.add_argument("--budget-s", type=float, help="seconds for everything (default 420 on a GPU, none with --tiny)")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, where it is not known here")
    p.add_argument("--rows", help="run only the rows whose id contains this text (e.g. llama)")
    a = p.parse_args()
    if not (CUDA or a.tiny):
        print("gpu_check: no CUDA GPU here; run with --tiny for the same rows at tiny sizes", file=sys.stderr)
        return 2
    start = time.perf_counter()
    budget = a.budget_s if a.budget_s is not None else (None if a.tiny else 420.0)
    sizes = TINY_SIZES if a.tiny else FULL
    device = torch.cuda.get_device_name(0) if CUDA else "CPU"
    spec = a.peak_tflops or next((v for k, v in SPEC_BF16_TFLOPS.items() if k in device), None)
    peaks = {"spec": spec, "measured": matmul_tflops(8192 if CUDA else 512)}
    rows = [r for r in plan(sizes) if not a.rows or a.rows in r.id]
    archs: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        tok = build_tokenizer(sizes)
        toks = {arch: loaded_tokenizer(arch, tok, a.tiny, Path(tmp) / f"{arch}-tokenizer") for arch in ARCHS}
        ctx = Context(sizes, a.tiny, Path(tmp), models={}, data=write_data(toks, sizes, Path(tmp)))
        run_rows(rows, ctx, archs, tok, start + budget if budget else None)
        for row in rows:
            if "tokens_per_second" in row.result:
                add_mfu(row, ctx, archs, peaks, a.tiny)
        data = {k: v for k, v in ctx.data.items() if k != "files"}
    comps = comparisons(rows, a.tiny)
    report = {"device": device + (" (--tiny)" if a.tiny else ""), "tiny": a.tiny, "versions": versions(),
              "optimizer": "paged 8-bit AdamW" if CUDA else "AdamW (paged 8-bit needs CUDA)",
              "peak_tflops": peaks, "budget_s": budget, "wall_seconds": time.perf_counter() - start,
              "architectures": archs, "sizes": sizes_json(sizes),
              "data": data, "mfu_targets": MFU_TARGETS, "ratio_target": RATIO_TARGET,
              "rows": [{"id": r.id, "stage": r.stage, "side": r.side, "arch": r.arch, "gradient_checkpointing": r.ckpt,
                        "liger_kernel": r.liger, "batch": r.batch, **r.result} for r in rows],
              "comparisons": comps}
    text = render(report, rows, comps, sizes, a.tiny)
    print(text)
    Path(a.out).write_text(text)
    Path(a.out).with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 1 if any("failed" in r.result for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
