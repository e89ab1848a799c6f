"""MGM-style (MaskGIT confidence) sampler over a window of token frames (docs/method.md §6.2, §12).

The intended algorithm, not the release's (docs/method.md §11): the network input is updated
after every step; context and already committed tokens are frozen; a candidate is *sampled* for
every masked position from softmax(logits / temperature) (optionally top-k / top-p filtered);
the top-n most confident masked positions are committed, with n from the unmask schedule over
the masked tokens of each sample, so after S steps every masked position was filled exactly
once and S steps cost S NFE. Differences from the release, each behind a parity switch:
  * `allow_mask=False`: MASK is never a candidate (the release may emit it, docs/method.md §11);
  * `count_context=False`: the schedule counts only masked tokens (the release counts the whole
    window, so a 16-frame window with 2 context frames finishes in 19 steps, docs/method.md §11).
Time input (`time_input`): "clean" feeds t = 1 to every frame as the release does (docs/method.md §11);
"unmasked_fraction" feeds t_f = kappa^-1(fraction of frame f already unmasked).
Counts are per sample (the release sums remaining tokens over the batch).
"""

from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp

from maskflow_jax.flow.schedules import kappa, kappa_inverse
from maskflow_jax.sampling import draw
from maskflow_jax.sampling.candidates import filter_logits
from maskflow_jax.sampling.schedules import unmask_counts_traced


@flax.struct.dataclass
class MGMState:
    tokens: jax.Array  # (B, F, H, W) int32, MASK where still unknown
    step: jax.Array  # () int32
    nfe: jax.Array  # () int32, network evaluations so far
    rng: jax.Array  # typed key


def guided_logits(logits_fn, rng, tokens, t, context, mask_id, weight, kappa_name="sigmoid", partial_t=0.3):
    """Partial context guidance (docs/method.md §6.4): cond + w (partial - uncond), where "partial" re-masks
    each context token with probability 1 - kappa(partial_t) and "uncond" masks all of them.
    context: (B, F) bool context frames. Returns (logits, 3 network evaluations)."""
    ctx = context[:, :, None, None]
    drop = jax.random.uniform(rng, tokens.shape) >= kappa(jnp.float32(partial_t), kappa_name)
    partial = jnp.where(ctx & drop, mask_id, tokens)
    uncond = jnp.where(ctx, mask_id, tokens)
    cond = logits_fn(tokens, t)
    return cond + weight * (logits_fn(partial, t) - logits_fn(uncond, t)), 3


def mgm_sample(
    rng,
    logits_fn: Callable,
    tokens,
    context,
    *,
    steps,
    mask_id,
    temperature=1.0,
    top_k=0,
    top_p=0.0,
    mode="arccos",
    randomize="none",
    randomize_temp=4.5,
    time_input="clean",
    kappa_name="sigmoid",
    count_context=False,
    allow_mask=False,
    guidance=0.0,
    guidance_steps=0,
    gathered=True,
):
    """Fills every MASK position of `tokens` (B, F, H, W) int32; context: (B, F) bool frames that
    are given (never changed). logits_fn(tokens, t (B, F)) -> (B, F, H, W, V).
    gathered: draw candidates and their log-probabilities only at still-masked positions (`sampling/draw.py`);
    the same tokens for a key as computing them everywhere (`gathered=False`), faster.

    Returns (tokens (B, F, H, W) int32 with no MASK, nfe () int32 executed network evaluations).
    """
    if randomize not in ("none", "linear"):
        raise ValueError(f"randomize={randomize!r}: expected none or linear (config.sampling.randomize)")
    if time_input not in ("clean", "unmasked_fraction"):
        raise ValueError(f"time_input={time_input!r}: expected clean or unmasked_fraction (config.sampling.time_input)")
    b = tokens.shape[0]
    masked0 = tokens == mask_id
    n_masked = jnp.sum(masked0.reshape(b, -1), axis=1)  # (B,)
    if count_context:
        total = jnp.full((b,), masked0[0].size, jnp.int32)
        budget = jax.vmap(lambda n: unmask_counts_traced(steps, n, mode))(total)
    else:
        budget = jax.vmap(lambda n: unmask_counts_traced(steps, n, mode))(n_masked)  # (B, S)

    def times(tok):
        if time_input == "clean":
            return jnp.ones(tok.shape[:2], jnp.float32)
        frac = jnp.mean((tok != mask_id).astype(jnp.float32), axis=(2, 3))
        return jnp.where(context, 1.0, kappa_inverse(frac, kappa_name))

    def body(state):
        k_cand, k_gumbel, k_guid, rng = jax.random.split(state.rng, 4)
        t = times(state.tokens)
        if guidance:
            logits, cost = jax.lax.cond(
                state.step < guidance_steps,
                lambda: guided_logits(logits_fn, k_guid, state.tokens, t, context, mask_id, guidance, kappa_name),
                lambda: (logits_fn(state.tokens, t), 1),
            )
        else:
            logits, cost = logits_fn(state.tokens, t), 1
        still = state.tokens == mask_id

        def candidates(rows_logits, flat_rows):  # filtering and log-softmax are row-wise
            rows_logits = filter_logits(
                rows_logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                mask_id=None if allow_mask else mask_id,
            )
            cand = draw.draw_rows(k_cand, rows_logits, flat_rows)
            logp = jax.nn.log_softmax(rows_logits, axis=-1)
            return cand, jnp.take_along_axis(logp, cand[..., None], axis=-1)[..., 0]

        caps = draw.default_capacities(still.size, logits.shape[-1]) if gathered and draw.can_gather(k_cand) else None
        cand, cand_logp = draw.map_selected_rows(candidates, logits, still, caps)
        if randomize == "linear":
            anneal = 1.0 - state.step.astype(jnp.float32) / max(steps - 1, 1)
            conf = cand_logp + randomize_temp * anneal * jax.random.gumbel(k_gumbel, cand_logp.shape)
        else:
            conf = jnp.exp(cand_logp)
        conf = jnp.where(still, conf, -jnp.inf).reshape(b, -1)
        n = jnp.minimum(budget[:, state.step], jnp.sum(still.reshape(b, -1), axis=1))  # (B,)
        # Rank of each position by confidence (ties broken by index): commit exactly the top n.
        order = jnp.argsort(-conf, axis=1, stable=True)
        rank = jnp.argsort(order, axis=1)
        commit = (rank < n[:, None]).reshape(still.shape) & still
        new_tokens = jnp.where(commit, cand, state.tokens)
        return MGMState(tokens=new_tokens, step=state.step + 1, nfe=state.nfe + cost, rng=rng)

    def cond(state):
        return (state.step < steps) & jnp.any(state.tokens == mask_id)

    init = MGMState(
        tokens=tokens.astype(jnp.int32), step=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32), rng=rng
    )
    final = jax.lax.while_loop(cond, body, init)
    return final.tokens, final.nfe
