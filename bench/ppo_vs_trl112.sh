#!/usr/bin/env bash
# rlft's PPO against TRL 1.12's PPOTrainer, whole updates on the same clock (bench/ppo_vs_trl112.py).
# TRL 1.12 cannot share a venv with TRL 1.16, so it gets its own (.venv-trl112, made on first use,
# pins from shared/notes/ppo.md §4.1). Rounds are interleaved: round r runs every side with seed r,
# one after another, so a slow minute of the machine falls on both. Writes bench/ppo_vs_trl112.md and .json.
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
ROUNDS=${ROUNDS:-5}
ROUNDS_88M=${ROUNDS_88M:-5}
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
one() {  # one run: the implementation's venv, its JSON line
  local impl=$1; shift
  if [ "$impl" = rlft ]; then "$PY" bench/ppo_vs_trl112.py --impl rlft "$@" | tail -1
  else PYTHONPATH= "$SIDE/bin/python" bench/ppo_vs_trl112.py --impl trl112 "$@" | tail -1; fi >> "$lines"
}
for r in $(seq 0 $((ROUNDS - 1))); do
  echo "toy round $((r + 1))/$ROUNDS" >&2
  one rlft --size toy --seed "$r"
  one trl112 --size toy --seed "$r"
  one trl112 --size toy --seed "$r" --no-collector
done
for r in $(seq 0 $((ROUNDS_88M - 1))); do
  echo "88m round $((r + 1))/$ROUNDS_88M" >&2
  one rlft --size 88m --seed "$r"
  one trl112 --size 88m --seed "$r" --no-collector
done
"$PY" bench/ppo_vs_trl112.py --collect "$lines" --out bench/ppo_vs_trl112
