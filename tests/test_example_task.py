"""A task of one's own plugs in as Harbor Goods does (tests/example_task.py, named by a recipe's `task`):
its data sets resolve through the same loader, its reward through the same registry, a recipe naming it
trains and is evaluated through the real entry point by its own judge and tone, and a module that lacks
part of the interface is refused before anything runs."""

from __future__ import annotations

import json

import pytest
import yaml

import reward_models
from rlft import cli, data
from rlft.errors import InputError
from tests import example_task

TASK = "tests.example_task"


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.unit
def test_its_data_sets_resolve_through_the_loader_harbor_s_do(capsys):
    assert data.names(TASK)[:8] == ("sums_sft", "sums_sft_val", "sums_pairs", "sums_pairs_val", "sums_prompts",
                                    "sums_dev", "sums_test", "sums_test_messy")
    assert data.load("sums_sft", "conversational", 3, 5, task=TASK) == example_task.sft_rows(3, 5, "train", "sft")
    assert data.load("sums_pairs_val", "preference", 3, 4, task=TASK) == example_task.pair_rows(3, 4, "dev", "pairs_val")
    assert data.load("sums_prompts", "prompt_only", 3, 4, task=TASK) == example_task.prompt_rows(3, 4, "train", "prompts")
    test = data.load("sums_test", "tasks", 3, 6, task=TASK)
    assert [t["id"] for t in test] == [f"sums-test-{i:04d}" for i in range(6)] and all(t["reference"] for t in test)
    messy = data.load("sums_test_messy", "tasks", 3, 6, task=TASK)
    assert [t["id"] for t in messy] == [t["id"] for t in test] and messy != test  # same tasks, noised customers
    assert (data.split_of("sums_dev", TASK), data.split_of("sums_sft", TASK)) == ("dev", "train")
    assert data.test_sets(TASK) == ("sums_test", "sums_test_messy")
    # one task per recipe: Harbor's names are unknown under this task, and this task's under Harbor's
    with pytest.raises(InputError, match="sums_sft_val"):
        data.load("harbor_sft", "conversational", 0, 4, task=TASK)
    with pytest.raises(InputError, match="harbor_sft_val"):
        data.load("sums_sft", "conversational", 0, 4)
    assert cli.main(["data", "list", "--task", TASK]) == 0
    assert "sums_test_messy" in capsys.readouterr().out.split()


@pytest.mark.unit
def test_its_reward_and_judge_are_reached_through_the_task():
    """'What is 2 plus 3?': 5 is the sum (reward 1, judged correct when polite), 6 is not (reward 0)."""
    reward = reward_models.load("sums_correct", TASK)
    assert reward([_user("What is 2 plus 3?")] * 2, ["It is 5, thanks.", "It is 6."]) == [1.0, 0.0]
    with pytest.raises(InputError, match="sums_correct"):
        reward_models.load("sums_correct")  # a Harbor recipe cannot name it
    with pytest.raises(InputError, match="harbor_facts"):
        reward_models.load("harbor_facts", TASK)  # nor this task's recipe Harbor's
    task = data.load("sums_dev", "tasks", 0, 1, task=TASK)[0]
    a, b = example_task._numbers(task["messages"][-1]["content"])
    good = example_task.judge_task(task, task["reference"])
    assert good.correct and good.rank() == (True, 1.0, 1.0)
    wrong = example_task.judge_task(task, f"Thank you! It is {a + b + 1}.")
    assert not wrong.correct and wrong.coverage == 0.0 and wrong.rank() < good.rank()
    rude = example_task.judge_task(task, f"{a + b}. Obviously.")
    assert not rude.correct and rude.reasons == ("impolite",) and rude.rank() < good.rank()
    assert example_task.judge_task(task, "I cannot help with that.").deflects


def _recipe(tmp_path, name: str, **keys) -> str:
    path = tmp_path / name / "sft.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(keys))
    return str(path)


