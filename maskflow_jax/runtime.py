"""Process-level setup: multi-process JAX initialisation and a log line of the topology."""

import os

import jax
from absl import logging

# Environment variables that mean "this process is one of several" (Cloud TPU pods set up their own
# discovery; SLURM and explicit coordinators are detected by jax.distributed.initialize()).
_MULTIPROCESS_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS")


def wants_distributed(env=None):
    """True when the environment describes a multi-process job (TPU pod, SLURM, coordinator)."""
    env = os.environ if env is None else env
    if any(env.get(k) for k in _MULTIPROCESS_HINTS):
        return True
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return True
    return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def initialize(distributed="auto"):
    """Initialises jax.distributed for 'on', or for 'auto' when the environment asks for it."""
    if distributed not in ("auto", "on", "off"):
        raise ValueError(f"--distributed={distributed!r}: expected auto, on or off")
    if distributed == "on" or (distributed == "auto" and wants_distributed()):
        jax.distributed.initialize()


def topology():
    """A dict describing processes and devices (logged at start-up and saved with results)."""
    devices = jax.devices()
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": len(devices),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
    }


def log_topology():
    topo = topology()
    logging.info(
        "JAX %s | process %d/%d | %d local / %d global %s devices (%s)",
        jax.__version__,
        topo["process_index"],
        topo["process_count"],
        topo["local_devices"],
        topo["global_devices"],
        topo["platform"],
        topo["device_kind"],
    )
    return topo


class HostMismatchError(RuntimeError):
    """Processes of one job were started with different configs or data (the message says which)."""


def check_hosts_agree(name, value):
    """Raises HostMismatchError unless every process passes the same `value` (a JSON-able object).

    Used at start-up for the config and the data description: a multi-host job whose hosts read
    different configs or datasets would otherwise train silently on inconsistent batches.
    """
    if jax.process_count() == 1:
        return
    import hashlib
    import json

    import numpy as np
    from jax.experimental import multihost_utils

    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()[:8]
    mine = np.frombuffer(digest, np.uint32).copy()
    every = np.asarray(multihost_utils.process_allgather(mine))
    if not (every == mine).all():
        differing = [i for i in range(every.shape[0]) if not (every[i] == every[0]).all()]
        raise HostMismatchError(
            f"processes disagree on the {name}: process(es) {differing} differ from process 0; "
            f"start every host with the same command, config and data"
        )
