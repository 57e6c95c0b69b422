"""An optional model judge (`eval.judge: MODEL_OR_RUN`) for users who have a judge model.

Pairwise and in both orders: the judge reads the customer's message and two answers and is asked
which is better; the probability it puts on "A" against "B" as its next token is read off, once
with our answer first and once second, and the two are averaged, so a judge that prefers a
position cancels out (Zheng et al. 2023, MT-Bench, arXiv:2306.05685, section 3.4). The win rate
is the mean of that probability; the length-controlled win rate removes what answer length alone
predicts (Dubois et al. 2024, AlpacaEval 2, arXiv:2404.04475), see `metrics.length_controlled_win_rate`.
A model or run folder here is a judge the policy never trained against; a user's choice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlft import models, runs
from rlft.eval import metrics

PROMPT = ("A customer wrote to a shop's support team:\n\n{customer}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
          "Which answer is more correct, helpful and polite? Reply with the single letter A or B.")


def load_judge(spec: str):
    """(model, tokenizer) of a finished run folder or of a model name or folder."""
    if (Path(spec) / "manifest.json").is_file():
        manifest = runs.read_manifest(spec)
        return models.run_model(spec, manifest), models.load_tokenizer(manifest["recipe"]["model"])
    return models.load_causal_lm(spec), models.load_tokenizer(spec)


@torch.no_grad()
def prefer_first(model, tok, customers: list[str], firsts: list[str], seconds: list[str],
                 batch_size: int = 8) -> list[float]:
    """P(judge answers "A") / (P("A") + P("B")), with the first answer shown as A."""
    a_id, b_id = (tok.encode(x, add_special_tokens=False)[0] for x in ("A", "B"))
    texts = [tok.apply_chat_template([{"role": "user", "content": PROMPT.format(customer=c, a=a, b=b)}],
                                     tokenize=False, add_generation_prompt=True)
             for c, a, b in zip(customers, firsts, seconds)]
    side, tok.padding_side = tok.padding_side, "left"  # the next token's logits sit at the last position
    out = []
    try:
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
            logits = model(**enc).logits[:, -1, :].float()  # (B, V)
            pair = torch.stack([logits[:, a_id], logits[:, b_id]], dim=-1).softmax(-1)  # (B, 2)
            out += pair[:, 0].tolist()
    finally:
        tok.padding_side = side
    return out


def judge_pairs(model, tok, customers: list[str], ours: list[str], theirs: list[str]) -> dict:
    """Win probability of ours over theirs per task (both orders averaged), the win rate and the
    length-controlled win rate."""
    first = prefer_first(model, tok, customers, ours, theirs)
    second = prefer_first(model, tok, customers, theirs, ours)
    wins = [(p + (1 - q)) / 2 for p, q in zip(first, second)]
    length_deltas = [len(a.split()) - len(b.split()) for a, b in zip(ours, theirs)]
    return {"win_rate_vs_parent": metrics.mean(wins),
            "length_controlled_win_rate": metrics.length_controlled_win_rate(wins, length_deltas),
            "position_consistency": metrics.mean([float((p > 0.5) == (q < 0.5)) for p, q in zip(first, second)])}
