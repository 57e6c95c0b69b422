"""How often do the held-out judge and the training reward order two answers the same way?

    python bench/judge_vs_proxy.py        # writes bench/measured/judge_vs_proxy.json (seconds, no model)

On the 110 test tasks of seed 0, each task gets constructed answers: its reference (the house
reply), one rejected answer of each kind the preference data holds (tone, facts, both, padding,
other_intent), the answer that lists every intent's facts (hedging), the reference with one fact
negated, and the reference with an invented policy added. For every pair of answers to the same
task, the judge (rlft/tasks/harbor/judge.py, by its rank) and the proxy (harbor_facts + house_tone,
what PPO and GRPO optimise) each say which is better or that they tie; the script counts how often
they agree, and per kind of answer the judge's accuracy and the proxy's mean score. The issue that
asked for the judge found the old rule judge agreeing with the proxy on 89% of such pairs.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from rlft.tasks.harbor import PROXY, REWARDS, generator, judge

OUT = Path(__file__).resolve().parent / "measured" / "judge_vs_proxy.json"
NEGATIONS = {"Returns are accepted": "Returns are not accepted", "We will email you": "We will not email you",
             "can be cancelled until": "cannot be cancelled until", "We will ship you": "We will not ship you",
             "can be changed before": "cannot be changed before", "will be refunded": "will not be refunded",
             "There is no cancellation fee": "There is a cancellation fee", "We price match": "We do not price match",
             "Live chat is open 24/7": "Live chat is not open 24/7", "We will repair": "We will not repair",
             "The reset link is valid": "The reset link is not valid", "We email you": "We do not email you"}
INVENTED = "Please note that a 25 dollar handling fee applies."


def answers(task: dict, rng: random.Random) -> dict[str, str]:
    case = generator.Case(task["intent"], task["messages"][0]["content"],
                          judge.customer_order(task["messages"][0]["content"]), False, 0)
    out = {"reference": task["reference"]}
    for kind in generator.REJECTION_KINDS:
        out[kind] = generator.rejected_reply(rng, case, kind)
    out["every_intent"] = " ".join([task["reference"].split(".")[0] + "."]
                                   + [f.says[0] for i in generator.INTENTS.values() for f in i.facts])
    negated = task["reference"]
    for plain, negative in NEGATIONS.items():
        if plain in negated:
            negated = negated.replace(plain, negative, 1)
            break
    if negated != task["reference"]:
        out["negated"] = negated
    out["invented"] = task["reference"].replace(" Is there", f" {INVENTED} Is there").replace(
        " Let me know", f" {INVENTED} Let me know").replace(" Happy to", f" {INVENTED} Happy to")
    return out


def proxy(task: dict, texts: list[str]) -> list[float]:
    prompts = [task["messages"]] * len(texts)
    scores = [REWARDS[name](prompts, texts) for name in PROXY]
    return [sum(w * s[i] for w, s in zip(PROXY.values(), scores)) for i in range(len(texts))]


def sign(x) -> int:
    return (x > 0) - (x < 0)


def measure(seed: int = 0, n: int = 110) -> dict:
    rng = random.Random(seed)
    agree = total = 0
    by_kind: dict[str, dict[str, list[float]]] = {}
    for task in generator.task_rows(seed, n, "test"):
        made = answers(task, rng)
        names = list(made)
        ranks = {k: judge.judge_task(task, v).rank() for k, v in made.items()}
        scores = dict(zip(names, proxy(task, [made[k] for k in names])))
        for k in names:
            entry = by_kind.setdefault(k, {"judge_correct": [], "proxy": []})
            entry["judge_correct"].append(float(ranks[k][0]))
            entry["proxy"].append(scores[k])
        for a, b in itertools.combinations(names, 2):
            j = sign((ranks[a] > ranks[b]) - (ranks[a] < ranks[b]))
            agree += j == sign(scores[a] - scores[b])
            total += 1
    return {"command": "python bench/judge_vs_proxy.py", "seed": seed, "tasks": n, "pairs": total,
            "order_agreement": agree / total,
            "by_kind": {k: {"n": len(v["proxy"]), "judge_accuracy": sum(v["judge_correct"]) / len(v["proxy"]),
                            "proxy_mean": sum(v["proxy"]) / len(v["proxy"])} for k, v in by_kind.items()}}


if __name__ == "__main__":
    result = measure()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"judge and proxy order {result['pairs']} answer pairs the same way {result['order_agreement']:.1%} of the time")
    for kind, r in result["by_kind"].items():
        print(f"  {kind:13s} n {r['n']:3d}  judge accuracy {r['judge_accuracy']:.3f}  proxy mean {r['proxy_mean']:.3f}")
