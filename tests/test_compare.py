"""`rlft compare`: the non-dominated front, and a report with plots from finished runs."""

from __future__ import annotations

import json

import pytest

from rlft import cli, runs
from rlft.eval import compare
from tests.conftest import full_manifest

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def test_pareto_front_hand_computed():
    """(acc, drift): (0.5, 0.1) and (0.9, 0.3) are on the front; (0.4, 0.2) is dominated by (0.5, 0.1);
    (0.8, 0.5) by (0.9, 0.3)."""
    points = [(0.4, 0.2), (0.5, 0.1), (0.9, 0.3), (0.8, 0.5)]
    assert compare.pareto_front(points) == [1, 2]


def _fake_run(folder, stage, parent, acc, tone, kl):
    run = runs.start(stage, folder, {"stage": stage}, False, False)
    log = ([{"update": 1, "objective/scores": 0.2}, {"update": 2, "objective/scores": 0.5}] if stage == "ppo"
           else [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    (run.work / "train_log.json").write_text(json.dumps(log))
    run.finish(full_manifest({"parent": parent, "artifacts": {}}))
    ev = {"task_accuracy": acc, "task_accuracy_ci": [acc - 0.1, acc + 0.1], "tone_score": tone, "kl_task_base": kl,
          "probe_accuracy": {"count_up": 0.9, "count_down": 0.8},
          "parent": {"run": "rlft-tiny", "task_accuracy": 0.0, "fact_recall": 0.1, "tone_score": 0.3}}
    (folder / "eval.json").write_text(json.dumps(ev))


def test_compare_writes_report_json_and_plots(tmp_path, capsys):
    _fake_run(tmp_path / "sft", "sft", None, 0.6, 0.8, 0.5)
    _fake_run(tmp_path / "dpo", "dpo", str(tmp_path / "sft"), 0.65, 0.9, 0.6)
    _fake_run(tmp_path / "ppo", "ppo", str(tmp_path / "sft"), 0.7, 0.85, 0.7)
    out = tmp_path / "compare"
    assert cli.main(["compare", *(str(tmp_path / s) for s in ("sft", "dpo", "ppo")), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["stage"] for r in report["runs"]] == ["sft", "dpo", "ppo"]
    assert "reward_curves.png" in report["plots"]
    assert report["runs"][1]["delta_task_accuracy_vs_parent"] == 0.65
    for png in report["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "| run |" in (out / "report.md").read_text()


def test_compare_refuses_unevaluated_or_unfinished_runs(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert cli.main(["compare", str(tmp_path / "half"), "--out", str(tmp_path / "c")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    runs.start("sft", tmp_path / "sft", {}, False, False).finish(full_manifest({}))
    assert cli.main(["compare", str(tmp_path / "sft"), "--out", str(tmp_path / "c")]) == 2
    assert "no eval.json" in capsys.readouterr().err and not (tmp_path / "c").exists()


def _judged(folder, acc, parent_acc, wins, revision=2):
    ev = json.loads((folder / "eval.json").read_text())
    ev.update({"harness_revision": revision, "tasks_file": "harbor_test",
               "judge": {"task_accuracy": acc, "parent": {"task_accuracy": parent_acc},
                         "win_tie_loss_vs_parent": {"wins": wins, "ties": 10 - wins, "losses": 0,
                                                    "tie_share": (10 - wins) / 10}}})
    (folder / "eval.json").write_text(json.dumps(ev))


def test_runs_of_one_method_over_seeds_are_summarised_by_mean_min_and_max(tmp_path):
    """Three seeds of sft judged 0.2, 0.3, 0.4 against parents at 0.1: mean 0.3 in [0.2, 0.4]; the
    paired delta 0.2 in [0.1, 0.3]; ties 8, 7 and 6 of 10: mean 0.7."""
    dirs = []
    for seed, acc in enumerate((0.2, 0.3, 0.4)):
        run = tmp_path / f"seed{seed}" / "sft"
        run.parent.mkdir()
        _fake_run(run, "sft", None, 0.5, 0.8, 0.5)
        _judged(run, acc, 0.1, wins=2 + seed)
        dirs.append(run)
    report = compare.report(dirs, tmp_path / "out")
    sft = report["methods"]["sft"]
    assert sft["n_seeds"] == 3 and report["warning"] is None
    acc = sft["figures"]["judge_task_accuracy"]
    assert acc["mean"] == pytest.approx(0.3) and (acc["min"], acc["max"]) == (0.2, 0.4)
    delta = sft["figures"]["judge_delta_vs_parent"]
    assert abs(delta["min"] - 0.1) < 1e-12 and abs(delta["max"] - 0.3) < 1e-12
    assert abs(sft["figures"]["tie_share"]["mean"] - 0.7) < 1e-12
    assert "Methods over seeds" in (tmp_path / "out" / "report.md").read_text()


def test_runs_of_different_harness_revisions_are_not_set_side_by_side_silently(tmp_path, capsys):
    _fake_run(tmp_path / "old", "sft", None, 0.5, 0.8, 0.5)  # an eval.json from before revisions
    _fake_run(tmp_path / "new", "sft", None, 0.5, 0.8, 0.5)
    _judged(tmp_path / "new", 0.3, 0.1, wins=5)
    report = compare.report([tmp_path / "old", tmp_path / "new"], tmp_path / "out")
    assert "not comparable" in report["warning"] and "revision 1" in report["warning"]
    assert "not comparable" in (tmp_path / "out" / "report.md").read_text()
    assert "warning" in capsys.readouterr().out
