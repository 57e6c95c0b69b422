#!/usr/bin/env bash
# A new user's first run, timed: clone this repository into an empty folder, then time the
# set-up (`make setup`), `make sft` and `make dpo` there, each separately, and print the
# results table. Writes bench/fresh_clone.md in the clone and prints it.
#   bash bench/fresh_clone.sh [TARGET_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$(mktemp -d)/rlft}
git clone -q "$src" "$dest"
cd "$dest"
t() { local s=$(date +%s); "$@" > "log-$1-$2.txt" 2>&1; echo $(( $(date +%s) - s )); }
setup=$(t make setup)
sft=$(t make sft)
dpo=$(t make dpo)
{
  echo "# Fresh clone on $(nproc) CPU cores, $(date -u +%F)"
  echo
  echo "| step | seconds |"
  echo "|---|---|"
  echo "| make setup (venv, torch, rlft) | $setup |"
  echo "| make sft (train + evaluate) | $sft |"
  echo "| make dpo (train + evaluate) | $dpo |"
  echo
  make -s table
} | tee bench/fresh_clone.md
