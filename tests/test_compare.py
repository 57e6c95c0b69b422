"""`rlft compare`: the non-dominated front, and a report with plots from finished runs."""

from __future__ import annotations

import json

from rlft import cli, runs
from rlft.eval import compare


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
    run.finish({"parent": parent, "artifacts": {}})
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
    runs.start("sft", tmp_path / "sft", {}, False, False).finish({})
    assert cli.main(["compare", str(tmp_path / "sft"), "--out", str(tmp_path / "c")]) == 2
    assert "no eval.json" in capsys.readouterr().err and not (tmp_path / "c").exists()
