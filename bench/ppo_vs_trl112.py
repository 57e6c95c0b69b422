"""rlft's PPO against TRL 1.12's PPOTrainer (the last TRL with PPO) on the same toy task.

    bash bench/ppo_vs_trl112.sh          # makes .venv-trl112 on first use, runs both, writes the table

The toy of shared/notes/ppo.md §4.4: a random-weight 2-layer Llama (hidden 64, vocab 256) and a
word-level tokenizer; the reward is 0.25 for every "target" token (ids divisible by 10, about 10%
of the vocabulary) in an 8-token response. Both sides: LoRA r 8 on every linear layer and the LM
head, lr 5e-3 constant, 16 prompts per update, 4 PPO epochs x 2 minibatches, T 0.7, kl_coef 0.05,
no missing-EOS penalty, 40 updates, seed 0 (`--seed N` for others; the .sh runs 0, 1, 2). What
differs is each implementation's own design: TRL
1.12 trains a full-size critic (a second model); rlft trains a value adapter + head on the one
backbone. Run with `--impl rlft` (rlft's venv) or `--impl trl112` (the side venv); prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from types import SimpleNamespace

import torch

VOCAB, PROMPT_LEN, RESPONSE, BATCH, UPDATES, SEED = 256, 6, 8, 16, 40, 0


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(4, VOCAB)])}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", padding_side="left")


def policy():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                      bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(cfg), cfg


def prompts(n: int = 512) -> list[list[int]]:
    """Prompt ids with no target token in them, so prompt+response counts equal response counts."""
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(4, VOCAB, (n, PROMPT_LEN), generator=g)
    ids[ids % 10 == 0] += 1
    return ids.tolist()


def lora(task_type: str):
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type=task_type,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                      "lm_head"])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rlft() -> dict:
    from peft import get_peft_model

    from rlft.config import PpoCfg
    from rlft.stages import ppo

    tok = tokenizer()
    base, _ = policy()
    base.requires_grad_(False)
    model = get_peft_model(base, lora("CAUSAL_LM"), adapter_name="default")
    model.add_adapter("value", lora("CAUSAL_LM"))
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    model.eval()
    head = torch.nn.Linear(64, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    cfg = PpoCfg(updates=UPDATES, rollout_batch_size=BATCH, forward_batch_size=BATCH, mini_batches=2,
                 micro_batch_size=8, ppo_epochs=4, response_length=RESPONSE, temperature=0.7, kl_coef=0.05,
                 missing_eos_penalty=None)
    targets = {f"w{i}" for i in range(4, VOCAB) if i % 10 == 0}

    def reward(chats, texts):
        return [0.25 * sum(w in targets for w in t.split()) for t in texts]

    optimizer = torch.optim.AdamW([{"params": ppo._params(model, "default")},
                                   {"params": ppo._params(model, "value") + list(head.parameters())}],
                                  lr=5e-3, eps=1e-5)
    all_prompts = prompts()
    torch.manual_seed(SEED)
    scores, kls, times = [], [], []
    for u in range(UPDATES):
        t0 = time.time()
        batch = all_prompts[u * BATCH % len(all_prompts):][:BATCH]
        b = ppo.rollout(model, head, tok, [[]] * BATCH, batch, reward, cfg, kl_coef=0.05)
        ppo.ppo_epochs(model, head, optimizer, b, cfg, 1.0, torch.Generator().manual_seed(u))
        times.append(time.time() - t0)
        scores.append(float(b["scores"].mean()))
        kls.append(float(b["kl"].sum(1).mean()))
    trainable = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) + 65
    weights = sum(p.numel() for p in model.parameters()) + 65
    return summary("rlft", scores, kls, times, trainable, weights)


def run_trl112() -> dict:
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = tokenizer()
    model, cfg = policy()
    value = LlamaForSequenceClassification(cfg.__class__(**{**cfg.to_dict(), "num_labels": 1}))

    class Counter(torch.nn.Module):
        """Duck-typed reward model: 'hidden state' = 0.25 x targets so far; TRL reads it at the last token."""

        base_model_prefix = "model"

        def __init__(self):
            super().__init__()
            self.model = self._backbone
            self.score = torch.nn.Identity()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def _backbone(self, input_ids=None, **kwargs):
            is_target = (input_ids % 10 == 0) & (input_ids >= 4)
            return SimpleNamespace(hidden_states=[0.25 * is_target.float().cumsum(1).unsqueeze(-1)])

    ds = Dataset.from_dict({"input_ids": prompts()})
    args = PPOConfig(output_dir="/tmp/rlft-trl112-bench", per_device_train_batch_size=BATCH, num_mini_batches=2,
                     gradient_accumulation_steps=1, num_ppo_epochs=4, response_length=RESPONSE, temperature=0.7,
                     kl_coef=0.05, learning_rate=5e-3, lr_scheduler_type="constant", total_episodes=BATCH * UPDATES,
                     missing_eos_penalty=None, stop_token="eos", bf16=False, use_cpu=True, report_to="none",
                     num_sample_generations=0, save_strategy="no", seed=SEED, logging_steps=1)
    import numpy as np

    np.random.seed(SEED)  # trl 1.12 shuffles minibatches with numpy and never seeds it (ppo.md §4)
    trainer = PPOTrainer(args=args, processing_class=tok, model=model, ref_model=None, reward_model=Counter(),
                         train_dataset=ds, value_model=value, peft_config=lora("CAUSAL_LM"))
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    logs = [e for e in trainer.state.log_history if "objective/scores" in e]
    scores = [e["objective/scores"] for e in logs]
    kls = [e["objective/kl"] for e in logs]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    weights = sum(p.numel() for p in trainer.model.parameters())
    return summary("trl 1.12", scores, kls, [wall / max(len(logs), 1)] * len(logs), trainable, weights)


def summary(name, scores, kls, times, trainable, weights) -> dict:
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"implementation": name, "updates": len(scores), "score_first5": mean(scores[:5]),
            "score_last5": mean(scores[-5:]), "kl_last5": mean(kls[-5:]), "seconds_per_update": mean(times),
            "trainable_parameters": trainable, "parameters_in_memory": weights, "peak_rss_mib": peak_rss_mib(),
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["rlft", "trl112"], required=True)
    p.add_argument("--seed", type=int, default=SEED, help="seeds the weights, the prompts and the sampling")
    a = p.parse_args()
    SEED = a.seed
    print(json.dumps({**(run_rlft() if a.impl == "rlft" else run_trl112()), "seed": SEED}))
