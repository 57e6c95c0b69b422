#!/usr/bin/env bash
# rlft's PPO against TRL 1.12's PPOTrainer on the toy task of bench/ppo_vs_trl112.py.
# TRL 1.12 cannot share a venv with TRL 1.16, so it gets its own (.venv-trl112, made on first use,
# pins from shared/notes/ppo.md §4.1). Writes bench/ppo_vs_trl112.md and .json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIDE=${SIDE:-.venv-trl112}
if [ ! -x "$SIDE/bin/python" ]; then
  python3 -m venv "$SIDE"
  "$SIDE/bin/pip" install -q torch==2.13.0 trl==1.12.0 transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 \
    datasets==5.2.0
fi
export TRL_EXPERIMENTAL_SILENCE=1 TOKENIZERS_PARALLELISM=false
SEEDS=${SEEDS:-0 1 2}
runs=()
for seed in $SEEDS; do  # one seed moves a toy's reward more than the implementations differ; interleaved
  runs+=("$("$PY" bench/ppo_vs_trl112.py --impl rlft --seed "$seed" | tail -1)")
  runs+=("$(PYTHONPATH= "$SIDE/bin/python" bench/ppo_vs_trl112.py --impl trl112 --seed "$seed" | tail -1)")
done
"$PY" - "${runs[@]}" <<'PYEOF'
import json, statistics, sys
every = [json.loads(a) for a in sys.argv[1:]]
rows = []
for impl in ("rlft", "trl 1.12"):  # medians over the seeds
    mine = [r for r in every if r["implementation"] == impl]
    row = dict(mine[0])
    for key in ("score_first5", "score_last5", "kl_last5", "seconds_per_update", "peak_rss_mib"):
        row[key] = statistics.median(r[key] for r in mine)
        row[key + "_runs"] = [r[key] for r in mine]
    row["seed"] = [r["seed"] for r in mine]
    rows.append(row)
json.dump(rows, open("bench/ppo_vs_trl112.json", "w"), indent=2)
keys = ["updates", "score_first5", "score_last5", "kl_last5", "seconds_per_update", "trainable_parameters",
        "parameters_in_memory", "peak_rss_mib"]
lines = [f"# rlft PPO vs TRL 1.12 PPOTrainer (toy task, CPU; medians over seeds {rows[0]['seed']})", "",
         "`bash bench/ppo_vs_trl112.sh`; the task and settings are in bench/ppo_vs_trl112.py.", "",
         "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
for r in rows:
    lines.append(f"| {r['implementation']} | " + " | ".join(
        f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
lines += ["", "Per seed, score_last5: " + "; ".join(f"{r['implementation']} {r['score_last5_runs']}" for r in rows),
          "", "score: mean toy reward of the first and last 5 updates; kl: TRL's objective/kl (k1 summed over the",
          "response) for both; seconds_per_update: rlft's update loop timed per update, TRL's train() wall time",
          "divided by its updates; parameters_in_memory: the trained model(s) (TRL 1.12: policy + full critic;",
          "rlft: one backbone + policy and value adapters + head); peak_rss_mib: the process's peak resident",
          "memory, mostly torch itself at this size. 2 CPU cores, fp32; each side is deterministic for a seed."]
open("bench/ppo_vs_trl112.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
