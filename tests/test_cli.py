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
