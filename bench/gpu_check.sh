#!/usr/bin/env bash
# Run the GPU check (QLoRA SFT and DPO on Qwen2-0.5B's architecture) where a CUDA GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" bench/gpu_check.py "$@"
