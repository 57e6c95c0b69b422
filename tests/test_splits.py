"""The test split is what the README reports: nothing that trains or tunes may read it.

Every training stage runs here with its drift budget (and GRPO with its KL to the reference) while
the test split's generator raises, so a stage that read it would fail; and recipes that point
anything read during training at it are refused before anything is written.
"""

from __future__ import annotations

import json

import pytest

from rlft import cli
from rlft.tasks import harbor
from tests.conftest import cli_args, tree

BUDGETS = ["eval.enabled=false", "budget.max_kl_task=100", "budget.max_general_ppl_drift=100", "budget.every=1",
           "budget.samples=4"]


@pytest.fixture
def test_split_forbidden(monkeypatch):
    """Harbor's task_rows as every stage reaches it (the task interface) raises on the test split."""
    task_rows = harbor.task_rows

    def guarded(seed: int, n: int, split: str) -> list[dict]:
        if split == "test":
            raise AssertionError("a training path read the test split")
        return task_rows(seed, n, split)

    monkeypatch.setattr(harbor, "task_rows", guarded)


@pytest.mark.parametrize("stage,sets", [
    ("sft", ["train.max_steps=2", "data.n_train=16", "data.n_val=8", "train.batch_size=8", "lora.r=4",
             "train.eval_steps=0"]),
    ("dpo", ["train.max_steps=2", "data.n_train=16", "data.n_val=8", "train.batch_size=8", "lora.r=4",
             "train.eval_steps=0"]),
    ("grpo", ["data.n_train=16", "train.batch_size=8", "grpo.num_generations=4", "grpo.max_completion_length=12",
              "train.max_steps=2", "train.logging_steps=1", "lora.r=4", "grpo.reward=house_tone"]),
    ("ppo", ["data.n_train=64", "ppo.rollout_batch_size=8", "ppo.forward_batch_size=8", "ppo.micro_batch_size=4",
             "ppo.mini_batches=2", "ppo.ppo_epochs=1", "ppo.response_length=12", "ppo.updates=2", "lora.r=4",
             "ppo.reward=house_tone"]),
])
def test_no_training_stage_reads_the_test_split(stage, sets, tiny_model_dir, sft_lora_run, tmp_path,
                                                test_split_forbidden):
    parent = [] if stage == "sft" else [f"parent={sft_lora_run}"]
    out = tmp_path / stage
    assert cli.main(cli_args(stage, [f"model={tiny_model_dir}", *parent, *sets, *BUDGETS], out)) == 0
    history = json.loads((out / "manifest.json").read_text())["budget"]["history"]
    assert history and all("kl_ref_greedy" in h for h in history)  # the budget did read task prompts (dev)


def test_the_guard_would_catch_a_read(test_split_forbidden):
    from rlft import data

    with pytest.raises(AssertionError, match="test split"):
        data.load("harbor_test", "tasks", 0, 11)
    assert data.load("harbor_dev", "tasks", 0, 11)


@pytest.mark.parametrize("key", ["data.train", "data.validation", "eval.dev_tasks"])
def test_pointing_training_at_the_test_split_is_refused(key, tmp_path, capsys, runs_dir):
    before = tree(tmp_path)
    assert cli.main(cli_args("sft", [f"{key}=harbor_test"], tmp_path / "sft")) == 2
    err = capsys.readouterr().err
    assert key in err and "test split" in err and "recipes/customer_support/sft.yaml" in err
    assert tree(tmp_path) == before


def test_shipped_recipes_report_the_test_split_and_tune_on_dev():
    from pathlib import Path

    from rlft.config import load_recipe

    for path in sorted(Path("recipes").rglob("*.yaml")):
        if path.parent.name == "accelerate" or path.stem == "base":
            continue
        if path.parent.name == "sweeps":  # a sweep evaluates every trial on its recipe's dev split
            from rlft import sweep

            assert sweep.load(path).dev_tasks == "harbor_dev", path
            continue
        stage = path.stem.split("_")[0]  # rm_minilm.yaml is an rm recipe, sft_prompted.yaml an sft one
        recipe = load_recipe(stage, path)
        if stage != "rm":
            assert recipe.eval.tasks == "harbor_test" and recipe.eval.dev_tasks == "harbor_dev", path
