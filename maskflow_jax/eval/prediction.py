"""Teacher-forced next-frame token prediction: does the denoiser predict motion, or only copy?

FVD on a handful of videos is noisy and says little about *why* samples look the way they do. This
diagnostic asks the denoiser for frame m given m clean real frames (frames m.. fully masked, as the
first frame of a chunk-wise rollout sees them) and scores its argmax against the real frame m:

* `accuracy`: over all H×W tokens of frame m;
* `copy_accuracy`: the same for repeating frame m−1 (a model that only copies scores exactly this);
* `changed_accuracy`: over the tokens of frame m that differ from frame m−1 only — the motion. A
  copying model scores 0 here; `changed_fraction` is the share of such tokens.

A model that has learnt camera motion beats `copy_accuracy` and has a clearly positive
`changed_accuracy`; one at `accuracy ≈ copy_accuracy` and `changed_accuracy ≈ 0` can only freeze or
blur when sampled.
"""
import numpy as np

import jax
import jax.numpy as jnp


def next_frame_predictions(logits_fn, tokens, context, mask_id, time_input="clean", actions=None):
    """Argmax predictions of frame `context` (m) given frames [0, m) clean and the rest masked.

    logits_fn(tokens (B, F, H, W), t (B, F)[, actions (B, F)]) -> logits (B, F, H, W, V); tokens int
    (B, F, H, W) with 1 <= m < F; actions int (B, F) for an action-conditioned model (passed on).
    time_input: "clean" feeds t = 1 to every frame (the MGM sampler's default, SPEC §11.4), "masked"
    t = 1 on the context and 0 on the masked frames (the training-time convention).
    Returns int32 (B, H, W).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (B, F, H, W); got shape {tokens.shape}")
    b, f = tokens.shape[:2]
    if not 1 <= context < f:
        raise ValueError(f"context={context} must be in [1, F) = [1, {f}) (the frame to predict must exist "
                         "and follow at least one clean frame)")
    if time_input not in ("clean", "masked"):
        raise ValueError(f"time_input={time_input!r}: expected 'clean' or 'masked'")
    is_context = jnp.arange(f) < context
    x = jnp.where(is_context[None, :, None, None], tokens, jnp.asarray(mask_id, tokens.dtype)).astype(jnp.int32)
    t = jnp.ones((b, f), jnp.float32) if time_input == "clean" else \
        jnp.broadcast_to(is_context.astype(jnp.float32), (b, f))
    logits = logits_fn(x, t) if actions is None else logits_fn(x, t, jnp.asarray(actions, jnp.int32))
    logits = logits[:, context, ..., :mask_id]  # never predict MASK
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def next_frame_accuracy(logits_fn, tokens, context, mask_id, time_input="clean", batch_size=8, actions=None):
    """Scores next_frame_predictions over clips tokens (N, F, H, W) (with their actions (N, F) for an
    action-conditioned model) in batches; returns a dict of floats
    {accuracy, copy_accuracy, changed_accuracy, changed_fraction, num_clips, context} (see module doc)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (N, F, H, W); got shape {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= mask_id:
        raise ValueError(f"token ids must be in [0, {mask_id}) (mask_id = vocabulary size without MASK); got "
                         f"[{tokens.min()}, {tokens.max()}]")
    if actions is not None and np.shape(actions) != tokens.shape[:2]:
        raise ValueError(f"actions must be (N, F) = {tokens.shape[:2]}, one per clip frame; got shape {np.shape(actions)}")
    hit = copy_hit = changed = changed_hit = total = 0
    for i in range(0, len(tokens), batch_size):
        clip = tokens[i:i + batch_size]
        act = None if actions is None else actions[i:i + batch_size]
        pred = np.asarray(jax.device_get(next_frame_predictions(logits_fn, clip, context, mask_id, time_input, act)))
        truth, previous = clip[:, context], clip[:, context - 1]
        moved = truth != previous
        hit += int(np.sum(pred == truth))
        copy_hit += int(np.sum(previous == truth))
        changed += int(np.sum(moved))
        changed_hit += int(np.sum((pred == truth) & moved))
        total += truth.size
    return {"accuracy": hit / total, "copy_accuracy": copy_hit / total,
            "changed_accuracy": changed_hit / changed if changed else float("nan"),
            "changed_fraction": changed / total, "num_clips": int(len(tokens)), "context": int(context)}
