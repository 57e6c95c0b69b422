"""Pure tensor math shared by evaluation and the RL stages: tensors in, tensors out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def exact_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p || q) summed over the vocabulary at each masked position.

    logits_p, logits_q: (B, T, V); mask: (B, T) bool. Returns (sum of KL over masked
    positions, number of masked positions), so batches can be pooled before dividing.
    """
    logp = F.log_softmax(logits_p.float(), dim=-1)  # (B, T, V)
    logq = F.log_softmax(logits_q.float(), dim=-1)  # (B, T, V)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T)
    return (kl * mask).sum(), mask.sum()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs. r_*: (B,)."""
    diff = r_chosen - r_rejected - (margin if margin is not None else 0.0)  # (B,)
    return -F.logsigmoid(diff).mean()
