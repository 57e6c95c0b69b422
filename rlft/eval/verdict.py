"""`rlft verdict --run DIR`: ship the run or not, against its parent, from its eval.json alone.

A run ships when all of these hold, and the answer names each one with its figures:
  1. it beats its parent on the held-out judge beyond the judge's interval: the 95% interval of the
     win rate (clustered by customer template) lies above 0.5;
  2. it stays inside every drift budget: held-out chitchat perplexity against the parent's
     (`--max-ppl-drift`, default the recipe's `budget.max_general_ppl_drift`, else 0.10), the KL to the
     parent on task samples (`--max-kl`, default the recipe's `budget.max_kl_task`, else unchecked), and
     no budget tripped during training that training was told only to warn about;
  3. it refuses or deflects no more often than its parent (a tone gain bought by refusing is no gain).
Exit codes: 0 ship, 1 do not ship, 2 bad input. A verdict that cannot read what it needs refuses
(exit 2): it never lets a run through for want of a figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlft import runs
from rlft.config import from_manifest
from rlft.errors import InputError

DEFAULT_MAX_PPL_DRIFT = 0.10


def _need(ev: dict, path: str, where: Path):
    value = ev
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            raise InputError(f"{where}: no {path!r}; a verdict needs the held-out judge and the drift figures "
                             f"(evaluate the run again with `rlft eval --run {where.parent}`)")
        value = value[part]
    return value


def verdict(run_dir: Path, max_ppl_drift: float | None = None, max_kl: float | None = None) -> dict:
    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    path = run_dir / "eval.json"
    if not path.is_file():
        raise InputError(f"run {run_dir} has no eval.json; evaluate it first with `rlft eval --run {run_dir}`")
    try:
        ev = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not manifest.get("parent"):
        raise InputError(f"run {run_dir} has no parent run to be judged against")
    budgets = from_manifest(manifest, str(Path(run_dir) / "manifest.json")).budget
    max_ppl_drift = max_ppl_drift if max_ppl_drift is not None else (
        budgets.max_general_ppl_drift or DEFAULT_MAX_PPL_DRIFT)
    max_kl = max_kl if max_kl is not None else budgets.max_kl_task

    lo, hi = _need(ev, "judge.win_tie_loss_vs_parent.win_rate_ci", path)
    win = _need(ev, "judge.win_rate_vs_parent", path)
    drift = _need(ev, "general_ppl_drift_parent", path)
    kl = _need(ev, "kl_task", path)
    refusals, parent_refusals = _need(ev, "judge.refusal_rate", path), _need(ev, "judge.parent.refusal_rate", path)
    tripped = (manifest.get("budget") or {}).get("tripped")
    checks = [
        {"check": "better on the held-out judge", "passed": lo > 0.5,
         "detail": f"win rate {win:.3f}, 95% interval [{lo:.3f}, {hi:.3f}] (must lie above 0.5)"},
        {"check": "general perplexity drift within budget", "passed": drift <= max_ppl_drift,
         "detail": f"{drift:+.3f} against the parent (budget {max_ppl_drift})"},
        {"check": "KL to the parent within budget", "passed": max_kl is None or kl <= max_kl,
         "detail": f"{kl:.4f} nats/token" + (f" (budget {max_kl})" if max_kl is not None else " (no budget set)")},
        {"check": "no drift budget tripped unheeded in training",
         "passed": not (tripped and tripped.get("action") == "warn"),
         "detail": (f"{tripped['budget']} tripped at step {tripped['step']} ({tripped['value']:.4f} > "
                    f"{tripped['limit']}), action {tripped['action']}") if tripped else "none tripped"},
        {"check": "no rise in refusals or deflections", "passed": refusals <= parent_refusals,
         "detail": f"{refusals:.3f} against the parent's {parent_refusals:.3f}"},
    ]
    return {"run": str(run_dir), "parent": manifest["parent"], "ship": all(c["passed"] for c in checks),
            "checks": checks, "judge": ev["judge"]["name"], "split": ev.get("split"),
            "harness_revision": ev.get("harness_revision", 1)}


def screen(result: dict) -> str:
    lines = [f"{result['run']} against {result['parent']} ({result['judge']}, split {result['split']}): "
             + ("SHIP" if result["ship"] else "DO NOT SHIP")]
    lines += [f"  [{'ok' if c['passed'] else 'NO'}] {c['check']}: {c['detail']}" for c in result["checks"]]
    return "\n".join(lines)
