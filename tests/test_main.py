"""The entry point: a mode's run prints one summary line, and library INFO logs (absl, orbax) stay off
unless --verbosity is given."""

import re
import subprocess
import sys

INFO = re.compile(r"^I\d{4} ", re.M)  # absl's INFO line prefix, e.g. "I1202 02:21:57.233280 ..."


def _main(workdir, *extra):
    cmd = [
        sys.executable,
        "-m",
        "maskflow_jax.main",
        "--config=configs/maze.py:smoke",
        f"--workdir={workdir}",
        "--mode=prepare_data",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_quiet_by_default_and_info_with_verbosity(tmp_path):
    quiet = _main(tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not INFO.search(quiet.stderr), quiet.stderr[:2000]
    assert quiet.stdout.strip().splitlines() == ["prepared {'train': 8, 'test': 4}"]
    loud = _main(tmp_path, "--verbosity=0")  # the data exist now: only the INFO notes and the summary
    assert loud.returncode == 0 and INFO.search(loud.stderr), loud.stderr[-2000:]
