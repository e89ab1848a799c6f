"""Candidate-token distributions shared by the samplers: temperature, top-k, top-p, MASK exclusion."""

import jax
import jax.numpy as jnp


def filter_logits(logits, *, temperature=1.0, top_k=0, top_p=0.0, mask_id=None):
    """logits (..., V) -> filtered logits (..., V) float32 (excluded classes at -inf).

    mask_id: if given, the MASK class is excluded (it is never a valid output token, docs/method.md §11).
    top_k (static int): keep the k largest. top_p: keep the smallest set whose mass reaches top_p.
    """
    logits = logits.astype(jnp.float32) / temperature
    if mask_id is not None:
        logits = logits.at[..., mask_id].set(-jnp.inf)
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each class
        keep_sorted = before < top_p
        keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits
