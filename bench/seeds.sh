#!/usr/bin/env bash
# Every method the README reports, over several training seeds, evaluated on the test split:
#   runs/<recipe>/seed<N>/{sft,dpo,ppo,grpo,sft_continued,rm,rm_minilm}
# then `rlft compare` over all of them (mean, min and max per method) into runs/<recipe>/seeds/.
# Usage: SEEDS="0 1 2" PY=.venv/bin/python bash bench/seeds.sh   (make seeds; ~25 min a seed on 2 cores)
# A rerun skips finished runs (each stage is up to date) and evaluates any whose evaluation is missing.
set -euo pipefail
PY=${PY:-.venv/bin/python}
RECIPE=${RECIPE:-recipes/customer_support}
SEEDS=${SEEDS:-0 1 2}
NAME=$(basename "$RECIPE")
RUNS=${RUNS:-runs}
rlft() { "$PY" -m rlft.cli "$@"; }
all=()
for seed in $SEEDS; do
  dir="$RUNS/$NAME/seed$seed"
  echo "== seed $seed: $dir"
  rlft sft --recipe "$RECIPE/sft.yaml" --set seed="$seed" --output-dir "$dir/sft"
  for stage in dpo ppo grpo; do
    rlft "$stage" --recipe "$RECIPE/$stage.yaml" --set seed="$seed" --set parent="$dir/sft" --output-dir "$dir/$stage"
  done
  # SFT continued for as many steps as DPO takes (1000 pairs / 16 = 63): DPO's control arm
  rlft sft --recipe "$RECIPE/sft.yaml" --set seed="$seed" --set parent="$dir/sft" --set train.max_steps=63 \
    --output-dir "$dir/sft_continued"
  rlft rm --recipe "$RECIPE/rm.yaml" --set seed="$seed" --output-dir "$dir/rm"
  rlft rm --recipe "$RECIPE/rm_minilm.yaml" --set seed="$seed" --output-dir "$dir/rm_minilm"
  all+=("$dir/sft" "$dir/dpo" "$dir/ppo" "$dir/grpo" "$dir/sft_continued")
done
rlft compare "${all[@]}" --out "$RUNS/$NAME/seeds"
