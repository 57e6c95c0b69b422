#!/usr/bin/env bash
# rlft's PPO against TRL 1.12's PPOTrainer, whole updates on the same clock (bench/ppo_vs_trl112.py).
# TRL 1.12 cannot share a venv with TRL 1.16, so it gets its own (.venv-trl112, made on first use,
# pins from shared/notes/ppo.md §4.1). Rounds are interleaved: round r runs every side with seed r,
# one after another, so a slow minute of the machine falls on both; each side's runs are forked from
# one server process per venv (--drive). Writes bench/ppo_vs_trl112.md and .json.
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
"$PY" bench/ppo_vs_trl112.py --drive "$SIDE/bin/python" --rounds "${ROUNDS:-5}" --rounds-88m "${ROUNDS_88M:-5}" \
  --out bench/ppo_vs_trl112
