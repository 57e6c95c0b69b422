#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): QLoRA SFT of the Qwen2.5-0.5B and Llama-3.1-8B architectures at
# 2,048 tokens, DPO and PPO at 512 + 512, through rlft and through TRL directly; at most 8 minutes on one
# H200. `--tiny` runs the same rows at tiny sizes on any CPU (the tests, and `make bench` without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" bench/gpu_check.py "$@"
