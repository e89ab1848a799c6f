#!/usr/bin/env bash
# The prepared accelerator run (docs/accelerators.md), for a bare device machine with JAX but without
# this project's other dependencies.
#
#   bash benchmarks/accelerator.sh --fetch-wheels    # here, once: the wheels the machine lacks, into .whl/
#   bash benchmarks/accelerator.sh [ARGS]            # there: install .whl/*.whl into /tmp/site, then
#                                                    # python3 -m benchmarks.accelerator --out "$OUT" ARGS
#
# The wheels are for CPython 3.12 on x86-64 Linux (the device image's Python); .whl/ is git-ignored via
# .git/info/exclude and travels with the device tool's `carry: [".whl"]`. Exit status 3: a package is
# still missing (carry .whl).
set -euo pipefail
cd "$(dirname "$0")/.."

# What configs/, maskflow_jax/ and benchmarks/ import beyond the image's JAX, Flax, Optax, Orbax, NumPy,
# Pillow, h5py, tqdm and absl (and what these need that the image does not have: portpicker for grain).
WHEELS=(grain==0.2.18 array-record==0.8.6 ml-collections==1.1.0 tensorboardX==2.6.5 portpicker==1.6.0)
PY=${PYTHON:-python3}

if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p .git/info .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import array_record, grain, ml_collections, tensorboardX" || {
  echo "missing Python packages: run 'bash benchmarks/accelerator.sh --fetch-wheels' here and carry .whl" >&2
  exit 3
}
export PYTHONUNBUFFERED=1
exec "$PY" -m benchmarks.accelerator --out "${OUT:-benchmarks/results/accelerator}" "$@"
