"""Tasks: the problem a recipe aligns a model to, with its data, rewards and judge.

The harness, the rewards registry and the stages need only this of a task (Harbor Goods,
`rlft/tasks/harbor/`, is the built-in one):
  NAME                       the prefix of its built-in data sets (`harbor_sft`, `harbor_test`, ...)
  SPLITS                     ("train", "dev", "test"): stages read train and dev, the README test
  REWARDS                    {name: reward(prompts, completions) -> list[float]} for PPO and GRPO
  PROXY                      the reward weights eval.json reports as the training proxy
  judge.judge_task(task, answer) -> Judgement and judge.compare(task, ours, theirs) -> 1 / 0.5 / 0
A tasks file of the user's own (shared/DESIGN.md) has no judge: its required/forbidden rule is
the only one, and eval.json says so.
"""

from __future__ import annotations

from rlft.tasks import harbor

BUILTIN = {harbor.NAME: harbor}

# Built-in task sets by name: (task, split). `harbor_eval` is the name the dev split had before the
# test split existed; runs written then still evaluate on what they were tuned on.
TASK_SETS = {"harbor_dev": (harbor, "dev"), "harbor_test": (harbor, "test"),
             "harbor_test_messy": (harbor, "test"), "harbor_eval": (harbor, "dev")}


def task_set(spec: str):
    """(task, split) of a built-in task set, or (None, "file") for a tasks file of the user's."""
    return TASK_SETS.get(spec, (None, "file"))
