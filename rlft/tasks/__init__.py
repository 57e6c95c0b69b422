"""Tasks: the problem a recipe aligns a model to, with its data, rewards, tone and judge.

A recipe names its task with the top-level key `task`: `harbor` (Harbor Goods, `rlft/tasks/harbor/`,
the default) or the dotted name of an importable module of your own (`task: my_package.my_task`; a
folder you run rlft from with `python -m rlft.cli` or `make` is on the import path, else set
PYTHONPATH). The data layer, the harness, the rewards and the stages reach a task only through these
names of its module, so a task of your own plugs in exactly as Harbor does
(`tests/example_task.py` is a small one, run end to end by tests/test_example_task.py):

  NAME           str, the prefix of its data sets: `<NAME>_sft`, `_sft_val`, `_pairs`, `_pairs_val`,
                 `_prompts`, `_dev`, `_test`, `_test_messy` (rlft/data/__init__.py, KINDS)
  sft_rows(seed, n, split, stream)     n chats {"messages": [user, assistant]}
  pair_rows(seed, n, split, stream)    n pairs {"prompt", "chosen", "rejected"} (chat lists; "kind" optional)
  prompt_rows(seed, n, split, stream)  n prompts {"prompt": [user]} for PPO and GRPO
  task_rows(seed, n, split)            n tasks-file rows (shared/DESIGN.md) with "intent", "cluster" (rows of
                 one template share it: intervals resample clusters) and "reference" (a correct answer)
      split is "train", "dev" or "test", stream the data set's kind ("sft", "sft_val", ...): rows depend on
      (seed, stream, split) alone, and the first n of a larger n are the same rows. Training reads train,
      validation and tuning dev, only the evaluation test (config refuses the test sets anywhere else).
  REWARDS        {name: reward(prompts, completions) -> list[float]}: what ppo.reward, grpo.reward and
                 eval.reward may name besides learned:RUN_DIR (reward_models/__init__.py)
  PROXY          {reward name: weight}: the training reward eval.json's `proxy` reports for a run that
                 trained on none (SFT, DPO)
  judge_task(task, answer) -> Judgement   the held-out judge (rlft/tasks/judgement.py): eval.json's `judge`
  tone_score(customer, reply) -> float in [0, 1], impolite(customer, reply) -> bool: eval.json's tone_score
                 and impolite_rate (on a tasks file of your own too)
  PROBE_FILLER   sentences that say nothing no training answer says: the rm stage's length-bias probe
                 pads chosen answers with them (the intent probe pairs each dev task's reference with
                 the next task's, an answer to another question)

A tasks file of the user's (shared/DESIGN.md) has no judge: its required/forbidden rule is the only
one, and eval.json says so. There is no registry: `load` below imports the module the recipe names
and checks that it has these names.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rlft.errors import InputError
from rlft.tasks import harbor

BUILTIN = {harbor.NAME: harbor}
DEFAULT = harbor.NAME
"""The task of a recipe that names none."""
REQUIRED = ("NAME", "sft_rows", "pair_rows", "prompt_rows", "task_rows", "REWARDS", "PROXY", "judge_task",
            "tone_score", "impolite", "PROBE_FILLER")
"""What a task module must provide (the list above)."""

OLD_NAMES = {"harbor_eval": "harbor_dev"}
"""Built-in task sets by an earlier name: `harbor_eval` is the dev split's from before the test split
existed; runs written then still evaluate on what they were tuned on."""


def load(spec: str, where: str = "task") -> ModuleType:
    """The task a recipe's `task` names: a built-in one by name, or an importable module checked for
    every name of the interface. where: what to blame ("recipes/x/sft.yaml: task")."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    try:
        module = importlib.import_module(spec)
    except ImportError as e:
        raise InputError(f"{where}: cannot import the task module {spec!r} ({e}); a task is a built-in one "
                         f"({', '.join(BUILTIN)}) or an importable module (on the Python path, e.g. PYTHONPATH)") from None
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise InputError(f"{where}: the task module {spec!r} lacks {', '.join(missing)}; a task module provides "
                         f"{', '.join(REQUIRED)} (rlft/tasks/__init__.py)")
    if not isinstance(module.NAME, str) or not module.NAME.isidentifier() or module.NAME in BUILTIN:
        raise InputError(f"{where}: the task module {spec!r} has NAME {module.NAME!r}; it must be a name of "
                         f"letters, digits and _ other than a built-in task's ({', '.join(BUILTIN)})")
    builtin_rewards = [r for task in BUILTIN.values() for r in task.REWARDS]
    if not isinstance(module.REWARDS, dict) or set(module.REWARDS) & set(builtin_rewards):
        raise InputError(f"{where}: the task module {spec!r}: REWARDS must be a dict of rewards by name, none "
                         f"named as a built-in one ({', '.join(builtin_rewards)})")
    if not isinstance(module.PROXY, dict) or not set(module.PROXY) <= set(module.REWARDS):
        raise InputError(f"{where}: the task module {spec!r}: PROXY must weigh rewards of its REWARDS "
                         f"({', '.join(module.REWARDS)}), got {module.PROXY!r}")
    return module


def pretrain_rows(seed: int, n: int) -> list[dict]:
    """Harbor Goods dialogues in mixed tone, one fact each (the data set `harbor_pretrain`): rlft-tiny's
    pretraining share of the task, so that the shipped base speaks in the domain before any stage
    teaches it. Harbor's alone: the base stage builds that one model, and a task of your own needs none."""
    return harbor.generator.pretrain_rows(seed, n)
