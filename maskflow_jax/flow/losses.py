"""MaskFlow loss (docs/method.md §4): masked cross-entropy with per-frame fused clipped-SNR weights."""
import jax
import jax.numpy as jnp

from maskflow_jax.flow.schedules import kappa as kappa_fn


def frame_weights(t, kappa="sigmoid", snr_clip=6.0, decay=0.8, fused=True):
    """Per-frame loss weights w (B, F) from times t (B, F), docs/method.md §4.

    snr_f = kappa_f^2 / (1 - kappa_f)^2, n_f = min(snr_f, C) / C. Unfused: w_f = min(snr_f, C).
    Fused (Diffusion-Forcing style): c_0 = n_0, c_f = d c_{f-1} + (1 - d) n_f; c'_f = c_{f-1}
    (c'_0 = 0); w_f = C [1 - (1 - d c'_f)(1 - n_f)].
    """
    k = kappa_fn(t, kappa)
    snr = k**2 / jnp.maximum((1.0 - k) ** 2, 1e-12)
    clipped = jnp.minimum(snr, snr_clip)
    if not fused:
        return clipped
    n = clipped / snr_clip

    def step(c_prev, n_f):
        c = decay * c_prev + (1 - decay) * n_f
        return c, c_prev  # emit the previous value: c'_f = c_{f-1}

    # Scan over frames; c_{-1} is chosen so that c_0 = n_0 and c'_0 = 0.
    n_frames = jnp.moveaxis(n, 1, 0)  # (F, B)
    c0 = n_frames[0]
    _, c_shift = jax.lax.scan(step, c0, n_frames[1:])
    c_prev = jnp.concatenate([jnp.zeros_like(c0)[None], c_shift], axis=0)  # (F, B): 0, c_0, ..., c_{F-2}
    w = snr_clip * (1.0 - (1.0 - decay * c_prev) * (1.0 - n_frames))
    return jnp.moveaxis(w, 0, 1)


def masked_cross_entropy(logits, targets, mask, weights, mask_ce=True):
    """Weighted CE over all V classes (fp32), docs/method.md §4 steps 3-5.

    logits (B, F, H, W, V); targets (B, F, H, W) int; mask (B, F, H, W) bool (True = was MASK);
    weights (B, F). With mask_ce: sum over masked positions / (global masked count + 1e-6);
    otherwise the mean over all positions. Returns (loss, {"accuracy", "masked_fraction"}).
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    target_logp = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    pred = jnp.argmax(logits, axis=-1)
    return masked_cross_entropy_from_logp(target_logp, pred, targets, mask, weights, mask_ce)


def masked_cross_entropy_from_logp(target_logp, pred, targets, mask, weights, mask_ce=True):
    """Same as `masked_cross_entropy` from per-position log p(target) (B, F, H, W) and argmax ids,
    for models that evaluate their output head only at some positions (unevaluated positions must
    be outside `mask` when mask_ce is on)."""
    ce = -target_logp * weights[:, :, None, None].astype(jnp.float32)
    maskf = mask.astype(jnp.float32)
    count = jnp.sum(maskf)
    if mask_ce:
        loss = jnp.sum(ce * maskf) / (count + 1e-6)
    else:
        loss = jnp.mean(ce)
    correct = (pred == targets).astype(jnp.float32)
    accuracy = jnp.sum(correct * maskf) / jnp.maximum(count, 1.0)
    return loss, {"accuracy": accuracy, "masked_fraction": jnp.mean(maskf)}
