"""Builds the denoiser, the sharded train state and the jitted step for a mesh.

State shardings come from the abstract (boxed) state: `jax.eval_shape` -> logical partition specs
-> mesh shardings under the config's rules. The init runs under `jax.jit` with
those `out_shardings`, so parameters and optimizer state are born sharded.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from maskflow_jax.config_validation import ConfigError, token_grid
from maskflow_jax.models.latte import init_params, make_denoiser
from maskflow_jax.parallel.mesh import batch_sharding as make_batch_sharding
from maskflow_jax.parallel.mesh import batch_shards
from maskflow_jax.train.optimizer import make_optimizer
from maskflow_jax.train.state import TrainState
from maskflow_jax.train.step import make_train_step


def vocab(cfg):
    """(V, mask_id): the codebook plus one MASK id, which is the last index (docs/method.md §1)."""
    return cfg.tokenizer.n_embed + 1, cfg.tokenizer.n_embed


def rules_from_config(mesh_cfg):
    """The logical -> mesh axis rules of the config as a tuple of (name, axes) pairs."""
    return tuple((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes) for name, axes in mesh_cfg.rules)


@dataclasses.dataclass
class Trainer:
    """Everything the loop needs: call `init(rng)` and `step(state, batch)` inside `jax.set_mesh`."""

    model: nn.Module
    mesh: Any
    rules: tuple
    state_shardings: Any
    abstract_state: Any
    batch_sharding: NamedSharding
    init: Callable
    step: Callable
    mask_id: int
    vocab_size: int
    tokens_per_frame: int


def build_trainer(cfg, mesh):
    """Builds the model, the shardings and the jitted init/step for `mesh` (under the config's rules)."""
    vocab_size, mask_id = vocab(cfg)
    grid = token_grid(cfg)
    shards = batch_shards(mesh)
    if cfg.data.batch_size % (shards * cfg.train.grad_accum):
        raise ConfigError(
            f"config.data.batch_size={cfg.data.batch_size} does not split over the {shards} devices of the "
            f"mesh's batch axes (x train.grad_accum={cfg.train.grad_accum} microbatches); "
            f"use a multiple of {shards * cfg.train.grad_accum}"
        )
    model = make_denoiser(cfg.model, vocab_size=vocab_size, frames=cfg.data.frames, grid=grid)
    tx = make_optimizer(cfg.train)
    rules = rules_from_config(cfg.mesh)

    def init_boxed(rng):
        k_params, k_state = jax.random.split(rng)
        params = init_params(model, k_params, cfg.data.frames, grid)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, ema_params=params, opt_state=tx.init(params), rng=k_state
        )

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract_boxed = jax.eval_shape(init_boxed, jax.random.key(0))
        specs = nn.get_partition_spec(abstract_boxed)
        state_shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    abstract_state = nn.meta.unbox(abstract_boxed)
    batch_sharding = make_batch_sharding(mesh)
    replicated = NamedSharding(mesh, P())

    train_step = make_train_step(model, cfg, mask_id)

    def init_fn(rng):
        with nn.logical_axis_rules(rules):  # the rules must be active when the constraints are traced
            return nn.meta.unbox(init_boxed(rng))

    def step_fn(state, batch):
        with nn.logical_axis_rules(rules):
            return train_step(state, batch)

    init = jax.jit(init_fn, out_shardings=state_shardings)
    step = jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
    )
    return Trainer(
        model=model,
        mesh=mesh,
        rules=rules,
        state_shardings=state_shardings,
        abstract_state=abstract_state,
        batch_sharding=batch_sharding,
        init=init,
        step=step,
        mask_id=mask_id,
        vocab_size=vocab_size,
        tokens_per_frame=grid[0] * grid[1],
    )
