"""Result tables: the short summary printed at the end of each stage and of `make sft dpo`."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = (("task_accuracy", "task acc"), ("fact_recall", "facts"), ("tone_score", "tone"),
           ("impolite_rate", "impolite"), ("win_rate_vs_parent", "win vs parent"), ("kl_task", "KL parent"),
           ("kl_task_base", "KL base"), ("general_ppl_drift", "ppl drift"), ("probes", "probes"),
           ("mean_response_tokens", "tokens"))


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _row(name: str, ev: dict) -> list[str]:
    cells = [name]
    for key, _ in COLUMNS:
        if key == "probes":
            probes = ev.get("probe_accuracy")
            cells.append(_fmt(sum(probes.values()) / len(probes)) if probes else "–")
        else:
            cells.append(_fmt(ev.get(key)))
    return cells


def stage_table(run_dirs: list[Path]) -> str:
    """Markdown table: the first run's parent (or base) as the first row, then each run."""
    rows = []
    for i, run in enumerate(run_dirs):
        path = Path(run) / "eval.json"
        if not path.is_file():
            rows.append([str(run)] + ["(not evaluated)"] + [""] * (len(COLUMNS) - 1))
            continue
        ev = json.loads(path.read_text())
        if i == 0 and ev.get("parent"):
            p = ev["parent"]
            rows.append([f"{p['run']} (parent)", _fmt(p["task_accuracy"]), _fmt(p["fact_recall"]),
                         _fmt(p["tone_score"])] + ["–"] * (len(COLUMNS) - 3))
        lo, hi = ev["task_accuracy_ci"]
        row = _row(str(run), ev)
        row[1] = f"{ev['task_accuracy']:.3f} [{lo:.2f}, {hi:.2f}]"
        rows.append(row)
    header = ["run"] + [label for _, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
