"""Unmask schedules of the MGM sampler and scheduling matrices of the FM sampler (docs/method.md §6.2, §6.3)."""

import jax.numpy as jnp
import numpy as np

MGM_MODES = ("arccos", "cosine", "linear", "square", "root")
MATRICES = ("full_sequence", "pyramid")


def _profile(r, mode, xp):
    if mode == "arccos":
        return xp.arccos(r) / (np.pi / 2)
    if mode == "root":
        return 1 - xp.sqrt(r)
    if mode == "linear":
        return 1 - r
    if mode == "square":
        return 1 - r**2
    if mode == "cosine":
        return xp.cos(np.pi * r / 2)
    raise ValueError(
        f"unmask schedule {mode!r} is unknown; expected one of {list(MGM_MODES)} (config.sampling.mgm_mode)"
    )


def unmask_counts_traced(num_steps, num_tokens, mode="arccos"):
    """jnp version of `unmask_counts` for a traced `num_tokens` (int32 scalar) -> int32 (S,).

    Counts are made cumulative-safe: if rounding or the zero->1 rule would overshoot a small
    `num_tokens`, later steps get fewer tokens, so the sum is always exactly `num_tokens`.
    """
    r = jnp.linspace(1.0, 0.0, num_steps, dtype=jnp.float32)
    v = _profile(r, mode, jnp)
    n = jnp.round(v / jnp.sum(v) * num_tokens.astype(jnp.float32)).astype(jnp.int32)
    n = jnp.where(n == 0, 1, n)
    n = n.at[-1].add(num_tokens - jnp.sum(n))
    done = jnp.minimum(jnp.cumsum(jnp.maximum(n, 0)), num_tokens)
    done = done.at[-1].set(num_tokens)
    return jnp.diff(done, prepend=0)


def unmask_counts(num_steps, num_tokens, mode="arccos"):
    """Tokens committed at each of S steps (docs/method.md §6.2): r = linspace(1, 0, S), v = profile(r),
    n_k = round(v_k / sum(v) * N), zeros become 1, the last step absorbs the remainder.

    Returns int64 numpy (S,) summing to `num_tokens`. Pinned: S = 20 over 16384 tokens starts
    1, 271, 385, ...
    """
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps}: need at least one step (config.sampling.steps)")
    if num_tokens < 0:
        raise ValueError(f"num_tokens={num_tokens} must be >= 0")
    _profile(np.float32(1.0), mode, np)  # validates the name
    return np.asarray(unmask_counts_traced(num_steps, jnp.int32(num_tokens), mode)).astype(np.int64)


def scheduling_matrix(kind, num_steps, horizon):
    """Integer levels M[row, frame] (S = fully masked ... 0 = clean) of the FM sampler (docs/method.md §6.3).

    full_sequence: M[m, f] = S - m, rows m = 0..S (every frame shares one level; S NFE).
    pyramid: M[m, f] = clip(S + f - m, 0, S - 1), rows m = 0..S+F-1 (frame f waits f rows; S+F-1 NFE).
    The sampler uses every row but the last.
    """
    s, f = int(num_steps), int(horizon)
    if s < 1 or f < 1:
        raise ValueError(f"scheduling_matrix needs num_steps >= 1 and horizon >= 1, got {s}, {f}")
    if kind == "full_sequence":
        return np.repeat((s - np.arange(s + 1))[:, None], f, axis=1)
    if kind == "pyramid":
        m = np.arange(s + f)[:, None]
        return np.clip(s + np.arange(f)[None, :] - m, 0, s - 1)
    raise ValueError(
        f"scheduling matrix {kind!r} is unknown; expected one of {list(MATRICES)} (config.sampling.scheduling_matrix)"
    )


def matrix_levels(matrix, num_steps):
    """Levels t = (S - M) / (S + 1e-4) in [0, 1) of a scheduling matrix (float32)."""
    return ((num_steps - np.asarray(matrix)) / (num_steps + 1e-4)).astype(np.float32)
