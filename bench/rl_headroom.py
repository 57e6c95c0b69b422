"""What can online RL reinforce? The facts a policy states when it samples, by intent.

    .venv/bin/python bench/rl_headroom.py runs/customer_support/sft [runs/customer_support/ppo ...]

PPO and GRPO only raise the probability of answers the policy already samples. For each run this
answers 20 Harbor Goods training prompts per intent (the prompts RL trains on) greedily and with
8 samples at the RL recipes' temperature 0.7, scores them with `harbor_facts`, and prints per
intent, apart for prompts with and without an order number: the greedy score, and the share of
prompts where at least one sample scores above the greedy answer (where RL has something to
reinforce). For a run with a parent it also splits the win rate over the parent on the held-out
tasks (the held-out judge, rlft/tasks/harbor/judge.py, greedy answers): wins, losses, and the ties where the parent's answer
is already perfect, where both state none of the facts, and the others. Writes
bench/rl_headroom.json.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from rlft import data, models, runs
from rlft.eval import harness
from rlft.eval.generate import generate
from rlft.tasks.harbor import generator as harbor
from rlft.tasks.harbor import judge
from rlft.tasks.harbor import rewards as rules

SAMPLES, TEMPERATURE, PER_INTENT, MAX_NEW_TOKENS = 8, 0.7, 20, 96


def headroom(run_dir: str) -> dict:
    manifest = runs.read_manifest(run_dir)
    recipe = manifest["recipe"]
    tok = models.load_tokenizer(recipe["model"], recipe["trust_remote_code"])
    policy = models.run_model(run_dir, manifest)
    rows = data.builtin("harbor_prompts", 0, PER_INTENT * len(harbor.INTENTS))
    prompts = [r["prompt"] for r in rows]
    greedy = rules.harbor_facts(prompts, generate(policy, tok, prompts, MAX_NEW_TOKENS, 64).texts)
    sampled = generate(policy, tok, prompts * SAMPLES, MAX_NEW_TOKENS, 64, temperature=TEMPERATURE, seed=0)
    scores = rules.harbor_facts(prompts * SAMPLES, sampled.texts)
    best = [max(scores[i::len(prompts)]) for i in range(len(prompts))]
    groups = defaultdict(list)
    for row, g, b in zip(rows, greedy, best):
        groups[(row["intent"], "order given" if row["order"] else "no order")].append((g, b))
    table = {f"{intent} / {kind}": {"n": len(v), "greedy_facts": sum(g for g, _ in v) / len(v),
                                    "sample_beats_greedy": sum(b > g for g, b in v) / len(v)}
             for (intent, kind), v in sorted(groups.items())}
    return {"run": run_dir, "greedy_facts": sum(greedy) / len(greedy),
            "sample_beats_greedy": sum(b > g for g, b in zip(greedy, best)) / len(greedy), "groups": table,
            "against_parent": against_parent(manifest, tok, policy) if manifest.get("parent") else None}


def against_parent(manifest: dict, tok, policy) -> dict:
    """The judge's win rate over the parent, task by task, with its ties told apart."""
    ev = manifest["recipe"]["eval"]
    tasks = harness.load_tasks(ev["tasks"], manifest["seed"], ev["n_tasks"])
    chats = [t["messages"] for t in tasks]
    ours = generate(policy, tok, chats, ev["max_new_tokens"], 64).texts
    theirs = generate(models.run_model(manifest["parent"]), tok, chats, ev["max_new_tokens"], 64).texts
    return split(tasks, ours, theirs)


def split(tasks: list[dict], ours: list[str], theirs: list[str]) -> dict:
    """Wins, losses, and the ties: the parent's answer already perfect, no facts in either, others."""
    out = dict.fromkeys(("wins", "losses", "ties_parent_perfect", "ties_no_facts", "ties_other"), 0)
    for task, a, b in zip(tasks, ours, theirs):
        judged, parent = judge.compare(task, a, b), judge.judge_task(task, b)
        if judged != 0.5:
            out["wins" if judged == 1.0 else "losses"] += 1
        elif parent.correct and parent.courtesy == 1.0:  # nothing left to win
            out["ties_parent_perfect"] += 1
        elif max(judge.judge_task(task, x).coverage for x in (a, b)) == 0.0:
            out["ties_no_facts"] += 1
        else:
            out["ties_other"] += 1
    return out


if __name__ == "__main__":
    results = [headroom(run) for run in sys.argv[1:]]
    for r in results:
        print(f"\n{r['run']}: greedy facts {r['greedy_facts']:.3f}; a sample beats the greedy answer on "
              f"{r['sample_beats_greedy']:.0%} of prompts ({SAMPLES} samples at temperature {TEMPERATURE})")
        print("| intent / order | n | greedy facts | a sample beats greedy |\n| --- | --- | --- | --- |")
        for name, g in r["groups"].items():
            print(f"| {name} | {g['n']} | {g['greedy_facts']:.3f} | {g['sample_beats_greedy']:.2f} |")
        if r["against_parent"]:
            print(f"against its parent on the held-out tasks: {r['against_parent']}")
    Path(__file__).with_name("rl_headroom.json").write_text(json.dumps(results, indent=1) + "\n")
