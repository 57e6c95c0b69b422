"""Run folders: atomic finish, no clobbering, skip when unchanged, refuse incomplete parents."""

from __future__ import annotations

import json

import pytest

from rlft import runs
from rlft.errors import InputError
from tests.conftest import full_manifest

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def test_finish_writes_manifest_last_and_moves_into_place(tmp_path):
    out = tmp_path / "sft"
    run = runs.start("sft", out, {"a": 1}, force=False, resume=False)
    assert run.work.is_dir() and not out.exists()
    (run.work / "weights.bin").write_text("w")
    run.finish(full_manifest({"parent": None, "artifacts": {}}))
    manifest = runs.read_manifest(out)
    assert manifest["status"] == "complete" and (out / "weights.bin").is_file() and not run.work.exists()


def test_same_inputs_skip_and_other_inputs_need_force(tmp_path):
    out = tmp_path / "sft"
    runs.start("sft", out, {"a": 1}, False, False).finish(full_manifest({}))
    assert runs.start("sft", out, {"a": 1}, False, False) is None
    with pytest.raises(InputError, match="--force"):
        runs.start("sft", out, {"a": 2}, False, False)
    forced = runs.start("sft", out, {"a": 2}, True, False)
    assert runs.read_manifest(out)["fingerprint"] != forced.fingerprint  # old run intact until the new one ends


def test_interrupted_attempt_needs_resume_or_force(tmp_path):
    out = tmp_path / "dpo"
    runs.start("dpo", out, {"a": 1}, False, False)
    with pytest.raises(InputError, match="--resume"):
        runs.start("dpo", out, {"a": 1}, False, False)
    assert runs.start("dpo", out, {"a": 1}, False, True) is not None
    with pytest.raises(InputError, match="other inputs"):
        runs.start("dpo", out, {"a": 2}, False, True)


def test_incomplete_parent_is_refused(tmp_path):
    (tmp_path / "sft").mkdir()
    with pytest.raises(InputError, match="not a finished run"):
        runs.read_manifest(tmp_path / "sft")
    (tmp_path / "sft" / "manifest.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(InputError, match="did not finish"):
        runs.read_manifest(tmp_path / "sft")


def test_parent_of_another_model_is_refused(tmp_path):
    out = tmp_path / "sft"
    runs.start("sft", out, {}, False, False).finish(full_manifest({"model": "rlft-tiny", "tokenizer_sha256": "abc"}))
    with pytest.raises(InputError, match="trained from model"):
        runs.check_parent(out, "Qwen/Qwen2.5-0.5B", "abc", "dpo")
    with pytest.raises(InputError, match="another tokenizer"):
        runs.check_parent(out, "rlft-tiny", "xyz", "dpo")


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    runs.atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_torn_checkpoint_is_never_resumed_from(tmp_path):
    """A kill during a save leaves checkpoint-N without trainer_state.json (transformers writes it
    last); --resume takes the newest complete one instead."""
    for step, complete in ((2, True), (4, True), (6, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_bytes(b"partial")
        if complete:
            (ckpt / "trainer_state.json").write_text("{}")
    assert runs.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert runs.latest_checkpoint(tmp_path / "missing") is None


def test_base_export_copies_a_finished_model_and_replaces_the_old_copy(tmp_path):
    from rlft.stages import base

    run = tmp_path / "base"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "model" / "training_args.bin").write_text("pickle")
    to = tmp_path / "assets" / "rlft-tiny"
    with pytest.raises(InputError, match="not a finished run"):
        base.export(run, to)
    assert not to.exists()
    (run / "manifest.json").write_text(json.dumps({"status": "complete"}))
    to.mkdir(parents=True)
    (to / "stale.safetensors").write_text("old")
    base.export(run, to)
    assert sorted(p.name for p in to.iterdir()) == ["config.json"]
    assert not list(to.parent.glob("rlft-tiny.*"))  # no temporary or old copy left behind


CONTRACT = {"stage", "status", "parent", "model", "recipe", "data", "seed", "versions", "started_at", "finished_at",
            "wall_seconds", "metrics", "artifacts"}
"""A run folder's manifest.json as DESIGN.md's contract names it."""


def _complete_manifest() -> dict:
    return {"parent": None, "model": "rlft-tiny", "model_source": None, "tokenizer_sha256": "0" * 64, "recipe": {},
            "recipe_path": None,
            "data": {"name": "harbor_sft", "sha256": "0" * 64, "n_train": 1}, "seed": 0,
            "metrics": {"train_loss": 1.0}, "artifacts": {"adapter": "adapter/"}}


def test_one_function_writes_every_manifest_with_the_contracts_fields(tmp_path):
    run = runs.Run("sft", tmp_path / "run", "fp")
    run.work.mkdir()
    manifest = json.loads(json.dumps(run.finish(_complete_manifest())))
    assert CONTRACT <= manifest.keys() and set(runs.STAGE_FIELDS) <= manifest.keys()
    assert json.loads((tmp_path / "run" / runs.MANIFEST).read_text()) == manifest
    assert manifest["warnings"] == [] and manifest["budget"] is None  # the defaults a stage may leave out


@pytest.mark.parametrize("drop", ["tokenizer_sha256", "recipe_path", "artifacts", "data.sha256"])
def test_a_manifest_missing_a_field_is_refused_before_anything_is_written(tmp_path, drop):
    manifest = _complete_manifest()
    if drop.startswith("data."):
        del manifest["data"][drop.split(".")[1]]
    else:
        del manifest[drop]
    run = runs.Run("rm", tmp_path / "run", "fp")
    run.work.mkdir()
    with pytest.raises(ValueError, match=f"rm: the manifest lacks {drop}"):
        run.finish(manifest)
    assert not (tmp_path / "run").exists() and not (run.work / runs.MANIFEST).exists()
