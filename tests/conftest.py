"""Test configuration: 8 fake CPU devices (set before JAX is imported) so 4x2 meshes are real."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower than a few seconds; excluded from the default run")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the group markers into scheduling groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, the default in pytest.ini) every test of the shared
    smoke run goes to one worker, so the ~1.5-minute pipeline fixture runs once."""
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke_run"))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(config, workdir, stage results) of one `--mode=pipeline` run at the maze `smoke` size (about
    2 minutes on a 2-core CPU), shared by every test that needs a finished run."""
    from configs import maze  # noqa: PLC0415
    from maskflow_jax import pipeline  # noqa: PLC0415

    cfg = maze.get_config("smoke")
    workdir = str(tmp_path_factory.mktemp("smoke_run"))
    return cfg, workdir, pipeline.run_pipeline(cfg, workdir)
