"""The one train-state dataclass, versioned in checkpoint metadata."""
from typing import Any

import flax
import jax

STATE_VERSION = 1  # bump when the fields below change; checked on restore


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
