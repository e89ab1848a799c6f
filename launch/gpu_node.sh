#!/usr/bin/env bash
# Single-node GPU run: one process drives all local GPUs (jax.jit over a mesh of them).
#
#   launch/gpu_node.sh [--dry-run] ARGS...     # e.g. --config=configs/ffs.py --workdir=runs/ffs
#
# Install once with: pip install -e ".[gpu]"
set -euo pipefail
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
[[ $# -ge 1 ]] || { sed -n '2,7p' "$0" >&2; exit 2; }
cmd=(env XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}" python -m maskflow_jax.main --distributed=off "$@")
if [[ $DRY == 1 ]]; then printf '%q ' "${cmd[@]}"; printf '\n'; else exec "${cmd[@]}"; fi
