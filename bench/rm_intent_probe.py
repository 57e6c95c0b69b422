"""Can a trained reward model tell a right answer from a polite answer to another question?

    .venv/bin/python bench/rm_intent_probe.py runs/customer_support/rm [runs/customer_support/rm_minilm]

For each of the first 40 held-out Harbor Goods tasks it scores the reference answer, the reference
answer of the next task (same house tone, another intent's facts), and a curt "ok." A reward that PPO
can raise task accuracy with must rank the first clearly above the second. Prints one line per run.
"""

from __future__ import annotations

import statistics
import sys

import reward_models
from rlft import data


def probe(run_dir: str, n: int = 40) -> dict:
    tasks = data.builtin("harbor_dev", 0, n)
    chats = [t["messages"] for t in tasks]
    right = [t["reference"] for t in tasks]
    other = right[1:] + right[:1]
    reward = reward_models.load(f"learned:{run_dir}")
    s_right, s_other, s_curt = reward(chats, right), reward(chats, other), reward(chats, ["ok."] * n)
    return {"run": run_dir, "right": statistics.mean(s_right), "other_intent": statistics.mean(s_other),
            "curt": statistics.mean(s_curt),
            "right_above_other": sum(a > b for a, b in zip(s_right, s_other)) / n}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        r = probe(run)
        print(f"{r['run']}: right answer {r['right']:.3f}, another intent's answer {r['other_intent']:.3f}, "
              f"'ok.' {r['curt']:.3f}; right above the other intent's on {r['right_above_other']:.0%} of tasks")
