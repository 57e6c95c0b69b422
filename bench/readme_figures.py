"""The README's result tables, written from result files kept in the repository, never typed.

    python bench/readme_figures.py --collect runs/customer_support   # after `make seeds`: keep the figures
    python bench/readme_figures.py                                    # write them into README.md
    python bench/readme_figures.py --check                            # exit 1 if README.md differs

`--collect` reads what `bench/seeds.sh` left (`runs/<recipe>/seeds/report.json` from `rlft compare`,
and each seed's reward-model eval.json and manifest) and keeps the figures the README shows in
`bench/measured/<recipe>.json`. The plain call renders them between the README's
`<!-- figures:NAME start -->` and `<!-- figures:NAME end -->` markers (with
`bench/measured/judge_vs_proxy.json` from `bench/judge_vs_proxy.py`); a reviewer reruns it and
gets the README's figures digit for digit (tests/test_readme_figures.py does).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from rlft.eval.compare import spread
from rlft.eval.metrics import bootstrap_interval

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import run as bench_run  # noqa: E402  (bench/run.py: the total of bench/timings.json)

MEASURED = ROOT / "bench" / "measured"
METHODS = ("sft", "dpo", "sft_continued", "ppo", "grpo")
RM_KINDS = ("tone", "facts", "both", "padding", "other_intent")


def collect(recipe_runs: Path) -> Path:
    """Keep the figures of one recipe's seed runs (bench/seeds.sh) in bench/measured/<recipe>.json."""
    report = json.loads((recipe_runs / "seeds" / "report.json").read_text())
    rms = {}
    for kind in ("rm", "rm_minilm"):
        runs = sorted(recipe_runs.glob(f"seed*/{kind}"))
        rms[kind] = [{"run": str(r.relative_to(recipe_runs.parent.parent)) if r.is_absolute() else str(r),
                      **{k: v for k, v in json.loads((r / "eval.json").read_text()).items()
                         if k in ("pair_accuracy", "pair_accuracy_by_kind", "length_bias_unpadded_wins",
                                  "length_bias_pass", "intent_probe_right_above_other", "train_val_gap")},
                      "wall_seconds": json.loads((r / "manifest.json").read_text())["wall_seconds"]}
                     for r in runs if (r / "eval.json").is_file()]
    kept = {"recipe": recipe_runs.name, "evaluated_on": report["evaluated_on"], "warning": report["warning"],
            "methods": report["methods"], "reward_models": rms}
    MEASURED.mkdir(exist_ok=True)
    path = MEASURED / f"{recipe_runs.name}.json"
    path.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return path


def methods_table(kept: dict) -> str:
    cols = (("judge_task_accuracy", "judged accuracy (test)"), ("judge_delta_vs_parent", "vs parent, paired"),
            ("win_rate_vs_parent", "win rate vs parent"), ("tie_share", "ties"),
            ("proxy_win_rate", "proxy win rate"), ("hacking_gap", "proxy − judge"), ("tone_score", "tone"),
            ("kl_task", "KL to parent"), ("general_ppl_drift", "ppl drift vs base"))
    lines = ["| method | seeds | " + " | ".join(label for _, label in cols) + " | minutes |",
             "|" + " --- |" * (len(cols) + 3)]
    for name in METHODS:
        m = kept["methods"].get(name)
        if not m:
            continue
        wall = m["figures"].get("wall_seconds")
        minutes = {k: (v / 60 if k != "values" else [x / 60 for x in v]) for k, v in wall.items()} if wall else None
        lines.append(f"| {name} | {m['n_seeds']} | " + " | ".join(spread(m["figures"].get(k)) for k, _ in cols)
                     + f" | {spread(minutes, 1)} |")
    return "\n".join(lines)


