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
