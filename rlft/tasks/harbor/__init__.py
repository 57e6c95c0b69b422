"""Harbor Goods, the built-in customer-support task, in one place.

  generator.py  the policy sheet as data, customer messages, replies, the train/dev/test splits
  tone.py       the house-tone scorer (the sheet's tone rules)
  rewards.py    the rule rewards PPO and GRPO optimise (facts and tone)
  judge.py      the held-out judge with answer keys of its own: what the README reports
"""

from __future__ import annotations

from rlft.tasks.harbor import generator, judge, rewards, tone
from rlft.tasks.harbor.generator import SPLITS

NAME = "harbor"
REWARDS = {"harbor_facts": rewards.harbor_facts, "house_tone": rewards.house_tone}
PROXY = {"harbor_facts": 1.0, "house_tone": 1.0}
"""The reward the shipped RL recipes optimise: eval.json's `proxy` when a run trained on none."""

__all__ = ["NAME", "PROXY", "REWARDS", "SPLITS", "generator", "judge", "rewards", "tone"]
