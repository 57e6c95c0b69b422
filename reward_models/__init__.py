"""Rewards that PPO, GRPO and evaluation share: `reward(prompts, completions) -> list[float]`.

prompts are chat message lists, completions are text; a reward may use its own tokenizer.
The rule rewards a recipe may name are its task's `REWARDS` (rlft/tasks/__init__.py: harbor_facts and
house_tone for Harbor Goods); add a reward of your own by writing such a function and listing it in
`RULES`, or in the REWARDS of a task of your own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from reward_models.learned import Ensemble, LearnedReward
from rlft import tasks
from rlft.errors import InputError

Reward = Callable[[list[list[dict]], list[str]], list[float]]
RULES: dict[str, Reward] = {}
"""Rule rewards of your own that any recipe may name, besides its task's."""


def rules(task: str = tasks.DEFAULT) -> dict[str, Reward]:
    """The rule rewards a recipe of this task may name: the task's REWARDS and RULES."""
    return {**tasks.load(task).REWARDS, **RULES}


def one(name: str, task: str = tasks.DEFAULT) -> Reward:
    """A rule by name (see `rules`), `learned:RUN_DIR` (a trained rm run), or `ensemble:RUN_DIR,RUN_DIR,...`."""
    kind, _, arg = name.partition(":")
    if kind == "learned" and arg:
        return LearnedReward(arg)
    if kind == "ensemble" and arg:
        return Ensemble([LearnedReward(p) for p in arg.split(",")])
    named = rules(task)
    if name in named:
        return named[name]
    raise InputError(f"unknown reward {name!r}; rewards: {', '.join(named)}, learned:RUN_DIR, "
                     f"ensemble:RUN_DIR,RUN_DIR")


def load(spec: str | dict[str, float], task: str = tasks.DEFAULT) -> Reward:
    """A reward by name (see `one`), or a weighted sum {name: weight, ...} of rewards; task: the recipe's."""
    if isinstance(spec, str):
        spec = {spec: 1.0}
    rewards = {name: one(name, task) for name in spec}

    def weighted(prompts: list[list[dict]], completions: list[str]) -> list[float]:
        total = [0.0] * len(completions)
        for name, weight in spec.items():
            scores = checked(name, rewards[name], prompts, completions)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total

    return weighted


def checked(name: str, reward: Reward, prompts: list[list[dict]], completions: list[str]) -> list[float]:
    """Call a reward and refuse what it returns wrongly, naming the reward and the sample."""
    try:
        scores = list(reward(prompts, completions))
    except Exception as e:  # a reward is user code: say which one failed, on what
        raise RuntimeError(f"reward {name!r} raised {type(e).__name__}: {e}") from e
    if len(scores) != len(completions):
        raise RuntimeError(f"reward {name!r} returned {len(scores)} scores for {len(completions)} completions")
    for i, s in enumerate(scores):
        if not isinstance(s, (int, float)) or not math.isfinite(s):
            raise RuntimeError(f"reward {name!r} returned {s!r} for sample {i}: {completions[i][:120]!r}")
    return [float(s) for s in scores]
