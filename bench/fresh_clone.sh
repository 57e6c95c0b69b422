#!/usr/bin/env bash
# End to end, as a new user meets it: clone this repository into an empty folder, then time the
# set-up (`make setup`), `make sft`, `make dpo` and then `make compare` there (compare reuses the
# sft and dpo runs and adds ppo, grpo, sft_continued and the report), each separately.
# Writes bench/fresh_clone.md and bench/e2e.json in this repository and prints the table.
# About 30 minutes on 2 CPU cores; COMPARE=0 stops after dpo (8 minutes).
#   bash bench/fresh_clone.sh [TARGET_DIR]        (make bench-e2e)
# RECIPE=recipes/smollm2 COMPARE=0 bash bench/fresh_clone.sh: that recipe's pipeline instead, written to
# bench/fresh_clone_smollm2.md and bench/e2e_smollm2.json (about 25 minutes).
# Like a new user's machine, the clone starts with a new, empty RLFT_CACHE (SmolLM2's conversion and the
# base's evaluation figures are made again; rlft-tiny ships in the repository) unless RLFT_CACHE is set.
# A step that fails stops the script, and nothing is written.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$(mktemp -d)/rlft}
recipe=${RECIPE:-}
suffix=${recipe:+_$(basename "$recipe")}
git clone -q "$src" "$dest"
cd "$dest"
export RLFT_CACHE=${RLFT_CACHE:-$(mktemp -d)}
mk=(make)
if [ -n "$recipe" ]; then mk+=("RECIPE=$recipe"); fi
t() {  # the seconds of one make target; a failure stops here (set -e does not reach into $( ))
  local s=$(date +%s)
  "${mk[@]}" "$1" > "log-make-$1.txt" 2>&1 || { echo "make $1 failed: see $PWD/log-make-$1.txt" >&2; return 1; }
  echo $(( $(date +%s) - s ))
}
setup=$(t setup)
sft=$(t sft)
dpo=$(t dpo)
compare=null
if [ "${COMPARE:-1}" = 1 ]; then compare=$(t compare); fi
commit=$(git rev-parse --short HEAD)
command="${recipe:+RECIPE=$recipe }$([ "${COMPARE:-1}" = 1 ] || echo "COMPARE=$COMPARE ")bash bench/fresh_clone.sh"
{
  echo "# Fresh clone on $(nproc) CPU cores, $(date -u +%F), commit $commit${recipe:+, $recipe}"
  echo
  echo "Command: \`$command\`$([ -n "$recipe" ] || echo " (\`make bench-e2e\`)")."
  echo
  echo "| step | seconds |"
  echo "|---|---|"
  echo "| make setup (venv, torch, rlft) | $setup |"
  echo "| make sft (train + evaluate) | $sft |"
  echo "| make dpo (train + evaluate) | $dpo |"
  echo "| make sft dpo, set-up included | $(( setup + sft + dpo )) |"
  if [ "$compare" != null ]; then echo "| make compare (after sft dpo: ppo, grpo, sft_continued, report) | $compare |"; fi
  echo
  "${mk[@]}" -s table
} | tee "$src/bench/fresh_clone$suffix.md"
cat > "$src/bench/e2e$suffix.json" <<EOF
{"command": "$command", "recipe": "${recipe:-recipes/customer_support}", "date": "$(date -u +%F)",
 "commit": "$commit", "cores": $(nproc),
 "setup_s": $setup, "sft_s": $sft, "dpo_s": $dpo, "sft_dpo_with_setup_s": $(( setup + sft + dpo )),
 "compare_after_sft_dpo_s": $compare}
EOF
