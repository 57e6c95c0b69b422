"""Prior-skill probes: small verifiable skills the base learns in pretraining.

No fine-tuning stage touches them, so their exact-match accuracy after a stage measures
forgetting directly. The skills are counting up and counting down by one, five numbers
from a three-digit start (100 to 700). Pretraining sees every start in both directions, so
the model has to read "up" or "down", in two phrasings; the probes ask in a third phrasing
that pretraining never shows ("Now count up from 214."). What is held out is the item, not
the numbers: a tiny model does not learn to count from a number it never started from
(we tried: with held-out starts it reached 13-15%), but it does learn, and can forget, the
mapping from a request to its answer, which is what a forgetting probe needs.
"""

from __future__ import annotations

import random

SKILLS = ("count_up", "count_down")
PROBES_PER_SKILL = 240
_STARTS = range(105, 696)  # answers stay within 100..700
_ASK = {  # the last phrasing of each skill is the probes' and never trains
    "count_up": ("Count up from {s}.", "Please count up from {s}.", "Now count up from {s}."),
    "count_down": ("Count down from {s}.", "Please count down from {s}.", "Now count down from {s}."),
}


def _probe_starts(skill: str) -> list[int]:
    starts = list(_STARTS)
    random.Random(f"probes-{skill}").shuffle(starts)
    return sorted(starts[:PROBES_PER_SKILL])


def answer(skill: str, start: int) -> str:
    step = 1 if skill == "count_up" else -1
    return " ".join(str(start + step * k) for k in range(1, 6))


def probe_items(skill: str) -> list[dict]:
    """The held-out probe set: {"skill", "messages", "answer"} rows, one phrasing each."""
    return [{"skill": skill, "messages": [{"role": "user", "content": _ASK[skill][-1].format(s=s)}],
             "answer": answer(skill, s)} for s in _probe_starts(skill)]


def train_chats(seed: int, n: int) -> list[list[dict]]:
    """n training chats: every start, both skills, the training phrasings only."""
    rng = random.Random(f"probes-train-{seed}")
    pool = list(_STARTS)
    out = []
    for i in range(n):
        skill = SKILLS[i % len(SKILLS)]
        s = rng.choice(pool)
        ask = rng.choice(_ASK[skill][:-1]).format(s=s)
        out.append([{"role": "user", "content": ask}, {"role": "assistant", "content": answer(skill, s)}])
    return out
