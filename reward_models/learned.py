"""Learned rewards: a finished `rm` run scores text with its own tokenizer and its own format."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from reward_models.scoring import as_text, score
from rlft import runs


class LearnedReward:
    """reward(prompts, completions) from an rm run folder; batched, no gradient."""

    def __init__(self, run_dir: str | Path, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        run_dir = Path(run_dir)
        manifest = runs.read_manifest(run_dir, role="reward model run")
        if manifest["stage"] != "rm":
            raise ValueError(f"{run_dir} is a {manifest['stage']} run, not a reward model (rm) run")
        self.format = manifest["artifacts"]["text_format"]
        self.max_length = manifest["recipe"]["data"]["max_length"]
        folder = run_dir / manifest["artifacts"]["model"]
        self.tok = AutoTokenizer.from_pretrained(folder)
        if self.tok.eos_token is None:
            self.tok.eos_token = self.tok.sep_token
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
        self.batch_size = batch_size

    def texts(self, prompts: list[list[dict]], completions: list[str]) -> list[str]:
        if self.format == "plain":
            return [as_text(p, c) + self.tok.eos_token for p, c in zip(prompts, completions)]
        return [self.tok.apply_chat_template(p + [{"role": "assistant", "content": c}], tokenize=False)
                for p, c in zip(prompts, completions)]

    @torch.no_grad()
    def __call__(self, prompts: list[list[dict]], completions: list[str]) -> list[float]:
        return score(self.model, self.tok, self.texts(prompts, completions), self.batch_size, self.max_length)


class Ensemble:
    """The mean of several learned rewards; their disagreement (standard deviation per sample) is kept
    in `last_disagreement`, a signal of reward hacking when it grows."""

    def __init__(self, members: list[LearnedReward]):
        self.members = members
        self.last_disagreement: list[float] = []

    def __call__(self, prompts: list[list[dict]], completions: list[str]) -> list[float]:
        scores = [m(prompts, completions) for m in self.members]  # (K, B)
        per_sample = list(zip(*scores))  # (B, K)
        self.last_disagreement = [statistics.pstdev(s) for s in per_sample]
        return [sum(s) / len(s) for s in per_sample]
