#!/usr/bin/env bash
# Does data.augment make SFT robust to messy customer messages? The shipped SFT recipe and the same
# recipe with data.augment (recipes/customer_support/sft_augment.yaml), over SEEDS; every run is
# evaluated on harbor_test by its stage and on harbor_test_messy (the same tasks, typed in a hurry).
# The figures go to bench/measured/augment.json and the README's "augment" block. ~25 min on 2 cores.
set -euo pipefail
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1 2"}
RUNS=${RUNS:-runs/augment}
for seed in $SEEDS; do
  for recipe in sft sft_augment; do
    out=$RUNS/seed$seed/$recipe
    "$PY" -m rlft.cli sft --recipe recipes/customer_support/$recipe.yaml --set seed=$seed --output-dir "$out"
    if [ ! -f "$out/eval_messy.json" ]; then
      "$PY" -m rlft.cli eval --run "$out" --tasks harbor_test_messy --out "$out/eval_messy.json"
    fi
  done
done
"$PY" bench/readme_figures.py --collect-augment "$RUNS"
