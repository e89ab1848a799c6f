#!/usr/bin/env bash
# Cloud TPU VM launcher for maskflow_jax (multi-host: every worker runs the same command and
# jax.distributed discovers the slice).
#
#   launch/tpu.sh [--dry-run] create  NAME ZONE ACCELERATOR [RUNTIME]   # e.g. v5litepod-16 v2-alpha-tpuv5-lite
#   launch/tpu.sh [--dry-run] setup   NAME ZONE                         # ship this checkout (git archive HEAD), pip install on all workers
#   launch/tpu.sh [--dry-run] run     NAME ZONE -- ARGS...              # python -m maskflow_jax.main ARGS on all workers
#   launch/tpu.sh [--dry-run] logs    NAME ZONE                         # copy worker logs to ./tpu-logs/NAME
#   launch/tpu.sh [--dry-run] stop    NAME ZONE                         # kill the job on all workers
#   launch/tpu.sh [--dry-run] delete  NAME ZONE
#
# --dry-run prints the exact gcloud commands instead of running them.
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
run() {
  if [[ $DRY == 1 ]]; then printf '%q ' "$@"; printf '\n'; else "$@"; fi
}
usage() { sed -n '2,13p' "$0" >&2; exit 2; }

cmd="${1:-}"; shift || true
case "$cmd" in
  create)
    [[ $# -ge 3 ]] || usage
    name=$1 zone=$2 accel=$3 runtime=${4:-v2-alpha-tpuv5-lite}
    run gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accel" --version="$runtime"
    ;;
  setup)
    [[ $# -ge 2 ]] || usage
    name=$1 zone=$2
    tarball=${TMPDIR:-/tmp}/maskflow_jax.tar.gz
    run git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$tarball" HEAD
    run gcloud compute tpus tpu-vm scp --zone="$zone" --worker=all "$tarball" "$name:~/maskflow_jax.tar.gz"
    remote="set -e; rm -rf ~/maskflow_jax; mkdir ~/maskflow_jax; tar -xzf ~/maskflow_jax.tar.gz -C ~/maskflow_jax; cd ~/maskflow_jax; python3 -m pip install -U pip; python3 -m pip install -e '.[tpu]'"
    run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$remote"
    ;;
  run)
    [[ $# -ge 3 && "$3" == "--" ]] || usage
    name=$1 zone=$2; shift 3
    args=$(printf '%q ' "$@")
    remote="cd ~/maskflow_jax && mkdir -p ~/logs && nohup python3 -m maskflow_jax.main --distributed=on $args > ~/logs/main.log 2>&1 &"
    run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$remote"
    ;;
  logs)
    [[ $# -ge 2 ]] || usage
    name=$1 zone=$2
    run mkdir -p "tpu-logs/$name"
    run gcloud compute tpus tpu-vm scp --zone="$zone" --worker=all "$name:~/logs/main.log" "tpu-logs/$name/"
    ;;
  stop)
    [[ $# -ge 2 ]] || usage
    name=$1 zone=$2
    run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="pkill -f maskflow_jax.main || true"
    ;;
  delete)
    [[ $# -ge 2 ]] || usage
    name=$1 zone=$2
    run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;
  *) usage ;;
esac
