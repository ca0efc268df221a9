#!/usr/bin/env bash
# The GPU check (see bench/gpu_check.py): a whole audit on a random ~1B Llama built from a config,
# on bundled HH pairs; nothing is downloaded. Extra arguments go to the script, e.g.
#   bash bench/gpu_check.sh --pairs 500 --out gpu-check.json
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count(), "GPU(s)")'
exec "$PYTHON" bench/gpu_check.py "$@"
