"""What a task's held-out judge says about one answer: the record the harness reads (eval.json's `judge`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Judgement:
    correct: bool
    """The answer does the task: eval.json's judge.task_accuracy is the share of correct answers."""
    coverage: float
    """Share of what the answer had to say that it said, in [0, 1]: partial credit among wrong answers."""
    courtesy: float
    """How politely it is said, in [0, 1] (0 when impolite)."""
    reasons: tuple[str, ...]
    """Why not correct, in words ("missing: ...", "impolite"): counted by the part before ':' in eval.json."""
    deflects: bool = False
    """A refusal or deflection instead of an answer: `rlft verdict` refuses a run that deflects more than its
    parent (a tone gain bought by refusing is no gain)."""

    BEST: ClassVar[tuple[bool, float, float]] = (True, 1.0, 1.0)
    """The highest rank: correct, everything said, every courtesy habit kept. No answer beats one ranked so."""

    def rank(self) -> tuple[bool, float, float]:
        """Pairwise order of two answers to the same task: correct first, then coverage, then courtesy."""
        return (self.correct, self.coverage, self.courtesy)