def rm_table(kept: dict) -> str:
    lines = ["| reward model | seeds | pair accuracy | " + " | ".join(RM_KINDS)
             + " | right above another intent's answer | length probe (unpadded wins) |",
             "|" + " --- |" * (len(RM_KINDS) + 5)]
    for kind, label in (("rm", "rlft-tiny + scalar head"), ("rm_minilm", "all-MiniLM-L6-v2")):
        rows = kept["reward_models"].get(kind) or []
        if not rows:
            continue

        def fig(values):
            return spread({"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                            "values": values})

        lines.append(f"| {label} | {len(rows)} | {fig([r['pair_accuracy'] for r in rows])} | "
                     + " | ".join(fig([r["pair_accuracy_by_kind"].get(k, float("nan")) for r in rows]) for k in RM_KINDS)
                     + f" | {fig([r['intent_probe_right_above_other'] for r in rows])} | "
                     f"{fig([r['length_bias_unpadded_wins'] for r in rows])} |")
    return "\n".join(lines)


# The README's claims before the test split and the held-out judge (main at edba567: one seed, the
# rule judge, the tasks the recipes were tuned on), each with the test that decides it now on every
# seed: (claim, then, figure path, relation). A figure path is method/figure, or rm/figure.
CLAIMS = (
    ("SFT learns the task from nothing", "task accuracy 0.291", "sft/judge_delta_vs_parent", "> 0"),
    ("DPO lowers task accuracy against SFT", "0.227 against 0.291", "dpo/judge_delta_vs_parent", "< 0"),
    ("DPO polishes tone", "tone 1.000 against 0.973", "dpo/tone_delta", "> 0"),
    ("PPO beats SFT", "win rate 0.550, accuracy 0.345 against 0.291", "ppo/win_rate_vs_parent", "> 0.5"),
    ("PPO raises task accuracy", "0.345 against 0.291", "ppo/judge_delta_vs_parent", "> 0"),
    ("GRPO beats SFT", "win rate 0.559, accuracy 0.345", "grpo/win_rate_vs_parent", "> 0.5"),
    ("GRPO raises task accuracy", "0.345 against 0.291", "grpo/judge_delta_vs_parent", "> 0"),
    ("DPO's change is more than extra SFT steps", "not measured on the test split",
     "dpo-sft_continued/judge_task_accuracy", "> 0"),
    ("RL's gains are what the judge sees, not only the reward", "not measured (the judge was the reward)",
     "ppo/hacking_gap", "< 0.1"),
    ("The reward models cannot tell the right answer from another intent's", "right one higher on 57% and 55%",
     "rm/intent_probe_right_above_other", "< 0.75"),
)


def _values(kept: dict, path: str) -> list[float]:
    name, figure = path.split("/")
    if name == "rm":
        return [r[figure] for r in kept["reward_models"].get("rm", [])]
    if "-" in name:  # a paired difference of two methods, seed by seed
        a, b = (_values(kept, f"{n}/{figure}") for n in name.split("-"))
        return [x - y for x, y in zip(a, b)]
    if figure == "tone_delta":  # against its parent, SFT, seed by seed
        return [x - y for x, y in zip(_values(kept, f"{name}/tone_score"), _values(kept, "sft/tone_score"))]
    method = kept["methods"].get(name)
    return list(method["figures"][figure]["values"]) if method and figure in method["figures"] else []


def claims_table(kept: dict) -> str:
    lines = ["| earlier claim | then (one seed, tuned-on tasks) | tested now | seeds | held |",
             "| --- | --- | --- | --- | --- |"]
    for claim, then, path, relation in CLAIMS:
        values = _values(kept, path)
        if not values:
            continue
        op, bound = relation.split()
        holds = [(v > float(bound)) if op == ">" else (v < float(bound)) for v in values]
        held = "on every seed" if all(holds) else "on no seed" if not any(holds) else f"on {sum(holds)} of {len(holds)}"
        shown = ", ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {claim} | {then} | `{path}` {relation}: {shown} | {len(values)} | {held} |")
    return "\n".join(lines)


def judge_table(measured: dict) -> str:
    """bench/judge_vs_proxy.py's figures: constructed answers scored by the judge and by the reward."""
    lines = [f"Over {measured['pairs']:,} pairs of constructed answers to the same task ({measured['tasks']} test "
             f"tasks) the judge and the training reward order the two answers the same way "
             f"{measured['order_agreement']:.1%} of the time.", "",
             "| answer | judged correct | training reward (of 2) |", "| --- | --- | --- |"]
    for kind, r in measured["by_kind"].items():
        lines.append(f"| {kind} | {r['judge_accuracy']:.3f} | {r['proxy_mean']:.3f} |")
    return "\n".join(lines)


# a single-seed recipe's runs, in the README's order (sft_continued: make compare's control arm)
STAGES = ("prompted", "sft", "dpo", "sft_continued", "ppo", "grpo")
RM_FIGURES = ("pair_accuracy", "pair_accuracy_by_kind", "length_bias_unpadded_wins", "length_bias_pass",
              "intent_probe_right_above_other", "train_val_gap")


def collect_runs(recipe_runs: Path) -> Path:
    """Keep the figures of one recipe's runs, one seed each (runs/smollm2/{prompted,sft,dpo,...}), from
    their eval.json (the test split) and manifests, in bench/measured/<recipe>.json. A run missing
    from the folder keeps the row kept before, with the date it was measured on."""
    path = MEASURED / f"{recipe_runs.name}.json"
    before = json.loads(path.read_text()) if path.is_file() else {}
    kept, rm = before.get("runs", {}), before.get("rm")
    if (recipe_runs / "rm" / "eval.json").is_file():  # the reward model measures itself (no harness)
        ev, manifest = (json.loads((recipe_runs / "rm" / f).read_text()) for f in ("eval.json", "manifest.json"))
        rm = {**{k: ev[k] for k in RM_FIGURES}, "train_minutes": manifest["metrics"]["train_minutes"],
              "n_train": manifest["data"]["n_train"], "n_val": manifest["data"]["n_val"],
              "measured_on": manifest["finished_at"][:10]}
    for stage in STAGES:
        run = recipe_runs / stage
        if not (run / "eval.json").is_file():
            continue
        ev, manifest = json.loads((run / "eval.json").read_text()), json.loads((run / "manifest.json").read_text())
        kept[stage] = {
            "split": ev["split"], "harness_revision": ev["harness_revision"], "n_tasks": ev["n_tasks"],
            "judge_task_accuracy": ev["judge"]["task_accuracy"], "judge_task_accuracy_ci": ev["judge"]["task_accuracy_ci"],
            "task_accuracy": ev["task_accuracy"], "win_rate_vs_parent": ev["win_rate_vs_parent"],
            "tie_share": ev["win_tie_loss_vs_parent"]["tie_share"], "tone_score": ev["tone_score"],
            "win_rate_ceiling": (ev.get("judge") or {}).get("win_rate_ceiling"),
            "hacking_gap": (ev.get("proxy") or {}).get("hacking_gap"), "kl_task_base": ev["kl_task_base"],
            "general_ppl_drift": ev["general_ppl_drift"], "retention": (ev.get("retention") or {}).get("retention"),
            "retention_items": len((ev.get("retention") or {}).get("kept", [])),
            # each kept item's outcome and the items themselves, for paired comparisons of two runs
            "retention_right": (ev.get("retention") or {}).get("right"),
            "retention_kept": (ev.get("retention") or {}).get("kept"),
            "mean_response_tokens": ev["mean_response_tokens"], "eval_seconds": ev["eval_seconds"],
            "train_minutes": manifest["metrics"].get("train_minutes"), "wall_seconds": manifest["wall_seconds"],
            "n_train": manifest["data"]["n_train"], "parent": Path(manifest["parent"]).name if manifest.get("parent") else None,
            "measured_on": manifest["finished_at"][:10]}
    MEASURED.mkdir(exist_ok=True)
    path.write_text(json.dumps({"recipe": recipe_runs.name, "runs": kept, **({"rm": rm} if rm else {})},
                               indent=1, sort_keys=True) + "\n")
    return path


def _ci(v: list[float]) -> str:
    return f"[{v[0]:.2f}, {v[1]:.2f}]"


def runs_table(kept: dict) -> str:
    """One row per run of a single-seed recipe (bench/measured/smollm2.json)."""
    cols = (("judge_task_accuracy", "judged accuracy (test)"), ("win_rate_vs_parent", "win rate vs parent"),
            ("tone_score", "tone"), ("retention", "retention"), ("general_ppl_drift", "ppl drift vs base"),
            ("kl_task_base", "KL to base"), ("mean_response_tokens", "tokens"))
    lines = ["| run | parent | " + " | ".join(label for _, label in cols) + " | train minutes | eval seconds | measured |",
             "|" + " --- |" * (len(cols) + 5)]
    for stage, r in sorted(kept["runs"].items(), key=lambda kv: STAGES.index(kv[0])):
        cells = [f"{r['judge_task_accuracy']:.3f} {_ci(r['judge_task_accuracy_ci'])}"]
        cells += [("–" if r[k] is None else f"{r[k]:.3f}") for k, _ in cols[1:]]
        lines.append(f"| {stage} | {r['parent'] or 'base'} | " + " | ".join(cells)
                     + f" | {r['train_minutes'] or 0:.1f} | {r['eval_seconds']:.0f} | {r.get('measured_on', '–')} |")
    rm = kept.get("rm")
    if rm:
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in rm["pair_accuracy_by_kind"].items())
        held = f"{rm['n_val']} held-out pairs" if rm["n_val"] else "training pairs (it had no validation pairs)"
        lines += ["", f"The reward model (`rm`, {rm['n_train']} pairs, {rm['train_minutes']:.1f} train minutes, "
                      f"{rm['measured_on']}): pair accuracy {rm['pair_accuracy']:.3f} on {held} ({kinds}); the "
                      f"right answer above a polite answer to another intent on "
                      f"{rm['intent_probe_right_above_other']:.3f} of dev tasks; length probe "
                      f"{'passed' if rm['length_bias_pass'] else 'failed'} (an answer scores at least itself padded "
                      f"with filler on {rm['length_bias_unpadded_wins']:.3f} of pairs)."]
    return "\n".join(lines + ["", *targets(kept["runs"])])


