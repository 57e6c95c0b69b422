"""The CLI hands a stage the recipe exactly as loaded: flags change what the command does, never the
recipe (whose fingerprint decides whether a run is up to date)."""

from __future__ import annotations

import pytest

from rlft import cli, config
from rlft.stages import dpo, sft

pytestmark = pytest.mark.unit  # no model is trained: the stage is replaced by a recorder


@pytest.fixture
def handed(monkeypatch):
    """The recipe each stage's run() is given, instead of training."""
    got = []

    def record(recipe, out, **kwargs):
        got.append(recipe)

    monkeypatch.setattr(sft, "run", record)
    monkeypatch.setattr(dpo, "run", record)
    return got


def test_no_eval_leaves_the_recipe_and_its_fingerprint_as_loaded(tmp_path, handed):
    path = "recipes/customer_support/sft.yaml"
    for flags in ([], ["--no-eval"]):
        assert cli.main(["sft", "--recipe", path, "--output-dir", str(tmp_path / "run"), *flags]) == 0
    plain, no_eval = handed
    assert plain.eval.enabled and no_eval.eval.enabled
    assert config.to_dict(no_eval) == config.to_dict(plain) == config.to_dict(config.load_recipe("sft", path))


def test_the_default_parent_is_part_of_the_recipe_as_loaded(tmp_path, monkeypatch, handed):
    monkeypatch.setenv("RLFT_RUNS", str(tmp_path / "runs"))
    path = "recipes/customer_support/dpo.yaml"
    assert cli.main(["dpo", "--recipe", path, "--output-dir", str(tmp_path / "a"), "--no-eval"]) == 0
    assert handed[-1].parent == str(tmp_path / "runs" / "customer_support" / "sft")
    assert handed[-1] == config.load_recipe("dpo", path, default_parent=str(tmp_path / "runs" / "customer_support" / "sft"))
    # a parent the recipe names is kept
    assert cli.main(["dpo", "--recipe", path, "--output-dir", str(tmp_path / "b"), "--no-eval",
                     "--set", f"parent={tmp_path / 'mine'}"]) == 0
    assert handed[-1].parent == str(tmp_path / "mine")


def test_a_tasks_file_is_read_once_before_training_and_handed_to_the_evaluation(tmp_path, monkeypatch):
    import json

    from rlft import data
    from rlft.eval import harness
    from rlft.stages import sft

    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "prompt": f"q{i}", "required": ["x"]}) + "\n" for i in range(3)))
    reads, handed = [], []
    read_rows = data.read_rows
    monkeypatch.setattr(data, "read_rows", lambda p: reads.append(str(p)) or read_rows(p))
    monkeypatch.setattr(sft, "run", lambda recipe, out, **kw: {"stage": "sft"})  # a finished, unevaluated run
    monkeypatch.setattr(harness, "evaluate_run", lambda out, **kw: handed.append(kw))
    assert cli.main(["sft", "--recipe", "recipes/customer_support/sft.yaml", "--output-dir", str(tmp_path / "run"),
                     "--set", f"eval.tasks={path}"]) == 0
    assert reads == [str(path)]
    assert [t["id"] for t in handed[0]["task_rows"]] == ["t0", "t1", "t2"]
