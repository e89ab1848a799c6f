#!/usr/bin/env bash
# One row of a denoiser ablation at equal budget: a base run's data, tokenizer and token cache, a new
# denoiser trained with config overrides, then the next-frame check (scripts/next_frame_check.py).
#
#   bash scripts/ablate_denoiser.sh BASE_WORKDIR NEW_WORKDIR CONFIG [--config.x=y ...]
#   e.g. bash scripts/ablate_denoiser.sh runs/topdown runs/abl/random_all configs/topdown.py \
#            --config.flow.noise_level=random_all
#
# BASE_WORKDIR must have finished the data, tokenizer and tokens stages of the same CONFIG.
set -euo pipefail
base=$1 new=$2 config=$3
shift 3
mkdir -p "$new"
for part in data tokenizer tokens; do
  [ -e "$new/$part" ] || cp -r "$base/$part" "$new/$part"
done
python -m maskflow_jax.main --config="$config" --workdir="$new" --mode=train "$@"
python scripts/next_frame_check.py "$new"
