"""Harbor Goods, the built-in customer-support task, in one place.

  generator.py  the policy sheet as data, customer messages, replies, the train/dev/test splits
  tone.py       the house-tone scorer (the sheet's tone rules)
  rewards.py    the rule rewards PPO and GRPO optimise (facts and tone)
  judge.py      the held-out judge with answer keys of its own: what the README reports
This module is the task as the rest of rlft sees it (the interface in rlft/tasks/__init__.py).
"""

from __future__ import annotations

from rlft.tasks.harbor import generator, judge, rewards, tone
from rlft.tasks.harbor.generator import PROBE_FILLER, SPLITS, pair_rows, prompt_rows, sft_rows, task_rows
from rlft.tasks.harbor.judge import judge_task
from rlft.tasks.harbor.tone import impolite, tone_score

NAME = "harbor"
REWARDS = {"harbor_facts": rewards.harbor_facts, "house_tone": rewards.house_tone}
PROXY = {"harbor_facts": 1.0, "house_tone": 1.0}
"""The reward the shipped RL recipes optimise: eval.json's `proxy` when a run trained on none."""

__all__ = ["NAME", "PROBE_FILLER", "PROXY", "REWARDS", "SPLITS", "generator", "impolite", "judge", "judge_task",
           "pair_rows", "prompt_rows", "rewards", "sft_rows", "task_rows", "tone", "tone_score"]
