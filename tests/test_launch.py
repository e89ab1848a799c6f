"""Launch scripts: valid bash, and --dry-run prints the exact commands."""

import os
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = ["tpu.sh", "gpu_node.sh", "slurm.sbatch"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_are_strict(script):
    text = (LAUNCH / script).read_text()
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


def _dry(*args, env=None):
    return subprocess.run(
        ["bash", *args], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    ).stdout


def test_tpu_dry_run_commands():
    out = _dry(str(LAUNCH / "tpu.sh"), "--dry-run", "create", "mf", "us-central2-b", "v5litepod-16")
    assert out.startswith("gcloud compute tpus tpu-vm create mf --zone=us-central2-b --accelerator-type=v5litepod-16")
    out = _dry(
        str(LAUNCH / "tpu.sh"), "--dry-run", "run", "mf", "z", "--", "--config=configs/ffs.py", "--workdir=gs://b/r"
    )
    assert "--worker=all" in out and "maskflow_jax.main" in out and "--distributed=on" in out
    assert "--config=configs/ffs.py" in out
    out = _dry(str(LAUNCH / "tpu.sh"), "--dry-run", "delete", "mf", "z")
    assert out.strip() == "gcloud compute tpus tpu-vm delete mf --zone=z --quiet"


def test_tpu_usage_errors():
    res = subprocess.run(["bash", str(LAUNCH / "tpu.sh"), "run", "mf"], capture_output=True, text=True)
    assert res.returncode == 2 and "launch/tpu.sh" in res.stderr


def test_gpu_and_slurm_dry_run():
    out = _dry(str(LAUNCH / "gpu_node.sh"), "--dry-run", "--config=configs/ffs.py", "--workdir=/w")
    assert "python -m maskflow_jax.main --distributed=off --config=configs/ffs.py --workdir=/w" in out
    out = _dry(str(LAUNCH / "slurm.sbatch"), "--config=configs/ffs.py", "--workdir=/w", env={"DRY_RUN": "1"})
    assert out.startswith("srun --kill-on-bad-exit=1 python -m maskflow_jax.main --distributed=on")
