"""Result tables: the short summary printed at the end of each stage and of `make sft dpo`."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = (("judge.task_accuracy", "judged acc"), ("task_accuracy", "rule acc"), ("fact_recall", "facts"),
           ("tone_score", "tone"), ("impolite_rate", "impolite"), ("win_rate_vs_parent", "win vs parent"),
           ("proxy.hacking_gap", "proxy-judge gap"), ("kl_task", "KL parent"),
           ("kl_task_base", "KL base"), ("general_ppl_drift", "ppl drift"), ("retention.retention", "retention"),
           ("probes", "probes"),
           ("mean_response_tokens", "tokens"))


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def value(ev: dict, key: str):
    """eval.json's value at a dotted key (`judge.task_accuracy`), None where a section is absent."""
    for part in key.split("."):
        ev = ev.get(part) if isinstance(ev, dict) else None
    return ev


def _row(name: str, ev: dict) -> list[str]:
    cells = [name]
    for key, _ in COLUMNS:
        if key == "probes":
            probes = ev.get("probe_accuracy")
            cells.append(_fmt(sum(probes.values()) / len(probes)) if probes else "–")
        else:
            cells.append(_fmt(value(ev, key)))
    return cells


def stage_table(run_dirs: list[Path]) -> str:
    """Markdown table: the first run's parent (or base) as the first row, then each run."""
    rows, splits = [], set()
    for i, run in enumerate(run_dirs):
        path = Path(run) / "eval.json"
        if not path.is_file():
            rows.append([str(run)] + ["(not evaluated)"] + [""] * (len(COLUMNS) - 1))
            continue
        ev = json.loads(path.read_text())
        if i == 0 and ev.get("parent"):
            p = ev["parent"]
            rows.append([f"{p['run']} (parent)", _fmt(value(ev, "judge.parent.task_accuracy")),
                         _fmt(p["task_accuracy"]), _fmt(p["fact_recall"]), _fmt(p["tone_score"])]
                        + ["–"] * (len(COLUMNS) - 4))
        row = _row(str(run), ev)
        if ev.get("judge"):
            lo, hi = ev["judge"]["task_accuracy_ci"]
            row[1] = f"{ev['judge']['task_accuracy']:.3f} [{lo:.2f}, {hi:.2f}]"
        rows.append(row)
        splits.add(f"{ev.get('tasks_file')} (harness revision {ev.get('harness_revision', 1)})")
    header = ["run"] + [label for _, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if splits:
        lines += ["", "evaluated on " + "; ".join(sorted(splits))
                  + (" — NOT COMPARABLE side by side" if len(splits) > 1 else "")]
    return "\n".join(lines)
