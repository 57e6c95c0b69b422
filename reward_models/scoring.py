"""Scoring text with a sequence-classification model: the plain-text form an encoder backbone reads,
and batched scalar scores. Shared by the rm stage (training and its probes) and learned rewards."""

from __future__ import annotations

import torch


def as_text(messages: list[dict], answer: list[dict] | str | None = None) -> str:
    """The plain-text form the encoder backbone reads."""
    lines = [f"{'Customer' if m['role'] == 'user' else 'Agent'}: {m['content']}" for m in messages]
    if answer is not None:
        lines.append(f"Agent: {answer if isinstance(answer, str) else answer[-1]['content']}")
    return "\n".join(lines)


@torch.no_grad()
def score(model, tok, texts: list[str], batch_size: int = 32, max_length: int = 256) -> list[float]:
    """The model's scalar (logit 0) for each text, in batches, without gradients."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt", add_special_tokens=True).to(device)
        out += model(**enc).logits[:, 0].float().tolist()
    return out
