"""`rlft sweep`: the search space, constraints, pruning, resume and workers, first with a fake objective
(no model is trained), then with real runs of a tiny model."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlft import cli, config, sweep
from rlft.errors import InputError
from tests.conftest import tree

RECIPE = str(Path("recipes/customer_support/sft.yaml").resolve())


def _write(folder: Path, **fields) -> Path:
    spec = {"stage": "sft", "recipe": RECIPE, "trials": 12, "seed": 0,
            "space": {"train.learning_rate": "log 1e-4..1e-2", "lora.r": [4, 8, 16]},
            "objective": "judge.task_accuracy", "constraints": {"general_ppl_drift": "<= 0.3"}}
    spec.update(fields)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}))
    return path


def fake_runner(sweep_: sweep.Sweep, folder: Path, params: dict, report) -> dict:
    """A stand-in for a training run: accuracy peaks at lr = 1e-3, drift grows with lr and rank; the
    'validation loss' it reports at steps 1-3 is worse the further lr is from the peak."""
    distance = abs(math.log10(params["train.learning_rate"]) + 3)
    for step in (1, 2, 3):
        if report(step, distance + 1.0 / step):
            return {}
    return {"judge": {"task_accuracy": 1 - distance / 2}, "general_ppl_drift": params["train.learning_rate"] * 30
            * params["lora.r"] / 8}


@pytest.mark.unit
@pytest.mark.parametrize("stage,recipe,objective", [("sft", "sft.yaml", "judge.task_accuracy"),
                                                    ("ppo", "ppo.yaml", "judge.task_accuracy"),
                                                    ("rm", "rm.yaml", "pair_accuracy")])
def test_a_trial_s_settings_are_keys_its_stage_reads(tmp_path, stage, recipe, objective):
    """The sweep adds the dev-split evaluation to every trial, but not to an rm trial: rm reads no eval keys."""
    path = _write(tmp_path, stage=stage, recipe=str(Path("recipes/customer_support", recipe).resolve()),
                  space={"train.learning_rate": "log 1e-4..1e-2"}, objective=objective, constraints=None)
    spec = sweep.load(path)
    overrides = sweep.trial_overrides(spec, {"train.learning_rate": 1e-3})
    config.load_recipe(stage, spec.recipe, overrides)
    assert ("eval.enabled=true" in overrides) == (stage != "rm")


@pytest.mark.unit
@pytest.mark.parametrize("spec,expected", [
    ([8, 16, 32], ("categorical", None, None, False)),
    ("1..4", ("int", 1, 4, False)),
    ("0.0..0.1", ("float", 0.0, 0.1, False)),
    ("log 1e-5..1e-3", ("float", 1e-5, 1e-3, True)),
    ("log 8..64", ("int", 8, 64, True)),
])
def test_space_forms_parse(spec, expected):
    dim = sweep.parse_dimension("k", spec, "here")
    assert (dim.kind, dim.low, dim.high, dim.log) == expected


@pytest.mark.unit
@pytest.mark.parametrize("spec,needle", [
    ([], "non-empty list"), ("3..1", "is empty"), ("log 0..1", "positive low end"), ("ten..20", "not a number"),
    ({"low": 1}, "expected a list of choices"), ("1e-3", "expected a list of choices"),
])
def test_bad_space_entries_are_refused(spec, needle):
    with pytest.raises(InputError, match=needle):
        sweep.parse_dimension("train.learning_rate", spec, "f.yaml: space.train.learning_rate")


@pytest.mark.unit
def test_constraints_measure_the_violation():
    le = sweep.parse_constraint("general_ppl_drift", "<= 0.1", "f")
    ge = sweep.parse_constraint("retention.retention", ">= 0.9", "f")
    assert le.violation(0.05) < 0 < le.violation(0.15) and ge.violation(0.95) < 0 < ge.violation(0.8)


@pytest.mark.unit
@pytest.mark.parametrize("fields,needle", [
    ({"space": {}}, "space must be a non-empty mapping"),
    ({"space": {"train.learnin_rate": "1e-4..1e-3"}}, "space.train.learnin_rate .* Did you mean 'learning_rate'"),
    ({"space": {"lora.r": "0..8"}}, "lora.r must be positive"),
    ({"objective": "accuracy"}, "objective 'accuracy' is not a number"),
    ({"constraints": {"drift": "<= 0.1"}}, "constraints.drift: not a number"),
    ({"constraints": {"general_ppl_drift": "below 0.1"}}, "expected '<= NUMBER'"),
    ({"set": ["eval.tasks=harbor_test"]}, "evaluates every trial on the recipe's eval.dev_tasks"),
    ({"set": ["eval.dev_tasks=harbor_test"]}, "the test split"),
    ({"stage": "eval"}, "stage must be one of"),
    ({"trials": 0}, "trials must be a positive integer"),
    ({"sampler": "grid"}, "unknown key 'sampler'"),
    ({"recipe": "nowhere/sft.yaml"}, "does not exist"),
])
def test_bad_sweep_files_are_refused_by_key(tmp_path, fields, needle):
    with pytest.raises(InputError, match=needle):
        sweep.load(_write(tmp_path, **fields))


@pytest.mark.unit
def test_bad_sweeps_exit_2_and_write_nothing(tmp_path, capsys):
    path = _write(tmp_path, objective="win_rate")
    out = tmp_path / "out"
    assert cli.main(["sweep", "--sweep", str(path), "--output-dir", str(out)]) == 2
    assert "objective 'win_rate'" in capsys.readouterr().err and not out.exists()
    bad_url = "postgresql://nobody@127.0.0.1:9/none"
    assert cli.main(["sweep", "--sweep", str(_write(tmp_path)), "--output-dir", str(out), "--storage", bad_url]) == 2
    assert "cannot be opened" in capsys.readouterr().err and tree(tmp_path / "out") == {}


@pytest.mark.unit
def test_sweep_keeps_the_best_feasible_trial_and_its_front(tmp_path):
    spec = sweep.load(_write(tmp_path, prune={"pruner": "none"}), trials=12)
    out = tmp_path / "sweep"
    summary = sweep.run(spec, out, runner=fake_runner)
    done = [t for t in summary["trials"] if t["state"] == "complete"]
    assert summary["n_trials"] == 12 and len(done) == 12
    feasible = [t for t in done if t["figures"]["general_ppl_drift"] <= 0.3]
    assert [t["feasible"] for t in done] == [t in feasible for t in done]
    best = summary["best"]
    assert best["objective"] == max(t["objective"] for t in feasible)
    # the front: no completed trial is at least as accurate with less drift than a front member
    for n in summary["front"]:
        member = next(t for t in done if t["number"] == n)
        assert not any(t["objective"] >= member["objective"] and t["figures"]["general_ppl_drift"]
                       < member["figures"]["general_ppl_drift"] for t in done)
    written = config.load_recipe("sft", out / "best_recipe.yaml")
    assert written.train.learning_rate == pytest.approx(best["params"]["train.learning_rate"])
    assert written.lora.r == best["params"]["lora.r"] and written.eval.tasks == "harbor_test"
    assert (out / "front.png").stat().st_size > 0 and sum(line.startswith("| ") and line[2].isdigit()
                                                                   for line in (out / "trials.md").read_text().splitlines()) == 12


@pytest.mark.unit
def test_pruned_trials_are_the_ones_lagging_on_validation_loss(tmp_path):
    spec = sweep.load(_write(tmp_path, prune={"startup_trials": 2}), trials=12)
    summary = sweep.run(spec, tmp_path / "sweep", runner=fake_runner)
    pruned = [t for t in summary["trials"] if t["state"] == "pruned"]
    done = [t for t in summary["trials"] if t["state"] == "complete"]
    assert pruned, "TPE explores wide learning rates early, and the median pruner stops some of them"
    best_distance = min(abs(math.log10(t["params"]["train.learning_rate"]) + 3) for t in done)
    assert all(abs(math.log10(t["params"]["train.learning_rate"]) + 3) > best_distance for t in pruned)


@pytest.mark.unit
def test_a_trial_whose_worker_died_is_run_again_in_its_folder(tmp_path, monkeypatch):
    """A worker killed mid-trial leaves it RUNNING with a stale heartbeat: the next worker fails it after the
    grace period, queues the same values again, and the retry works in the same folder."""
    monkeypatch.setattr(sweep, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sweep, "GRACE_S", 2)
    spec = sweep.load(_write(tmp_path), trials=3)
    out = tmp_path / "sweep"
    out.mkdir()
    dead = sweep.study(spec, out)
    trial = dead.ask()
    params = {d.key: d.suggest(trial) for d in spec.space}
    dead._storage.record_heartbeat(trial._trial_id)  # then the worker dies without a word
    folders = []

    def runner(sweep_, folder, params_, report):
        folders.append((folder.name, params_))
        return fake_runner(sweep_, folder, params_, report)

    summary = sweep.run(spec, out, runner=runner)
    assert ("trial_000", params) in folders  # same folder, same values
    states = [t["state"] for t in summary["trials"]]
    assert states.count("fail") == 1 and states.count("complete") + states.count("pruned") == 3
    assert len({t["folder"] for t in summary["trials"] if t["state"] != "fail"}) == 3


# --- real runs of a tiny model -------------------------------------------------------------------

FAST = ["data.n_train=48", "data.n_val=16", "train.max_steps=6", "train.batch_size=8", "train.eval_steps=2",
        "train.save_steps=2", "train.logging_steps=1", "eval.n_tasks=11", "eval.max_new_tokens=12",
        "eval.n_general=4", "train.early_stopping_patience=0"]


def _tiny_sweep(tmp_path, model_dir, trials, **fields) -> Path:
    return _write(tmp_path, trials=trials, set=[f"model={model_dir}", *FAST],
                  space={"train.learning_rate": "log 1e-4..1e-2", "lora.r": [4, 8]}, **fields)


def _sweep_cmd(path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "rlft.cli", "sweep", "--sweep", str(path), "--output-dir", str(out)]


@pytest.mark.slow
def test_real_sweep_trials_are_ordinary_evaluated_runs_on_dev(tmp_path, tiny_model_dir):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--sweep", str(_tiny_sweep(tmp_path, tiny_model_dir, 3)), "--output-dir", str(out)]) == 0
    summary = json.loads((out / "trials.json").read_text())
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    assert len(summary["trials"]) == 3 and complete
    for t in complete:
        manifest = json.loads((Path(t["folder"]) / "manifest.json").read_text())
        ev = json.loads((Path(t["folder"]) / "eval.json").read_text())
        assert manifest["status"] == "complete" and manifest["recipe"]["lora"]["r"] == t["params"]["lora.r"]
        assert ev["split"] == "dev" and ev["tasks_file"] == "harbor_dev"
        assert t["objective"] == ev["judge"]["task_accuracy"]
    assert cli.main(["compare", str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "front_sweep.png").is_file()


@pytest.mark.slow
def test_killed_sweep_resumes_its_interrupted_trial_from_the_checkpoint(tmp_path, tiny_model_dir):
    path = _tiny_sweep(tmp_path, tiny_model_dir, 2, prune={"pruner": "none"})
    out = tmp_path / "sweep"
    first = subprocess.Popen(_sweep_cmd(path, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # checkpoint-2 or -4 (of 6 steps): killed before the trial can finish; polled often, since on a
    # fast or busy machine a checkpoint lives about a second before the next replaces it
    while not list((out / "trial_000.partial").glob("checkpoint-[24]/trainer_state.json")):
        assert time.time() < deadline and first.poll() is None, "the first trial never wrote a checkpoint"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)  # the worker dies; its child follows it (PR_SET_PDEATHSIG)
    first.wait()
    time.sleep(1)
    assert (out / "trial_000.partial").is_dir() and not (out / "trial_000").exists()
    second = subprocess.run(_sweep_cmd(path, out), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads((out / "trials.json").read_text())
    finished = [t for t in summary["trials"] if t["state"] == "complete"]
    assert sorted(Path(t["folder"]).name for t in finished) == ["trial_000", "trial_001"]
    assert finished[0]["params"] != finished[1]["params"]  # the resumed sweep did not redraw trial 0's values
    log = (out / "trial_000.log").read_text()
    assert log.count("$ ") == 2 and "sft: resuming from" in log.split("$ ")[-1]  # the second attempt resumed


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path, tiny_model_dir):
    path = _tiny_sweep(tmp_path, tiny_model_dir, 4, prune={"pruner": "none"})
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(_sweep_cmd(path, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env) for _ in range(2)]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    summary = json.loads((out / "trials.json").read_text())
    folders = [Path(t["folder"]).name for t in summary["trials"]]
    assert sorted(folders) == [f"trial_{i:03d}" for i in range(4)]  # four trials, each once
    assert all(t["state"] == "complete" for t in summary["trials"])
    params = [tuple(sorted(t["params"].items())) for t in summary["trials"]]
    assert len(set(params)) == 4  # the workers drew different values
    assert all("sweep sweep: trial" in o for o in outputs)  # both workers ran trials