def targets(runs: dict) -> list[str]:
    """The issue's targets for a real model on 2 CPU cores, each against what the kept runs measured."""
    def verdict(ok: bool, by: float, unit: str = "") -> str:
        return "met" if ok else f"missed by {abs(by):.3f}{unit}"

    def win_row(stage: str, r: dict) -> str:
        # the judge's ceiling: a tie is the best answer to a parent's answer it already ranks highest
        win, ceiling = r["win_rate_vs_parent"], r.get("win_rate_ceiling")
        reach = "" if ceiling is None else f" of at most {ceiling:.3f}"
        out = "; out of reach: the ceiling is not above 0.6" if ceiling is not None and ceiling <= 0.6 else ""
        return f"| {stage} win rate over SFT above 0.6 | {win:.3f}{reach} | {verdict(win > 0.6, win - 0.6)}{out} |"

    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    sft, dpo = runs.get("sft"), runs.get("dpo")
    if sft:
        acc = sft["judge_task_accuracy"]
        lines.append(f"| SFT judged accuracy at least 0.8 | {acc:.3f} | {verdict(acc >= 0.8, acc - 0.8)} |")
    if sft and dpo:
        drop = dpo["judge_task_accuracy"] - sft["judge_task_accuracy"]
        lines.append(win_row("DPO", dpo))
        lines.append(f"| DPO judged accuracy at least SFT's - 0.02 | {drop:+.3f} | {verdict(drop >= -0.02, drop + 0.02)} |")
        minutes = sum(r["wall_seconds"] + r["eval_seconds"] for r in (sft, dpo)) / 60
        lines.append(f"| sft then dpo, training and evaluation, at most 25 minutes | {minutes:.1f} minutes "
                     f"| {verdict(minutes <= 25, minutes - 25, ' minutes')} |")
    for stage in ("ppo", "grpo"):  # RL's targets: a win over SFT, and no more forgetting than SFT's
        r = runs.get(stage)
        if not r:
            continue
        lines.append(win_row(stage.upper(), r))
        if sft and r["retention"] is not None and sft["retention"] is not None:
            lines.append(retention_row(stage, r, sft))
    for stage, r in sorted(runs.items(), key=lambda kv: STAGES.index(kv[0])):
        secs = r["eval_seconds"]
        lines.append(f"| `rlft eval` of the {stage} run at most 2 minutes | {secs:.0f} s "
                     f"| {verdict(secs <= 120, secs - 120, ' s')} |")
    return lines


