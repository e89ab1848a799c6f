"""Device mesh from config: named axes (data, fsdp, tensor), one -1 auto axis, `AxisType.Auto`."""

import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_MESH_AXES = ("data", "fsdp")


def resolve_shape(shape, num_devices):
    """Replaces the single -1 of `shape` so the product is `num_devices`; errors name config.mesh.shape."""
    shape = tuple(int(x) for x in shape)
    if sum(x == -1 for x in shape) > 1:
        raise ValueError(f"config.mesh.shape={shape}: at most one axis may be -1")
    fixed = math.prod(x for x in shape if x != -1)
    if num_devices % fixed:
        raise ValueError(
            f"config.mesh.shape={shape} needs a multiple of {fixed} devices, but {num_devices} are available"
        )
    full = tuple(num_devices // fixed if x == -1 else x for x in shape)
    if math.prod(full) != num_devices:
        raise ValueError(
            f"config.mesh.shape={shape} covers {math.prod(full)} devices but {num_devices} "
            "are available; put -1 on one axis"
        )
    return full


def make_mesh(mesh_cfg, devices=None):
    """A `jax.sharding.Mesh` with Auto axes (so logical constraints work) over `devices` (default all)."""
    devices = jax.devices() if devices is None else list(devices)
    axes = tuple(mesh_cfg.axes)
    if len(axes) != len(tuple(mesh_cfg.shape)):
        raise ValueError(f"config.mesh.axes={axes} and config.mesh.shape={tuple(mesh_cfg.shape)} differ in length")
    shape = resolve_shape(mesh_cfg.shape, len(devices))
    if len(devices) == len(jax.devices()):
        return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes))
    return jax.sharding.Mesh(np.asarray(devices).reshape(shape), axes, axis_types=(AxisType.Auto,) * len(axes))


def batch_sharding(mesh):
    """Sharding of arrays whose leading axis is the global batch: split over data x fsdp."""
    return NamedSharding(mesh, P(tuple(a for a in BATCH_MESH_AXES if a in mesh.axis_names)))


def batch_shards(mesh):
    """How many ways the batch axis is split."""
    return math.prod(mesh.shape[a] for a in BATCH_MESH_AXES if a in mesh.axis_names)
