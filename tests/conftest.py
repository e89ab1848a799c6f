"""Test configuration: 8 fake CPU devices (set before JAX is imported) so 4x2 meshes are real."""

import fcntl
import os
import shutil

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower than a few seconds; excluded from the default run")


def pytest_collection_modifyitems(config, items):
    """The tests of the shared smoke run go first, in one block: pytest-xdist's load scheduling (`-n 2`
    in pytest.ini) hands each worker a contiguous first batch, so one worker builds the run and takes
    them while the other runs the rest. (The fixture's lock keeps it correct under any scheduling.)"""
    items.sort(key=lambda item: "smoke_run" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(config, workdir, stage results) of one `--mode=pipeline` run at the maze `smoke` size (about
    1.5 minutes on a 2-core CPU), shared by every test that needs a finished run.

    Built once per test session, also under pytest-xdist: the first worker to need it builds it
    under a file lock in the directory the workers share; each worker then tests its own copy (the
    tests write into the run) and reloads the stage results from it (every stage is skipped).
    """
    from configs import maze  # noqa: PLC0415
    from maskflow_jax.modes import pipeline  # noqa: PLC0415

    cfg = maze.get_config("smoke")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    pristine = shared / "smoke_run_pristine"
    with open(shared / "smoke_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (pristine / "REPORT.md").exists():
                pipeline.run(cfg, str(pristine))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    workdir = tmp_path_factory.mktemp("smoke_run")
    shutil.copytree(pristine, workdir, dirs_exist_ok=True)
    return cfg, str(workdir), pipeline.run(cfg, str(workdir))
