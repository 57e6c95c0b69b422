"""`rlft verdict`: ship or not from eval.json alone, each reason on one line, and no run let through for
want of a figure."""

from __future__ import annotations

import json

import pytest

from rlft import cli

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def _run(tmp_path, *, ci=(0.55, 0.70), drift=0.02, kl=0.05, refusals=(0.0, 0.0), tripped=None,
         recipe=None, judge=True):
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"stage": "dpo", "status": "complete", "parent": str(tmp_path / "sft"), "seed": 0,
                "recipe": recipe or {"budget": {"max_general_ppl_drift": 0.1, "max_kl_task": 0.25}},
                "budget": {"tripped": tripped, "history": []}}
    ev = {"split": "test", "harness_revision": 2, "general_ppl_drift_parent": drift, "kl_task": kl,
          "judge": {"name": "harbor.judge", "win_rate_vs_parent": sum(ci) / 2, "refusal_rate": refusals[0],
                    "win_tie_loss_vs_parent": {"win_rate_ci": list(ci)},
                    "parent": {"refusal_rate": refusals[1]}} if judge else None}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "eval.json").write_text(json.dumps(ev))
    return run


def _verdict(run, capsys, *extra):
    code = cli.main(["verdict", "--run", str(run), *extra])
    return code, capsys.readouterr()


def test_a_run_better_beyond_its_interval_inside_the_budgets_ships(tmp_path, capsys):
    code, out = _verdict(_run(tmp_path), capsys, "--out", str(tmp_path / "verdict.json"))
    assert code == 0 and "SHIP" in out.out and "DO NOT" not in out.out
    saved = json.loads((tmp_path / "verdict.json").read_text())
    assert saved["ship"] and len(saved["checks"]) == 5 and all(c["passed"] for c in saved["checks"])


@pytest.mark.parametrize("kwargs,failed", [
    ({"ci": (0.48, 0.66)}, "better on the held-out judge"),  # the interval straddles 0.5
    ({"drift": 0.15}, "general perplexity drift within budget"),
    ({"kl": 0.30}, "KL to the parent within budget"),
    ({"tripped": {"budget": "max_kl_task", "step": 50, "value": 0.4, "limit": 0.25, "action": "warn"}},
     "no drift budget tripped unheeded in training"),
    ({"refusals": (0.05, 0.01)}, "no rise in refusals or deflections"),  # tone bought by refusing
])
def test_each_failed_check_stops_the_run_and_is_named(tmp_path, capsys, kwargs, failed):
    code, out = _verdict(_run(tmp_path, **kwargs), capsys)
    assert code == 1 and "DO NOT SHIP" in out.out
    assert f"[NO] {failed}" in out.out and out.out.count("[NO]") == 1


def test_the_command_line_budget_overrides_the_recipe(tmp_path, capsys):
    run = _run(tmp_path, drift=0.15)
    assert _verdict(run, capsys, "--max-ppl-drift", "0.2")[0] == 0


def test_a_run_made_before_the_budget_section_is_judged_by_its_own_budgets(tmp_path, capsys):
    """Its manifest stores the budgets under eval (config.MOVED): a drift of 0.15 passes its 0.2, where the
    default 0.10 would fail it."""
    run = _run(tmp_path, drift=0.15, recipe={"eval": {"max_general_ppl_drift": 0.2, "max_kl_task": 0.25}})
    code, out = _verdict(run, capsys)
    assert code == 0 and "(budget 0.2)" in out.out


def test_a_stop_budget_that_tripped_kept_weights_inside_it_and_may_ship(tmp_path, capsys):
    tripped = {"budget": "max_general_ppl_drift", "step": 50, "value": 0.2, "limit": 0.1, "action": "stop"}
    assert _verdict(_run(tmp_path, tripped=tripped), capsys)[0] == 0


def test_a_verdict_that_cannot_read_its_inputs_refuses(tmp_path, capsys):
    run = _run(tmp_path, judge=False)  # e.g. a user's tasks file, or an eval.json of harness revision 1
    code, out = _verdict(run, capsys)
    assert code == 2 and "judge" in out.err and "rlft eval --run" in out.err
    (run / "eval.json").unlink()
    code, out = _verdict(run, capsys)
    assert code == 2 and "has no eval.json" in out.err
    code, out = _verdict(tmp_path / "nowhere", capsys)
    assert code == 2 and "does not exist" in out.err
