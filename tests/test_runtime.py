"""Multi-process detection and topology."""

import pytest

from maskflow_jax import runtime


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, False),
        ({"SLURM_NTASKS": "1"}, False),
        ({"SLURM_NTASKS": "4"}, True),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
        ({"TPU_WORKER_HOSTNAMES": "w0"}, False),
        ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, True),
    ],
)
def test_wants_distributed(env, expected):
    assert runtime.wants_distributed(env) is expected


def test_topology_sees_fake_devices():
    topo = runtime.topology()
    assert topo["global_devices"] == 8 and topo["process_count"] == 1 and topo["platform"] == "cpu"


def test_initialize_rejects_unknown_mode():
    with pytest.raises(ValueError, match="--distributed"):
        runtime.initialize("maybe")
