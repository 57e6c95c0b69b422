"""Spread and verdicts for every benchmark row: at least 5 repeats, interleaved (A B A B ...).

A row's figure is a ratio measured once per round, both sides in the same round. The verdict reads
the whole range of those ratios: *met* when every round meets the target, *missed* when none does,
*within noise* when the range straddles it.
"""

from __future__ import annotations

import operator
import statistics

ROUNDS = 5
"""The least number of interleaved rounds a verdict may rest on."""

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def spread(values: list[float]) -> dict:
    """min, median and max of one side's (or one ratio's) repeats, with the repeats themselves."""
    values = [float(v) for v in values]
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "values": values}


def ratios(ours: list[float], theirs: list[float]) -> dict:
    """Round by round ours / theirs: rounds pair up because they ran next to each other."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} rounds against {len(theirs)}: a ratio pairs rounds")
    return spread([a / b for a, b in zip(ours, theirs)])


def verdict(ratio: dict, target: str) -> str:
    """'met', 'within noise' or 'missed' for a target such as '<= 0.8' over the whole ratio range."""
    op, threshold = target.split()
    meets = [_OPS[op](r, float(threshold)) for r in ratio["values"]]
    return "met" if all(meets) else "missed" if not any(meets) else "within noise"
