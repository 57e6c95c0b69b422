#!/usr/bin/env bash
# End to end, as a new user meets it: clone this repository into an empty folder, then time the
# set-up (`make setup`), `make sft`, `make dpo` and then `make compare` there (compare reuses the
# sft and dpo runs and adds ppo, grpo, sft_continued and the report), each separately.
# Writes bench/fresh_clone.md and bench/e2e.json in this repository and prints the table.
# About 30 minutes on 2 CPU cores; COMPARE=0 stops after dpo (8 minutes).
#   bash bench/fresh_clone.sh [TARGET_DIR]        (make bench-e2e)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$(mktemp -d)/rlft}
git clone -q "$src" "$dest"
cd "$dest"
t() { local s=$(date +%s); "$@" > "log-$1-$2.txt" 2>&1; echo $(( $(date +%s) - s )); }
setup=$(t make setup)
sft=$(t make sft)
dpo=$(t make dpo)
compare=null
if [ "${COMPARE:-1}" = 1 ]; then compare=$(t make compare); fi
commit=$(git rev-parse --short HEAD)
{
  echo "# Fresh clone on $(nproc) CPU cores, $(date -u +%F), commit $commit"
  echo
  echo "Command: \`bash bench/fresh_clone.sh\` (\`make bench-e2e\`)."
  echo
  echo "| step | seconds |"
  echo "|---|---|"
  echo "| make setup (venv, torch, rlft) | $setup |"
  echo "| make sft (train + evaluate) | $sft |"
  echo "| make dpo (train + evaluate) | $dpo |"
  echo "| make sft dpo, set-up included | $(( setup + sft + dpo )) |"
  if [ "$compare" != null ]; then echo "| make compare (after sft dpo: ppo, grpo, sft_continued, report) | $compare |"; fi
  echo
  make -s table
} | tee "$src/bench/fresh_clone.md"
cat > "$src/bench/e2e.json" <<EOF
{"command": "bash bench/fresh_clone.sh", "date": "$(date -u +%F)", "commit": "$commit", "cores": $(nproc),
 "setup_s": $setup, "sft_s": $sft, "dpo_s": $dpo, "sft_dpo_with_setup_s": $(( setup + sft + dpo )),
 "compare_after_sft_dpo_s": $compare}
EOF