def retention_row(stage: str, r: dict, sft: dict) -> str:
    """RL's retention against SFT's. Where both runs kept each item's outcome on the same items (runs of one
    base), the difference has a 95% paired bootstrap interval over those items, and the verdict follows it:
    met when the whole interval is at least 0, missed when all of it is below, within noise otherwise."""
    gap, acc = r["retention"] - sft["retention"], r["judge_task_accuracy"] - sft["judge_task_accuracy"]
    head = f"| {stage.upper()} retention at least SFT's (judged accuracy {acc:+.3f} against SFT's) | {gap:+.3f}"
    mine, theirs = r.get("retention_right"), sft.get("retention_right")
    if not mine or not theirs or r.get("retention_kept") != sft.get("retention_kept"):
        return f"{head} | {'met' if gap >= 0 else f'missed by {-gap:.3f}'} (no interval: an item-by-item record is missing) |"
    lo, hi = bootstrap_interval([a - b for a, b in zip(mine, theirs)], seed=0)
    where = f" [{lo:+.3f}, {hi:+.3f}] over {len(mine)} items"
    if lo >= 0:
        return f"{head}{where} | met |"
    if hi < 0:
        return f"{head}{where} | missed by {-gap:.3f} |"
    return f"{head}{where} | within noise: the interval holds 0 |"


