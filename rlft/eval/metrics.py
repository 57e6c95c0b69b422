"""Evaluation metrics as pure functions: strings and floats in, floats out. No I/O, no models."""

from __future__ import annotations

import math
import random
import re


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (better than the normal one near 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: list[float], seed: int, resamples: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean, resampling the values (tasks) with replacement."""
    if not values:
        return (0.0, 1.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def cluster_bootstrap_interval(values: list[float], clusters: list[str], seed: int,
                               resamples: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean that resamples whole clusters (the customer templates
    tasks were generated from) with replacement, so tasks that share a template count as one draw of
    phrasing, not many (Field & Welsh 2007, the cluster bootstrap). Each resample's mean is over its tasks."""
    if not values:
        return (0.0, 1.0)
    groups: dict[str, list[float]] = {}
    for v, c in zip(values, clusters):
        groups.setdefault(c, []).append(v)
    names = sorted(groups)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        picked = [groups[name] for name in rng.choices(names, k=len(names))]
        means.append(sum(sum(g) for g in picked) / sum(len(g) for g in picked))
    means.sort()
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def ratio_interval(nums: list[float], dens: list[float], seed: int, resamples: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval of sum(nums) / sum(dens) that resamples the (num, den) pairs whole:
    a per-token mean over answers of different lengths, each answer one draw (e.g. KL per token, the
    answer's KL summed over its tokens and its token count)."""
    if not nums or not sum(dens):
        return (0.0, 0.0)
    rng = random.Random(seed)
    idx = range(len(nums))
    ratios = []
    for _ in range(resamples):
        picked = rng.choices(idx, k=len(nums))
        ratios.append(sum(nums[i] for i in picked) / max(sum(dens[i] for i in picked), 1))
    ratios.sort()
    return (ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1])


def length_controlled_win_rate(wins: list[float], length_deltas: list[float], steps: int = 50,
                               l2: float = 1e-3) -> float | None:
    """Win rate with what answer length alone predicts removed (AlpacaEval 2's length control, Dubois et al.
    2024, reduced to one feature): fit logit P(win_i) = theta + phi * tanh(d_i / sd(d)) to the (soft) wins by
    Newton's method on the log-loss, then report sigmoid(theta), the win rate at equal length. A small
    ridge on both weights keeps the fit finite when every delta is 0 (then phi = 0 and theta = logit(mean))
    or the wins are all 0 or all 1."""
    if not wins:
        return None
    n = len(wins)
    mean_d = sum(length_deltas) / n
    sd = math.sqrt(sum((d - mean_d) ** 2 for d in length_deltas) / n)
    x = [math.tanh(d / sd) if sd > 0 else 0.0 for d in length_deltas]
    theta = phi = 0.0
    for _ in range(steps):
        g_t = g_p = 0.0
        h_tt = h_tp = h_pp = 0.0
        for xi, yi in zip(x, wins):
            p = 1 / (1 + math.exp(-(theta + phi * xi)))
            g_t += p - yi
            g_p += (p - yi) * xi
            w = p * (1 - p)
            h_tt, h_tp, h_pp = h_tt + w, h_tp + w * xi, h_pp + w * xi * xi
        g_t, g_p = g_t / n + l2 * theta, g_p / n + l2 * phi
        h_tt, h_tp, h_pp = h_tt / n + l2, h_tp / n, h_pp / n + l2
        det = h_tt * h_pp - h_tp * h_tp
        theta -= (h_pp * g_t - h_tp * g_p) / det
        phi -= (h_tt * g_p - h_tp * g_t) / det
    return 1 / (1 + math.exp(-theta))


def check_task(response: str, required: list[str], forbidden: list[str]) -> tuple[bool, float]:
    """(correct, fact recall): correct when every required pattern matches and no forbidden one does."""
    hits = [re.search(p, response, re.IGNORECASE) is not None for p in required]
    bad = any(re.search(p, response, re.IGNORECASE) is not None for p in forbidden)
    recall = sum(hits) / len(hits) if hits else 0.0
    return (all(hits) and not bad), recall


def exact_match(response: str, answer: str) -> bool:
    """Exact match after collapsing whitespace."""
    return " ".join(response.split()) == " ".join(answer.split())


def distinct_n(texts: list[str], n: int = 2) -> float:
    """|unique n-grams| / |n-grams| over all texts, on whitespace words (Li et al. 2016)."""
    grams = [tuple(w[i:i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
