"""Prior-skill probes: small verifiable skills the base learns in pretraining.

No fine-tuning stage touches them, so their exact-match accuracy after a stage measures
forgetting directly. The skills are counting up and counting down by one, five numbers
from a three-digit start. Each skill's probe set is a fixed set of held-out starts that
pretraining never sees (the split does not depend on any recipe's seed).
"""

from __future__ import annotations

import random

SKILLS = ("count_up", "count_down")
PROBES_PER_SKILL = 240
_STARTS = {"count_up": range(100, 696), "count_down": range(105, 701)}
_ASK = {
    "count_up": ("Count up from {s}.", "Count up from {s}, please.", "Please count up from {s}."),
    "count_down": ("Count down from {s}.", "Count down from {s}, please.", "Please count down from {s}."),
}


def _split(skill: str) -> tuple[list[int], list[int]]:
    starts = list(_STARTS[skill])
    random.Random(f"probes-{skill}").shuffle(starts)
    return sorted(starts[PROBES_PER_SKILL:]), sorted(starts[:PROBES_PER_SKILL])


def answer(skill: str, start: int) -> str:
    step = 1 if skill == "count_up" else -1
    return " ".join(str(start + step * k) for k in range(1, 6))


def probe_items(skill: str) -> list[dict]:
    """The held-out probe set: {"skill", "messages", "answer"} rows, one phrasing each."""
    _, held = _split(skill)
    return [{"skill": skill, "messages": [{"role": "user", "content": _ASK[skill][0].format(s=s)}],
             "answer": answer(skill, s)} for s in held]


def train_chats(seed: int, n: int) -> list[list[dict]]:
    """n training chats drawn from the non-probe starts, all phrasings, both skills."""
    rng = random.Random(f"probes-train-{seed}")
    pools = {skill: _split(skill)[0] for skill in SKILLS}
    out = []
    for i in range(n):
        skill = SKILLS[i % len(SKILLS)]
        s = rng.choice(pools[skill])
        ask = rng.choice(_ASK[skill]).format(s=s)
        out.append([{"role": "user", "content": ask}, {"role": "assistant", "content": answer(skill, s)}])
    return out
