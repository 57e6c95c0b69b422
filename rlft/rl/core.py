"""Pure tensor math shared by evaluation and the RL stages: tensors in, tensors out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def exact_kl_per_row(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p || q) summed over the vocabulary at each masked position, then over each row's positions.

    logits_p, logits_q: (B, T, V); mask: (B, T) bool. Returns (B,): a row's sum, so rows can be pooled
    (divide by mask.sum() for the KL per token) or resampled for an interval before dividing.
    """
    logp = F.log_softmax(logits_p.float(), dim=-1)  # (B, T, V)
    logq = F.log_softmax(logits_q.float(), dim=-1)  # (B, T, V)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T)
    return (kl * mask).sum(-1)  # (B,)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs. r_*: (B,)."""
    diff = r_chosen - r_rejected - (margin if margin is not None else 0.0)  # (B,)
    return -F.logsigmoid(diff).mean()


# --- PPO: Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO" -------------
# Shapes: B sequences, T response positions. `mask` is True on real response tokens (up to and
# including the stop token); every statistic below is taken over masked positions only.


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under logits: (B, T, V), (B, T) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the full distribution at each position: (B, T, V) -> (B, T)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    return -(logp.exp() * logp).sum(-1)  # (B, T)


def truncate_after_stop(responses: torch.Tensor, stop_id: int, pad_id: int
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first stop token (kept) and pad the rest.

    responses: (B, T). Returns (responses (B, T), last (B,) index of the last real token,
    has_stop (B,) bool). A response without the stop token keeps all T tokens: last = T-1.
    The pad id must differ from the stop id, or padding would read as a stop.
    """
    if stop_id == pad_id:
        raise ValueError(f"the pad token id equals the stop token id ({stop_id}); padding would read as a stop")
    B, T = responses.shape
    is_stop = responses == stop_id  # (B, T)
    has_stop = is_stop.any(dim=1)  # (B,)
    first = torch.where(has_stop, is_stop.float().argmax(dim=1), torch.full((B,), T - 1))  # (B,)
    idx = torch.arange(T).unsqueeze(0)  # (1, T)
    out = responses.masked_fill(idx > first.unsqueeze(1), pad_id)  # (B, T)
    return out, first, has_stop


def response_mask(last: torch.Tensor, T: int) -> torch.Tensor:
    """True up to and including `last` in each row: (B,) -> (B, T)."""
    return torch.arange(T).unsqueeze(0) <= last.unsqueeze(1)  # (B, T)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens' log-probs (Schulman 2020).

    k1 = log r, unbiased but can be negative; k2 = (log r)^2 / 2, biased; k3 = (r' - 1) - log r'
    with r' = ref/policy, unbiased and never negative. log r = logprobs - ref_logprobs.
    """
    log_ratio = logprobs - ref_logprobs  # (B, T)
    if estimator == "k1":
        return log_ratio
    elif estimator == "k2":
        return 0.5 * log_ratio ** 2
    elif estimator == "k3":
        return torch.exp(-log_ratio) - 1 + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; k1, k2 or k3")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = (((x - mean) * mask) ** 2).sum() / n.clamp(min=1)
    return var * n / (n - 1) if unbiased and n > 1 else var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over masked positions (unbiased variance, like TRL); 0 where masked out.
    shift_mean=False keeps the mean (used for rewards, whose sign matters)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def assemble_rewards(kl: torch.Tensor, scores: torch.Tensor, last: torch.Tensor, mask: torch.Tensor,
                     kl_coef: float) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL at every response token, plus the score at the last real one.

    kl: (B, T), scores: (B,), last: (B,). The score goes on the stop token itself (TRL 1.12 put it
    one slot later, where it was discounted by lambda; see rlft/stages/ppo.py).
    """
    rewards = -kl_coef * kl * mask  # (B, T)
    rewards[torch.arange(len(last)), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), V = 0 after the last token.

    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns = A + V.
    Positions outside mask count as terminal: their rewards and values are ignored.
    """
    rewards, values = rewards * mask, values * mask  # (B, T)
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)  # (B, T)
    next_adv = torch.zeros_like(rewards[:, 0])  # (B,)
    next_value = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        next_adv = delta + gamma * lam * next_adv
        advantages[:, t] = next_adv
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float, n_tokens: float | None = None
                ) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) as a loss to minimise.

    Summed over masked tokens and divided by n_tokens (default: this batch's token count), so
    micro-batches of one minibatch, each divided by the minibatch's count, add up to its mean.
    """
    n = mask.sum().clamp(min=1) if n_tokens is None else n_tokens
    log_ratio = logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    pg_losses = -advantages * ratio  # (B, T)
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)  # (B, T)
    pg_loss = (torch.max(pg_losses, pg_losses_clipped) * mask).sum() / n
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask),
                 "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
                 "ratio_mean": masked_mean(ratio, mask),
                 "ratio_max": (ratio * mask).max()}
    return pg_loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float, n_tokens: float | None = None) -> tuple[torch.Tensor, dict]:
    """Clipped value loss: 0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2), masked, like policy_loss."""
    n = mask.sum().clamp(min=1) if n_tokens is None else n_tokens
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)  # (B, T)
    losses = (values - returns) ** 2  # (B, T)
    losses_clipped = (clipped - returns) ** 2  # (B, T)
    vf_loss = 0.5 * (torch.max(losses, losses_clipped) * mask).sum() / n
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((losses_clipped > losses).float(), mask)}
    return vf_loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[R - V] / Var[R] over masked positions: 1 is a perfect critic, 0 a constant one."""
    return 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8)


def adaptive_kl_coef(kl_coef: float, kl: float, target: float, horizon: int, n_steps: int) -> float:
    """Ziegler et al. 2019's controller: move kl_coef toward the value that gives `target` KL.

    The proportional error is clipped to +-0.2, so one noisy batch cannot swing the coefficient.
    """
    error = max(-0.2, min(0.2, kl / target - 1))
    return kl_coef * (1 + error * n_steps / horizon)
