"""The one train-state dataclass, versioned in checkpoint metadata."""

from typing import Any

import flax
import jax
import jax.numpy as jnp

STATE_VERSION = 2  # bump when the fields below or the checkpoint layout change; checked on restore


@flax.struct.dataclass
class TrainState:
    """step: int32 (); params / ema_params: parameter trees; opt_state: optax state; rng: typed key."""

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array


def ema_update(ema, params, decay):
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf (fp32 accumulation)."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype), ema, params)


def ema_decay_at(step, decay, warmup):
    """The EMA decay used at optimizer step `step` (int32 ()): `decay`, or with `warmup` the usual
    min(decay, (1 + step) / (10 + step)), so a short run's average is not dominated by the
    initialisation (with a fixed 0.995, 6% of the initial weights remain after 560 steps)."""
    if not warmup:
        return jnp.float32(decay)
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))