def collect_augment(runs_dir: Path) -> Path:
    """Keep bench/augment_effect.sh's figures: per seed and arm, judged accuracy on the clean and the messy
    test split."""
    rows = []
    for run in sorted(runs_dir.glob("seed*/sft*")):
        clean, messy = (json.loads((run / f).read_text()) for f in ("eval.json", "eval_messy.json"))
        rows.append({"run": str(run), "arm": run.name, "seed": int(run.parent.name.removeprefix("seed")),
                     "clean": clean["judge"]["task_accuracy"], "messy": messy["judge"]["task_accuracy"],
                     "clean_split": clean["tasks_file"], "messy_split": messy["tasks_file"],
                     "n_tasks": clean["n_tasks"], "general_ppl_drift": clean["general_ppl_drift"]})
    path = MEASURED / "augment.json"
    path.write_text(json.dumps({"runs": rows}, indent=1) + "\n")
    return path


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def augment_table(measured: dict) -> str:
    """Mean [min, max] over seeds."""
    lines = ["| recipe | seeds | judged accuracy, harbor_test | judged accuracy, harbor_test_messy | messy minus clean "
             "| ppl drift |", "|---|---|---|---|---|---|"]
    for arm in ("sft", "sft_augment"):
        mine = [r for r in measured["runs"] if r["arm"] == arm]
        if not mine:
            continue
        cells = [_spread([r[k] for r in mine]) for k in ("clean", "messy")]
        cells.append(_spread([r["messy"] - r["clean"] for r in mine]))
        cells.append(_spread([r["general_ppl_drift"] for r in mine]))
        lines.append(f"| {arm} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def length_grouping_line(measured: dict) -> str:
    """bench/length_grouping.py's verdict in one sentence."""
    t, r, loss = measured["tokens_per_s"], measured["ratio"], measured["eval_loss"]
    return (f"Measured by `{measured['command']}` ({len(r['values'])} interleaved rounds, one epoch of 480 chats): "
            f"{t['padding']['median']:.0f} training tokens/s with plain padding "
            f"[{t['padding']['min']:.0f}, {t['padding']['max']:.0f}], {t['grouped']['median']:.0f} grouped "
            f"[{t['grouped']['min']:.0f}, {t['grouped']['max']:.0f}]; ratio {r['median']:.2f} "
            f"[{r['min']:.2f}, {r['max']:.2f}] against the target of 1.3: **{measured['verdict']}**. Final "
            f"validation loss {loss['padding']['median']:.3f} [{loss['padding']['min']:.3f}, "
            f"{loss['padding']['max']:.3f}] padded, {loss['grouped']['median']:.3f} "
            f"[{loss['grouped']['min']:.3f}, {loss['grouped']['max']:.3f}] grouped, over the rounds' seeds; "
            f"grouped minus padded, seed by seed, {measured['eval_loss_difference']['median']:+.3f} "
            f"[{measured['eval_loss_difference']['min']:+.3f}, {measured['eval_loss_difference']['max']:+.3f}].")


def bench_time_line(timings: dict) -> str:
    """bench/run.py's wall times: how long `make bench` takes, against the 30 minutes it may."""
    t = bench_run.summary(timings)
    no_time = f" No time yet for {', '.join(t['missing'])}." if t["missing"] else ""
    return (f"`make bench` took {t['minutes']:.1f} minutes on {t['cores']} cores ({t['occasions']}; in minutes: "
            f"{t['parts']}).{no_time} The target is 30 minutes on 2 cores: **{t['verdict']}**. Written from "
            f"`bench/timings.json`, which `bench/run.py` keeps.")


def sweep_table(summary: dict) -> str:
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    drift = summary["front_key"]
    lines = [f"Objective: {summary['objective']} on {summary['split']}, constraint "
             f"{', '.join(summary['constraints']) or 'none'}; {summary['n_trials']} trials "
             f"({', '.join(f'{v} {k}' for k, v in summary['states'].items() if v)}) in {summary['minutes']} minutes "
             f"of trial time.", "",
             "| trial | " + " | ".join(keys) + f" | {summary['objective']} | {drift} | within budget | on front |",
             "|" + "---|" * (len(keys) + 5)]
    for t in summary["trials"]:
        params = [f"{t['params'][k]:.2e}" if isinstance(t["params"].get(k), float) and t["params"][k] < 0.01
                  else f"{t['params'][k]:.2f}" if isinstance(t["params"].get(k), float) else str(t["params"].get(k))
                  for k in keys]
        objective = f"{t['objective']:.3f}" if t["state"] == "complete" else t["state"]
        figure = t["figures"].get(drift)
        lines.append(f"| {t['number']} | " + " | ".join(params) + f" | {objective} | "
                     + (f"{figure:.3f}" if figure is not None else "–")
                     + f" | {'' if t['feasible'] is None else 'yes' if t['feasible'] else 'no'} | "
                     + ("yes" if t["number"] in summary["front"] else "") + " |")
    best = summary["best"]
    lines += ["", f"Best within the budget: trial {best['number']} ({best['objective']:.3f} on {summary['split']})."
              if best else "No trial stayed within the budget."]
    test = summary.get("best_on_test")
    if test:
        lo, hi = test["judge_task_accuracy_ci"]
        lines[-1] += (f" Trained once more from best_recipe.yaml and evaluated on {test['split']}: judged accuracy "
                      f"{test['judge_task_accuracy']:.3f} [{lo:.2f}, {hi:.2f}], {drift} {test['general_ppl_drift']:.3f}.")
    return "\n".join(lines)


def blocks(kept: dict, measured: dict | None = None, single: dict | None = None) -> dict[str, str]:
    out = {"methods": methods_table(kept), "reward_models": rm_table(kept), "claims": claims_table(kept)}
    if measured is not None:
        out["judge_vs_proxy"] = judge_table(measured)
    if single is not None:
        out[single["recipe"]] = runs_table(single)
    return out


def kept_blocks() -> dict[str, str]:
    """The blocks of the other kept result files: augmentation, length grouping, each sweep (by folder name)."""
    out = {}
    if (MEASURED / "augment.json").is_file():
        out["augment"] = augment_table(json.loads((MEASURED / "augment.json").read_text()))
    grouped = ROOT / "bench" / "length_grouping.json"
    if grouped.is_file():
        out["length_grouping"] = length_grouping_line(json.loads(grouped.read_text()))
    timings = ROOT / "bench" / "timings.json"
    if timings.is_file():
        out["bench_time"] = bench_time_line(json.loads(timings.read_text()))
    for path in sorted(MEASURED.glob("sweep_*.json")):
        out[path.stem] = sweep_table(json.loads(path.read_text()))
    return out


def render(readme: str, kept: dict, measured: dict | None = None, single: dict | None = None,
           others: dict[str, str] | None = None) -> str:
    for name, body in {**blocks(kept, measured, single), **(others or {})}.items():
        pattern = re.compile(rf"(<!-- figures:{name} start -->\n).*?(<!-- figures:{name} end -->)", re.DOTALL)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- figures:{name} start/end --> markers")
        readme = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--collect", metavar="RUNS_DIR", help="keep the figures of runs/<recipe> first")
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the kept figures give")
    p.add_argument("--collect-runs", metavar="RUNS_DIR", help="keep the figures of runs/<recipe> (one seed) first")
    p.add_argument("--collect-augment", metavar="RUNS_DIR", help="keep bench/augment_effect.sh's figures first")
    p.add_argument("--collect-sweep", metavar="SWEEP_DIR", help="keep a finished sweep's trials.json first")
    p.add_argument("--recipe", default="customer_support")
    p.add_argument("--runs-recipe", default="smollm2", help="the single-seed recipe whose table the README shows")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args(argv)
    if args.collect:
        print(f"kept {collect(Path(args.collect))}")
    if args.collect_runs:
        print(f"kept {collect_runs(Path(args.collect_runs))}")
    if args.collect_augment:
        print(f"kept {collect_augment(Path(args.collect_augment))}")
    if args.collect_sweep:
        summary = json.loads((Path(args.collect_sweep) / "trials.json").read_text())
        best = Path(args.collect_sweep) / "best" / "eval.json"  # best_recipe.yaml trained once, on the test split
        if best.is_file():
            ev = json.loads(best.read_text())
            summary["best_on_test"] = {"split": ev["tasks_file"], "judge_task_accuracy": ev["judge"]["task_accuracy"],
                                       "judge_task_accuracy_ci": ev["judge"]["task_accuracy_ci"],
                                       "general_ppl_drift": ev["general_ppl_drift"]}
        path = MEASURED / f"{Path(args.collect_sweep).name}.json"  # runs/<recipe>/sweep_sft -> sweep_sft.json
        path.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"kept {path}")
    single_path = MEASURED / f"{args.runs_recipe}.json"
    single = json.loads(single_path.read_text()) if single_path.is_file() else None
    kept = json.loads((MEASURED / f"{args.recipe}.json").read_text())
    judged = MEASURED / "judge_vs_proxy.json"
    readme = Path(args.readme).read_text()
    new = render(readme, kept, json.loads(judged.read_text()) if judged.is_file() else None, single, kept_blocks())
    if args.check:
        if new != readme:
            print("README.md's figures differ from bench/measured; run `python bench/readme_figures.py`",
                  file=sys.stderr)
            return 1
        return 0
    Path(args.readme).write_text(new)
    print(f"wrote the figures of bench/measured/{args.recipe}.json into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
