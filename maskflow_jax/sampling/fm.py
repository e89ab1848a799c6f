"""FM-style sampler: Euler steps of the discrete flow with per-frame rates (docs/method.md §6.3, §12).

At a row of the scheduling matrix every frame f has a level t_f (context frames: 1). With
t~ = clip(t, 1/S, 1 - 1/S), p1 = softmax(logits / temperature) and the rate
c_f = kappa'(t~_f) / (1 - kappa(t~_f) + 1e-6), a masked token is unmasked with probability
min(1, h c_f (1 - p1[MASK])) to a token drawn from p1 without MASK: the release's
q = onehot(x) + h c (p1 - onehot(x)) drawn in closed form (no dense (..., V) q). Unmasked tokens
and context frames never change.

Differences from the release: the adaptive step h_f = min(1/S, (1 - kappa)/kappa') works per frame
(broken for video in the release, docs/method.md §11); MASK is excluded from the candidates unless
`allow_mask` (parity), and any token still masked after the last row is filled from p1, so the
output never contains MASK.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.flow.schedules import kappa, kappa_derivative
from maskflow_jax.sampling import draw
from maskflow_jax.sampling.candidates import filter_logits
from maskflow_jax.sampling.mgm import guided_logits
from maskflow_jax.sampling.schedules import matrix_levels, scheduling_matrix


def fm_sample(
    rng,
    logits_fn: Callable,
    tokens,
    context,
    *,
    steps,
    mask_id,
    kappa_name="sigmoid",
    temperature=1.0,
    top_k=0,
    top_p=0.0,
    matrix="full_sequence",
    adaptive=False,
    allow_mask=False,
    guidance=0.0,
    guidance_steps=0,
    gathered=True,
):
    """Fills every MASK of `tokens` (B, F, H, W); context (B, F) bool frames are given and frozen.

    gathered: draw candidates only at the positions that jump at a step (`sampling/draw.py`); the same
    tokens for a key as drawing at every position (`gathered=False`), faster.

    Returns (tokens (B, F, H, W) int32, nfe () int32): S NFE for full_sequence, S + F - 1 for pyramid.
    """
    b, f = tokens.shape[:2]
    levels = jnp.asarray(matrix_levels(scheduling_matrix(matrix, steps, f), steps)[:-1])  # (R, F)
    rows = levels.shape[0]
    lo, hi = 1.0 / steps, 1.0 - 1.0 / steps

    def body(i, carry):
        tok, rng, nfe = carry
        k_u, k_c, k_g, k_last, rng = jax.random.split(rng, 5)
        t = jnp.where(context, 1.0, jnp.broadcast_to(levels[i], (b, f)))
        t_clip = jnp.clip(t, lo, hi)
        if guidance:
            logits, cost = jax.lax.cond(
                i < guidance_steps,
                lambda: guided_logits(
                    logits_fn, k_g, tok, t_clip, context, mask_id, guidance, kappa_name, partial_t=0.9
                ),
                lambda: (logits_fn(tok, t_clip), 1),
            )
        else:
            logits, cost = logits_fn(tok, t_clip), 1
        filt = functools.partial(filter_logits, temperature=temperature, top_k=top_k, top_p=top_p)
        if allow_mask:  # the jump needs p1[MASK] at every position: filter all rows first
            logits = filt(logits, mask_id=None)
            p_mask, prepare = jax.nn.softmax(logits, axis=-1)[..., mask_id], lambda r: r
        else:  # filtering is row-wise: only the rows that are drawn need it
            p_mask, prepare = 0.0, functools.partial(filt, mask_id=mask_id)
        rate = kappa_derivative(t_clip, kappa_name) / (1.0 - kappa(t_clip, kappa_name) + 1e-6)  # (B, F)
        h = (
            jnp.minimum(1.0 / steps, (1.0 - kappa(t_clip, kappa_name)) / kappa_derivative(t_clip, kappa_name))
            if adaptive
            else 1.0 / steps
        )
        jump = jnp.clip(h * rate, 0.0, 1.0)[:, :, None, None] * (1.0 - p_mask)
        masked = tok == mask_id
        last = i == rows - 1  # fill anything left at the last row (never output MASK)
        move = masked & ((jax.random.uniform(k_u, tok.shape) < jump) | last)

        def candidates(rows_logits, flat_rows):
            no_mask = prepare(rows_logits).at[..., mask_id].set(-jnp.inf)
            return draw.draw_rows(k_c, no_mask, flat_rows)

        caps = draw.default_capacities(move.size, logits.shape[-1]) if gathered and draw.can_gather(k_c) else None
        cand = draw.map_selected_rows(candidates, logits, move, caps)
        return jnp.where(move, cand, tok), rng, nfe + cost

    out, _, nfe = jax.lax.fori_loop(0, rows, body, (tokens.astype(jnp.int32), rng, jnp.zeros((), jnp.int32)))
    return out, nfe


def fm_nfe(steps, frames, matrix="full_sequence"):
    """Network evaluations of one FM window (without guidance)."""
    return int(np.asarray(scheduling_matrix(matrix, steps, frames)).shape[0] - 1)
