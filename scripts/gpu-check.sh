#!/usr/bin/env bash
# Check a GPU machine for ImageScope, offline, from a fresh clone:
#   bash scripts/bootstrap.sh && bash scripts/gpu-check.sh
# torch sees the GPU; open_clip ViT-B-32 (random weights) embeddings/s at
# batch 64 and 256; the embedded store built and queried at 1,000,000 x 512.
# On a machine without CUDA the CUDA parts print SKIP lines and the store part
# runs at 20,000 x 512. With $OUT set, results go to $OUT/gpu-check.json.
# Options go to benchmarks/gpu_check.py (--store-n N, --cpu, --json PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
if [ ! -x "$python" ]; then
  echo "error: no .venv here; run 'bash scripts/bootstrap.sh' first" >&2
  exit 1
fi
# Nothing below may reach the network (no model hub, no downloads).
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$python" benchmarks/gpu_check.py "$@"
