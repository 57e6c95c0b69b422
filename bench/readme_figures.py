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

ROOT = Path(__file__).resolve().parent.parent
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


def blocks(kept: dict, measured: dict | None = None) -> dict[str, str]:
    out = {"methods": methods_table(kept), "reward_models": rm_table(kept), "claims": claims_table(kept)}
    if measured is not None:
        out["judge_vs_proxy"] = judge_table(measured)
    return out


def render(readme: str, kept: dict, measured: dict | None = None) -> str:
    for name, body in blocks(kept, measured).items():
        pattern = re.compile(rf"(<!-- figures:{name} start -->\n).*?(<!-- figures:{name} end -->)", re.DOTALL)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- figures:{name} start/end --> markers")
        readme = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--collect", metavar="RUNS_DIR", help="keep the figures of runs/<recipe> first")
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the kept figures give")
    p.add_argument("--recipe", default="customer_support")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    args = p.parse_args(argv)
    if args.collect:
        print(f"kept {collect(Path(args.collect))}")
    kept = json.loads((MEASURED / f"{args.recipe}.json").read_text())
    judged = MEASURED / "judge_vs_proxy.json"
    readme = Path(args.readme).read_text()
    new = render(readme, kept, json.loads(judged.read_text()) if judged.is_file() else None)
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