def test_an_sft_run_on_it_is_evaluated_by_its_own_judge(tiny_model_dir, tmp_path):
    recipe = _recipe(tmp_path, "sums", task=TASK, model=str(tiny_model_dir), lora={"enabled": True, "r": 4},
                     data={"train": "sums_sft", "validation": "sums_sft_val", "n_train": 24, "n_val": 8},
                     train={"max_steps": 3, "batch_size": 8, "eval_steps": 0, "save_steps": 3},
                     eval={"tasks": "sums_test", "dev_tasks": "sums_dev", "n_tasks": 8, "max_new_tokens": 12,
                           "n_general": 4, "n_samples": 8})
    run = tmp_path / "runs" / "sft"
    assert cli.main(["sft", "--recipe", recipe, "--output-dir", str(run)]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    train = data.load("sums_sft", "conversational", 0, 24, task=TASK)
    assert manifest["recipe"]["task"] == TASK and manifest["data"]["name"] == "sums_sft"
    assert manifest["data"]["sha256"] == data.sha256_rows(train + data.load("sums_sft_val", "conversational", 0, 8,
                                                                            task=TASK))
    ev = json.loads((run / "eval.json").read_text())
    assert (ev["tasks_file"], ev["split"], ev["win_rate_judge"]) == ("sums_test", "test", "sums.judge")
    assert ev["proxy"]["reward"] == {"sums_correct": 1.0}
    # the figures are the example task's judge and tone on the answers eval.json keeps, not Harbor's
    tasks = data.load("sums_test", "tasks", 0, 8, task=TASK)
    answers = [s["response"] for s in ev["samples"]]
    assert [s["prompt"] for s in ev["samples"]] == [t["messages"][-1]["content"] for t in tasks]
    judged = [example_task.judge_task(t, a) for t, a in zip(tasks, answers)]
    assert ev["judge"]["task_accuracy"] == pytest.approx(sum(j.correct for j in judged) / 8)
    assert ev["judge"]["coverage"] == pytest.approx(sum(j.coverage for j in judged) / 8)
    assert ev["tone_score"] == pytest.approx(sum(example_task.tone_score(t["messages"][-1]["content"], a)
                                                 for t, a in zip(tasks, answers)) / 8)
    # `rlft eval` reads the task back from the manifest: its dev split, judged by its judge
    assert cli.main(["eval", "--run", str(run), "--tasks", "sums_dev", "--out", str(tmp_path / "dev.json")]) == 0
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert (dev["split"], dev["judge"]["name"], dev["n_tasks"]) == ("dev", "sums.judge", 8)


@pytest.mark.unit
@pytest.mark.parametrize("module, said", [
    ("sums_without_judge", "lacks judge_task"),
    ("no_such_task_module", "cannot import the task module 'no_such_task_module'"),
])
def test_a_task_module_that_is_not_one_is_refused(module, said, tmp_path, monkeypatch, capsys):
    """A module missing part of the interface, or none at all: exit 2 naming the recipe, the key and what lacks."""
    (tmp_path / "sums_without_judge.py").write_text("from tests.example_task import *  # noqa: F403\n"
                                                    "del judge_task  # noqa: F821\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = _recipe(tmp_path, "bad", task=module, data={"train": "sums_sft", "validation": "sums_sft_val"},
                     eval={"tasks": "sums_test", "dev_tasks": "sums_dev"})
    assert cli.main(["sft", "--recipe", recipe, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}: task:" in err and said in err
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_a_recipe_of_its_own_task_that_kept_harbor_s_data_is_refused(tmp_path, capsys):
    """task: tests.example_task with the default data.train (harbor_sft) would train on Harbor: exit 2."""
    recipe = _recipe(tmp_path, "kept", task=TASK, eval={"tasks": "sums_test", "dev_tasks": "sums_dev"})
    assert cli.main(["sft", "--recipe", recipe, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data.train is 'harbor_sft', a data set of the task 'harbor'" in err and "sums_sft" in err
    with pytest.raises(InputError, match="sums_test', the test split"):
        from rlft.config import load_recipe

        load_recipe("sft", _recipe(tmp_path, "peek", task=TASK, data={"train": "sums_sft", "validation": "sums_test"},
                                   eval={"tasks": "sums_test", "dev_tasks": "sums_dev"}))
