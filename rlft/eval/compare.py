"""`rlft compare RUN... --out DIR`: a report a reader can trust, from finished, evaluated runs.

Writes report.md (one row per run, every eval metric, deltas to its parent and to the
base), report.json, and PNG plots: task accuracy against drift with the non-dominated
front drawn, tone against KL to the base, each run's training loss, and, for PPO and GRPO
runs, their training reward. Runs of one method over several seeds (folders of the same name,
runs/x/seed1/sft, runs/x/seed2/sft) are also summarised together: mean, min and max per figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlft import runs
from rlft.errors import InputError

METRICS = ("judge_task_accuracy", "proxy_win_rate", "hacking_gap", "task_accuracy", "fact_recall", "tone_score", "impolite_rate", "win_rate_vs_parent", "kl_task",
           "kl_task_base", "kl_general", "general_ppl_drift", "retention", "mean_response_tokens", "truncation_rate", "distinct_2")


def load_run(run_dir: Path) -> dict:
    manifest = runs.read_manifest(run_dir)
    path = run_dir / "eval.json"
    if not path.is_file():
        raise InputError(f"run {run_dir} has no eval.json; evaluate it first with `rlft eval --run {run_dir}`")
    ev = json.loads(path.read_text())
    ev.setdefault("harness_revision", 1)  # eval.json written before revisions were recorded
    ev["judge_task_accuracy"] = (ev.get("judge") or {}).get("task_accuracy")
    ev["proxy_win_rate"] = (ev.get("proxy") or {}).get("win_rate_vs_parent")
    ev["hacking_gap"] = (ev.get("proxy") or {}).get("hacking_gap")
    ev["retention"] = (ev.get("retention") or {}).get("retention")
    probes = ev.get("probe_accuracy") or {}
    ev["probes"] = sum(probes.values()) / len(probes) if probes else None
    log = json.loads((run_dir / "train_log.json").read_text()) if (run_dir / "train_log.json").is_file() else []
    curve = [(e["step"], e["loss"]) for e in log if "loss" in e]
    # the RL stages' training reward: rlft's PPO per update, TRL's GRPO/RLOO per step
    reward_key = {"ppo": ("update", "objective/scores"), "grpo": ("step", "reward")}.get(manifest["stage"])
    reward_curve = [(e[reward_key[0]], e[reward_key[1]]) for e in log if reward_key[1] in e] if reward_key else []
    return {"run": str(run_dir), "stage": manifest["stage"], "parent": manifest.get("parent"), "eval": ev,
            "curve": curve, "reward_curve": reward_curve, "wall_seconds": manifest.get("wall_seconds")}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when x is maximised and y minimised, sorted by x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any((x2 >= x and y2 <= y) and (x2, y2) != (x, y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


METHOD_METRICS = ("judge_task_accuracy", "judge_delta_vs_parent", "win_rate_vs_parent", "tie_share",
                  "proxy_win_rate", "hacking_gap", "task_accuracy", "tone_score", "kl_task", "kl_task_base",
                  "general_ppl_drift", "retention", "wall_seconds")


def methods(table: list[dict]) -> dict:
    """Runs of one method over several seeds, told apart by their folder's name (runs/x/seed1/sft and
    runs/x/seed2/sft are two seeds of `sft`): per figure the mean, min and max over the seeds, and
    every seed's value, so a reader sees the spread a single run hides."""
    groups: dict[str, list[dict]] = {}
    for entry in table:
        groups.setdefault(Path(entry["run"]).name, []).append(entry)
    out = {}
    for name, entries in groups.items():
        figures = {}
        for key in METHOD_METRICS:
            values = [e[key] for e in entries if e.get(key) is not None]
            if values:
                figures[key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                                "values": values}
        out[name] = {"n_seeds": len(entries), "runs": [e["run"] for e in entries], "figures": figures}
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def expand(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(run folders, sweep folders): a sweep folder (`rlft sweep`, with trials.json) stands for its finished,
    evaluated trials, and its front of objective against drift is drawn too."""
    run_dirs, sweeps = [], []
    for path in paths:
        if (path / "interpolation.json").is_file():  # `rlft interpolate`: its mixes, in alpha order
            summary = json.loads((path / "interpolation.json").read_text())
            mixes = [path / Path(f).name for f in summary["folders"]]
            run_dirs += [m for m in mixes if (m / "eval.json").is_file()]
            sweeps.append(path)
        elif (path / "trials.json").is_file():
            sweeps.append(path)
            summary = json.loads((path / "trials.json").read_text())
            trials = [path / Path(t["folder"]).name for t in summary["trials"] if t["state"] == "complete"]
            run_dirs += [t for t in trials if (t / "eval.json").is_file()]  # found beside trials.json, from any cwd
        else:
            run_dirs.append(path)
    return run_dirs, sweeps


def report(paths: list[Path], out: Path) -> dict:
    run_dirs, sweeps = expand([Path(p) for p in paths])
    if not run_dirs:
        raise InputError(f"nothing to compare: no finished, evaluated run in {', '.join(map(str, paths))}")
    rows = [load_run(Path(r)) for r in run_dirs]
    by_path = {r["run"]: r for r in rows}
    table = []
    for r in rows:
        ev = r["eval"]
        parent = by_path.get(r["parent"] or "")
        entry = {"run": r["run"], "stage": r["stage"], "parent": r["parent"], "wall_seconds": r["wall_seconds"],
                 **{k: ev.get(k) for k in METRICS + ("probes", "task_accuracy_ci")}}
        entry["delta_task_accuracy_vs_parent"] = (ev["task_accuracy"] - ev["parent"]["task_accuracy"]
                                                  if ev.get("parent") else None)
        entry["delta_tone_vs_parent"] = (ev["tone_score"] - ev["parent"]["tone_score"] if ev.get("parent") else None)
        wtl = (ev.get("judge") or {}).get("win_tie_loss_vs_parent") or ev.get("win_tie_loss_vs_parent") or {}
        entry["wins_ties_losses"] = [wtl.get("wins"), wtl.get("ties"), wtl.get("losses")] if wtl else None
        entry["tie_share"] = wtl.get("tie_share")
        judged = ev.get("judge") or {}
        entry["judge_delta_vs_parent"] = (judged["task_accuracy"] - judged["parent"]["task_accuracy"]
                                          if judged else None)  # paired: the same tasks, both answered
        if parent is not None:
            entry["delta_probes_vs_parent"] = (ev["probes"] - parent["eval"]["probes"]
                                               if ev["probes"] is not None and parent["eval"]["probes"] is not None else None)
        table.append(entry)
    evaluated = sorted({(r["eval"].get("tasks_file"), r["eval"]["harness_revision"]) for r in rows}, key=str)
    warning = None
    if len(evaluated) > 1:  # figures from other splits or scorers look comparable and are not
        warning = ("these runs were evaluated on different task sets or harness revisions and are not comparable "
                   "side by side: " + "; ".join(f"{t} (revision {v})" for t, v in evaluated)
                   + ". Evaluate them again with `rlft eval --run DIR`.")
        print(f"warning: {warning}")
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(rows, out)
    for sweep in sweeps:
        if (sweep / "interpolation.json").is_file():
            plots.append(interpolation_plot(json.loads((sweep / "interpolation.json").read_text()),
                                            out / f"interpolation_{sweep.name}.png"))
        else:
            plots.append(front_plot(json.loads((sweep / "trials.json").read_text()), out / f"front_{sweep.name}.png"))
    result = {"runs": table, "methods": methods(table), "plots": plots,
              "evaluated_on": [list(e) for e in evaluated], "warning": warning}
    runs.atomic_write_json(out / "report.json", result)
    runs.atomic_write_text(out / "report.md", _markdown(table, plots, warning, result["methods"]))
    return result


def spread(figure: dict | None, digits: int = 3) -> str:
    """`mean [min, max]` of one figure over seeds (`mean` alone for one seed)."""
    if not figure:
        return "–"
    if len(figure["values"]) == 1:
        return f"{figure['mean']:.{digits}f}"
    return f"{figure['mean']:.{digits}f} [{figure['min']:.{digits}f}, {figure['max']:.{digits}f}]"


METHOD_COLUMNS = (("judge_task_accuracy", "judged accuracy"), ("judge_delta_vs_parent", "vs parent (paired)"),
                  ("win_rate_vs_parent", "win rate vs parent"), ("tie_share", "ties"),
                  ("proxy_win_rate", "proxy win rate"), ("hacking_gap", "proxy - judge"),
                  ("tone_score", "tone"), ("kl_task", "KL parent"), ("general_ppl_drift", "ppl drift vs base"))


def methods_markdown(methods_: dict) -> list[str]:
    lines = ["| method | seeds | " + " | ".join(label for _, label in METHOD_COLUMNS) + " |",
             "|" + "---|" * (len(METHOD_COLUMNS) + 2)]
    for name, m in methods_.items():
        lines.append(f"| {name} | {m['n_seeds']} | "
                     + " | ".join(spread(m["figures"].get(k)) for k, _ in METHOD_COLUMNS) + " |")
    return lines


def _markdown(table: list[dict], plots: list[str], warning: str | None = None, methods_: dict | None = None) -> str:
    cols = ["run", "judge_task_accuracy", "proxy_win_rate", "hacking_gap", "task_accuracy", "task_accuracy_ci", "fact_recall", "tone_score", "impolite_rate",
            "win_rate_vs_parent", "kl_task", "kl_task_base", "kl_general", "general_ppl_drift", "retention", "probes",
            "mean_response_tokens", "distinct_2", "delta_task_accuracy_vs_parent", "delta_tone_vs_parent"]
    lines = ["# rlft comparison", "", *([f"**Warning**: {warning}", ""] if warning else []), "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for e in table:
        cells = []
        for c in cols:
            v = e.get(c)
            cells.append(f"[{v[0]:.2f}, {v[1]:.2f}]" if c == "task_accuracy_ci" and v else _fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    if methods_ and any(m["n_seeds"] > 1 for m in methods_.values()):
        lines += ["", "## Methods over seeds (mean [min, max])", "", *methods_markdown(methods_)]
    lines += ["", "KL in nats per response token (exact over the vocabulary on the run's own samples); "
              "`general_ppl_drift` = held-out chitchat perplexity / base perplexity - 1; `retention` = share of the "
              "general-skill items the base answers right that the run still answers right; `probes` = mean exact "
              "match on rlft-tiny's prior-skill probes (forgetting); deltas are to the run's parent.", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _save(fig, ax, title: str, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _plots(rows: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [Path(r["run"]).name for r in rows]
    files = []

    fig, ax = plt.subplots(figsize=(6, 4.5))
    # the held-out judge's accuracy where there is one (the built-in task), else the tasks-file rule's
    pts = [(r["eval"]["judge_task_accuracy"] if r["eval"]["judge_task_accuracy"] is not None
            else r["eval"]["task_accuracy"], r["eval"]["kl_task_base"] or 0.0) for r in rows]
    for (x, y), name in zip(pts, names):
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="non-dominated front")
    ax.set_xlabel("task accuracy (judged, on the evaluated split)")
    ax.set_ylabel("drift: KL to the base, nats/token")
    files.append(_save(fig, ax, "Task accuracy against drift", out / "accuracy_vs_drift.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r, name in zip(rows, names):
        ax.scatter(r["eval"]["kl_task_base"] or 0.0, r["eval"]["tone_score"], s=40, label=name)
    ax.set_xlabel("KL to the base, nats/token")
    ax.set_ylabel("tone score")
    files.append(_save(fig, ax, "Tone against KL", out / "tone_vs_kl.png"))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r, name in zip(rows, names):
        if r["curve"]:
            ax.plot([s for s, _ in r["curve"]], [v for _, v in r["curve"]], label=f"{name} ({r['stage']})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    files.append(_save(fig, ax, "Training curves", out / "training_curves.png"))

    if any(r["reward_curve"] for r in rows):  # PPO's and GRPO's losses say little; their reward says more
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for r, name in zip(rows, names):
            if r["reward_curve"]:
                ax.plot([s for s, _ in r["reward_curve"]], [v for _, v in r["reward_curve"]],
                        label=f"{name} ({r['stage']})")
        ax.set_xlabel("PPO update / GRPO step")
        ax.set_ylabel("mean training reward of the sampled answers")
        files.append(_save(fig, ax, "Training reward", out / "reward_curves.png"))
    return files


def front_plot(summary: dict, path: Path) -> str:
    """A sweep's completed trials: objective against the drift figure of its budget, the front drawn,
    the budget as a line, the best feasible trial marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [t for t in summary["trials"] if t["state"] == "complete" and t["figures"].get(summary["front_key"]) is not None]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for feasible, marker, label in ((True, "o", "within the constraints"), (False, "x", "outside")):
        mine = [t for t in trials if bool(t["feasible"]) == feasible]
        ax.scatter([t["objective"] for t in mine], [t["figures"][summary["front_key"]] for t in mine], marker=marker,
                   s=40, label=label)
    for t in trials:
        ax.annotate(str(t["number"]), (t["objective"], t["figures"][summary["front_key"]]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted((t for t in trials if t["number"] in summary["front"]), key=lambda t: t["objective"])
    ax.plot([t["objective"] for t in front], [t["figures"][summary["front_key"]] for t in front], "k--", lw=1,
            label="non-dominated front")
    for c in summary["constraints"]:
        key, op, bound = c.split()
        if key == summary["front_key"]:
            ax.axhline(float(bound), color="red", lw=1, label=f"budget {key} {op} {bound}")
    ax.set_xlabel(f"{summary['objective']} on {summary['split']}")
    ax.set_ylabel(summary["front_key"])
    return _save(fig, ax, f"Sweep {Path(summary['sweep']).stem}: {summary['n_trials']} trials", path)


def interpolation_plot(summary: dict, path: Path) -> str:
    """The mixes of a run with its parent: task accuracy against drift, each point labelled with alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [c for c in summary.get("curve", []) if c["general_ppl_drift"] is not None]
    accuracy = "judge_task_accuracy" if all(c["judge_task_accuracy"] is not None for c in curve) else "task_accuracy"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([c["general_ppl_drift"] for c in curve], [c[accuracy] for c in curve], "o-", label=Path(summary["run"]).name)
    for c in curve:
        ax.annotate(f"{c['alpha']:g}", (c["general_ppl_drift"], c[accuracy]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("general perplexity drift against the base")
    ax.set_ylabel(f"{accuracy.replace('_', ' ')} on {summary.get('tasks', 'the evaluated split')}")
    return _save(fig, ax, "Interpolation toward the parent (alpha: weight of the run's change)", path)
