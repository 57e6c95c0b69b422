"""train.report_to: checked before training, passed to TRL, and honoured by rlft's own PPO loop."""

from __future__ import annotations

import pytest

from rlft import config, sweep, tracking
from rlft.errors import InputError

pytestmark = pytest.mark.unit


def test_unknown_tracker_is_refused_by_name():
    with pytest.raises(InputError, match="train.report_to: unknown tracker 'neptune'; choose from tensorboard"):
        config.load_recipe("ppo", "recipes/customer_support/ppo.yaml", ["train.report_to=[tensorboard, neptune]"])


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_is_refused_with_the_fix(name):
    if tracking.installed(name):
        pytest.skip(f"{name} is installed here")
    with pytest.raises(InputError, match=f"the '{name}' package is not installed; run `.venv/bin/pip install {name}`"):
        config.load_recipe("sft", "recipes/customer_support/sft.yaml", [f"train.report_to={name}"])


def test_trainers_get_the_recipes_trackers(tmp_path):
    from rlft.stages import trainer_kwargs

    for report_to, expected in (("[]", "none"), ("tensorboard", ["tensorboard"])):
        recipe = config.load_recipe("sft", "recipes/customer_support/sft.yaml", [f"train.report_to={report_to}"])
        assert trainer_kwargs(recipe, tmp_path, has_validation=False)["report_to"] == expected


def test_tensorboard_tracker_writes_what_it_logs_and_none_writes_nothing(tmp_path):
    tracker = tracking.Tracker(["tensorboard"], str(tmp_path / "tb"), "run", {"train": {"learning_rate": 1e-3}})
    for step in (1, 2, 3):
        tracker.log({"objective/scores": step / 10, "update": step, "note": "text is skipped"}, step)
    tracker.close()
    scalars = sweep.read_scalars(tmp_path / "tb", "objective/scores")
    assert [step for step, _ in scalars] == [1, 2, 3] and [v for _, v in scalars] == pytest.approx([0.1, 0.2, 0.3])
    quiet = tracking.Tracker([], str(tmp_path / "none"), "run", {})
    quiet.log({"objective/scores": 1.0}, 1)
    quiet.close()
    assert not (tmp_path / "none").exists()


def test_flatten_names_nested_keys_with_dots():
    assert tracking.flatten({"train": {"learning_rate": 1e-3, "report_to": ["wandb"]}, "seed": 0}) == {
        "train.learning_rate": 1e-3, "train.report_to": ["wandb"], "seed": 0}


def test_a_sweep_keeps_tensorboard_on_for_its_pruner(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("stage: sft\nrecipe: recipes/customer_support/sft.yaml\nspace: {lora.r: [4, 8]}\n"
                    "objective: task_accuracy\nset: ['train.report_to=[]']\n")
    overrides = sweep.trial_overrides(sweep.load(path), {"lora.r": 4})
    assert overrides[-1] == "train.report_to=tensorboard" and "eval.tasks=harbor_dev" in overrides


def test_reading_a_log_folder_that_vanishes_midway_returns_nothing(tmp_path, monkeypatch):
    """A stage moves its finished <run>.partial folder into place while the sweep may be reading its logs."""
    from tensorboard.backend.event_processing import event_accumulator

    tracker = tracking.Tracker(["tensorboard"], str(tmp_path / "tb"), "run", {})
    tracker.log({"eval/loss": 1.0}, 1)
    tracker.close()

    def vanished(self):
        raise event_accumulator.directory_watcher.DirectoryDeletedError("moved")

    monkeypatch.setattr(event_accumulator.EventAccumulator, "Reload", vanished)
    assert sweep.read_scalars(tmp_path / "tb", "eval/loss") == []
