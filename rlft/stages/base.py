"""Pretraining of rlft-tiny, the base chat model rlft ships: `make base`.

    rlft base --recipe recipes/customer_support/base.yaml

A Llama-architecture causal LM trained from scratch, with its own byte-level BPE tokenizer,
on a mixture of (1) the chitchat conversations' training part, (2) prior-skill chats
(counting up and down, rlft/data/probes.py) and (3) Harbor Goods dialogues in mixed tone
that state one fact each, so the base speaks in the domain but does not yet do the task.
Every token is trained on (plain next-token prediction over packed chat blocks). This stage
builds that one model: its mixture and its model card are the built-in task's (Harbor Goods,
reached through rlft.tasks), whatever task later recipes align it to; it reads no `task` key.

Deliberate choices:
1. The tokenizer is trained on the same mixture, so the counting numbers become tokens.
2. The chat template marks assistant turns with {% generation %} so later stages can train
   on the assistant's tokens only; `<|end|>` closes every turn and is the EOS token.
3. The model card (README.md beside the weights) is written from measured numbers only.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import torch

from rlft import checkpoint, models, runs, tasks
from rlft.config import BaseRecipe, fingerprint_dict, to_dict
from rlft.data import chitchat, probes
from rlft.eval import harness
from rlft.stages import mean_train_loss, trainer_kwargs

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]


def mixture(recipe: BaseRecipe) -> list[list[dict]]:
    """The pretraining chats, shuffled by seed."""
    cfg = recipe.base
    chats = chitchat.chats("train") * cfg.chitchat_repeats
    chats += probes.train_chats(recipe.seed, cfg.skill_chats)
    chats += [r["messages"] for r in tasks.pretrain_rows(recipe.seed, cfg.harbor_chats)]
    random.Random(recipe.seed).shuffle(chats)
    return chats


def train_tokenizer(chats: list[list[dict]], vocab_size: int):
    """Byte-level BPE trained on the mixture's text, wrapped with our chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator((m["content"] for c in chats for m in c), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end|>", pad_token="<|pad|>",
                                  unk_token=None, model_max_length=100_000)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def pack(tok, chats: list[list[dict]], block: int) -> torch.Tensor:
    """All chats tokenized, joined by <|endoftext|>, cut into blocks of `block` tokens."""
    sep = tok.convert_tokens_to_ids("<|endoftext|>")
    ids: list[int] = []
    for rows in _batched(chats, 1000):
        for r in tok.apply_chat_template(rows, tokenize=True, return_dict=False):
            ids.extend(r)
            ids.append(sep)
    n = len(ids) // block
    return torch.tensor(ids[:n * block], dtype=torch.long).view(n, block)  # (N, block)


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def build_model(tok, cfg, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads, max_position_embeddings=2 * cfg.context_length,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=None, rope_theta=10000.0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def unigram_nll(train_blocks: torch.Tensor, held_out: list[list[int]], vocab: int) -> float:
    """NLL (nats/token) of held-out tokens under add-one unigram frequencies of training."""
    counts = Counter(train_blocks.flatten().tolist())
    total = sum(counts.values()) + vocab
    n, s = 0, 0.0
    for row in held_out:
        for t in row[1:]:
            s -= math.log((counts.get(t, 0) + 1) / total)
            n += 1
    return s / n


def measure(model, tok, seed: int, context: int) -> dict:
    """The base's quality, for its model card: perplexity, probes, Harbor Goods accuracy."""
    held = chitchat.chats("held_out")
    nll, n_tokens = harness.sequence_nll(model, tok, held, max_length=context)
    probe = harness.probe_accuracy(model, tok)
    dev = tasks.BUILTIN["harbor"].task_rows(seed, 110, "dev")
    task = harness.score_tasks(model, tok, dev, max_new_tokens=96)
    return {"held_out_nll": nll, "held_out_ppl": math.exp(nll), "held_out_tokens": n_tokens,
            "probe_accuracy": probe, "harbor_task_accuracy": task["task_accuracy"],
            "harbor_fact_recall": task["fact_recall"]}


def run(recipe: BaseRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    from transformers import Trainer, TrainingArguments

    t0 = time.time()
    cfg, tr = recipe.base, recipe.train
    chats = mixture(recipe)
    inputs = {"stage": "base", "recipe": fingerprint_dict(recipe)}
    run_ = runs.start("base", out, inputs, force=force, resume=resume)
    if run_ is None:  # up to date
        return None

    # --- tokenizer and data ---
    tok = train_tokenizer(chats, cfg.vocab_size)
    blocks = pack(tok, chats, cfg.context_length)  # (N, T)
    held_rows = [ids[i:i + cfg.context_length]  # the windows general NLL scores
                 for ids in tok.apply_chat_template(chitchat.chats("held_out"), tokenize=True, return_dict=False)
                 for i in range(0, len(ids), cfg.context_length)]
    val_blocks = pack(tok, chitchat.chats("held_out")[:200], cfg.context_length)
    train_ds = [{"input_ids": b, "labels": b} for b in blocks]
    val_ds = [{"input_ids": b, "labels": b} for b in val_blocks]
    runs.log(f"base: {len(chats)} chats → {blocks.numel():,} tokens in {len(blocks)} blocks of "
             f"{cfg.context_length}; vocabulary {len(tok)}")

    # --- model and training ---
    model = build_model(tok, cfg, recipe.seed)
    n = sum(p.numel() for p in model.parameters())
    runs.log(f"base: Llama, {cfg.num_layers} layers × {cfg.hidden_size}, {n / 1e6:.2f}M parameters")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_.work / "logs")
    args = TrainingArguments(**trainer_kwargs(recipe, run_.work, has_validation=True), save_total_limit=2,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                      callbacks=[checkpoint.TrainerHooks()])
    result = trainer.train(resume_from_checkpoint=str(run_.resume_from()) if resume and run_.resume_from() else None)
    train_minutes = (time.time() - t0) / 60

    # --- save, measure, card ---
    model_dir = run_.work / "model"
    if runs.is_main_process():
        runs.atomic_write_json(run_.work / "train_log.json", trainer.state.log_history)
    trainer.save_model(str(model_dir))
    tok.save_pretrained(str(model_dir))
    quality = measure(model, tok, recipe.seed, cfg.context_length)
    quality["unigram_ppl"] = math.exp(unigram_nll(blocks, held_rows, len(tok)))
    facts = {"parameters": n, "steps": result.global_step, "tokens_seen": result.global_step * tr.batch_size
             * tr.grad_accum * cfg.context_length, "train_loss": mean_train_loss(trainer),
             "train_minutes": round(train_minutes, 1), "threads": torch.get_num_threads(), **quality}
    (model_dir / "README.md").write_text(model_card(recipe, recipe_path, facts, len(chats)))
    manifest = run_.finish({"parent": None, "model": "rlft-tiny (trained here)", "model_source": None, "recipe": to_dict(recipe),
                            "recipe_path": recipe_path, "tokenizer_sha256": models.tokenizer_sha256(tok),
                            "data": {"name": "base-mixture", "sha256": runs.sha256_json(chats[:1000]),
                                     "n_train": len(blocks), "n_val": len(val_blocks)},
                            "seed": recipe.seed, "metrics": facts, "artifacts": {"model": "model/"}})
    return manifest


def export(run_dir: Path, to: Path) -> None:
    """Copy a finished base run's model to `to` (rlft/assets/rlft-tiny for the shipped one), atomically."""
    runs.read_manifest(run_dir)  # a finished run only
    tmp = to.with_name(to.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir / "model", tmp, ignore=shutil.ignore_patterns("training_args.bin"))
    old = to.with_name(to.name + ".old")
    if to.exists():
        os.replace(to, old)
    os.replace(tmp, to)
    shutil.rmtree(old, ignore_errors=True)
    runs.log(f"base: exported {run_dir / 'model'} to {to}")


def model_card(recipe: BaseRecipe, recipe_path: str | None, f: dict, n_chats: int) -> str:
    cfg = recipe.base
    probes_line = ", ".join(f"{k} {v:.1%}" for k, v in f["probe_accuracy"].items())
    return f"""# rlft-tiny

The base chat model that rlft ships and pretrains itself, so the whole pipeline runs offline on a CPU.

| | |
| --- | --- |
| architecture | Llama causal LM, {cfg.num_layers} layers, hidden {cfg.hidden_size}, {cfg.num_heads} heads, MLP {cfg.intermediate_size}, tied embeddings |
| parameters | {f['parameters']:,} |
| tokenizer | byte-level BPE trained by rlft on the mixture, {cfg.vocab_size} tokens; EOS `<|end|>`, pad `<|pad|>`; chat template with `{{% generation %}}` |
| data mixture | chitchat-dataset training part × {cfg.chitchat_repeats}, {cfg.skill_chats:,} counting chats (prior skills), {cfg.harbor_chats:,} Harbor Goods dialogues in mixed tone with one fact each; {n_chats:,} chats |
| steps | {f['steps']:,} (batch {recipe.train.batch_size} × {cfg.context_length} tokens) |
| tokens seen | {f['tokens_seen']:,} |
| wall time | {f['train_minutes']} minutes on {f['threads']} CPU threads (tokenizer, data and training) |
| held-out chitchat perplexity | {f['held_out_ppl']:.1f} (unigram baseline on the same tokens: {f['unigram_ppl']:.1f}) |
| prior-skill probes (exact match, greedy; 240 held-out items each, asked in a phrasing pretraining never shows) | {probes_line} |
| Harbor Goods task accuracy (110 held-out tasks, greedy) | {f['harbor_task_accuracy']:.1%} (fact recall {f['harbor_fact_recall']:.1%}) |

Rebuild it (seeded, same numbers on the same machine):

    rlft base --recipe {recipe_path or 'recipes/customer_support/base.yaml'}

or `make base`. Licence of the training text: chitchat-dataset, MIT.
"""
