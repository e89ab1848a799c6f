"""MaskFlow loss (docs/method.md §4): masked cross-entropy with per-frame fused clipped-SNR weights.

Two forms of the same loss: `masked_cross_entropy` on the full (B, F, H, W, V) logits, and
`masked_head_cross_entropy` (config.model.masked_head), which evaluates the output head only at
the masked positions, a static chunk at a time, so the full logits are never materialised.
"""

import functools
import math

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


def masked_head_chunk(fraction, positions):
    """The static chunk size K of `masked_head_cross_entropy`: ceil(fraction x positions), at least 1,
    where positions = F H W / p^2 per clip and sub-patch position (config.model.masked_head_chunk)."""
    return max(1, min(positions, math.ceil(fraction * positions)))


def to_patch_layout(x, patch):
    """Per-token values (B, F, H, W, ...) -> (B, p*p, F*N, ...): axis 1 is a token's place s = py * p + px
    inside its p x p patch, axis 2 the patch index f * N + gy * (W / p) + gx; the layout of the output
    head's channels (models/latte.py: channel s * V_pad + v of patch (f, gy, gx))."""
    b, f, h, w = x.shape[:4]
    p = patch
    x = x.reshape(b, f, h // p, p, w // p, p, *x.shape[4:])  # (B, F, gy, py, gx, px, ...)
    x = jnp.moveaxis(x, (3, 5), (1, 2))  # (B, py, px, F, gy, gx, ...)
    return x.reshape(b, p * p, f * (h // p) * (w // p), *x.shape[6:])


def masked_head_cross_entropy(
    feats, kernel, bias, targets, mask, weights, *, patch, vocab_size, chunk, dtype=jnp.float32
):
    """`masked_cross_entropy` (mask_ce=True) of the output head's logits, with the head evaluated only at
    masked positions: the same loss, gradients and metrics, and the (B, F, H, W, V) logits never exist.

    feats (B, F, N, D): the denoiser's features before its head (Latte, features_only=True); kernel
    (D, p*p*V_pad), bias (p*p*V_pad,): the `head` parameters; targets (B, F, H, W) int; mask
    (B, F, H, W) bool; weights (B, F); chunk K (`masked_head_chunk`).

    Rule: per clip and sub-patch position s the masked positions are listed first (argsort) and
    taken K at a time; chunk c holds entries [cK, (c+1)K), padded past the masked count with
    zero-weight slots. A `lax.while_loop` runs ceil(max masked count / K) chunks, so every masked
    position is counted exactly once whatever the mask (no cap to exceed), and only one chunk's
    (B, p*p, K, V) logits are live. The loop computes the gradients with the loss (a custom VJP:
    softmax minus one-hot times the weight, through the head's matmuls), so nothing is recomputed
    and the backward pass only scales them by the incoming cotangent.
    """
    b, f, n, d = feats.shape
    s = patch * patch
    v_pad = kernel.shape[-1] // s
    maskf = mask.astype(jnp.float32)
    count = jnp.sum(maskf)
    mask_p = to_patch_layout(mask, patch)  # (B, S, P)
    w_p = to_patch_layout(jnp.broadcast_to(weights[:, :, None, None], mask.shape).astype(jnp.float32), patch)
    coef = jnp.where(mask_p, w_p, 0.0) / (count + 1e-6)  # the loss is sum(coef * -log p(target))
    counts = jnp.sum(mask_p, axis=-1).astype(jnp.int32)  # (B, S)
    order = jnp.argsort(~mask_p, axis=-1, stable=True).astype(jnp.int32)  # masked positions first
    positions = order.shape[-1]
    order = jnp.pad(order, ((0, 0), (0, 0), (0, -positions % chunk)))  # whole chunks (dynamic_slice clamps)
    loss, correct = _fused_head_ce(
        feats.reshape(b, f * n, d),
        kernel.reshape(d, s, v_pad),
        bias.reshape(s, v_pad),
        order,
        counts,
        to_patch_layout(targets, patch).astype(jnp.int32),
        coef,
        int(chunk),
        int(vocab_size),
        jnp.dtype(dtype),
    )
    return loss, {"accuracy": correct / jnp.maximum(count, 1.0), "masked_fraction": jnp.mean(maskf)}


def _head_ce_loop(feats, kernel, bias, order, counts, targets, coef, chunk, vocab_size, dtype, with_grads):
    """(loss sum, correct count[, d_feats (B, P, D), d_kernel (D, S, V_pad), d_bias (S, V_pad)]) over the
    chunks of `masked_head_cross_entropy` (shapes there; feats (B, P, D), targets and coef (B, S, P))."""
    b, _, d = feats.shape
    s, v_pad = bias.shape
    k = chunk
    rows = jnp.arange(b)[:, None]
    valid_vocab = jnp.arange(v_pad) < vocab_size  # padded vocabulary rows are never a class
    n_chunks = (jnp.max(counts) + k - 1) // k
    w_mat = kernel.astype(dtype)

    def body(carry):
        c, acc = carry
        start = c * k
        idx = jax.lax.dynamic_slice_in_dim(order, start, k, axis=2)  # (B, S, K) positions
        valid = (start + jnp.arange(k)) < counts[..., None]
        x = jnp.take_along_axis(feats, idx.reshape(b, s * k)[..., None], axis=1).reshape(b, s, k, d).astype(dtype)
        tgt = jnp.take_along_axis(targets, idx, axis=2)
        cf = jnp.where(valid, jnp.take_along_axis(coef, idx, axis=2), 0.0)
        logits = jnp.einsum("bskd,dsv->bskv", x, w_mat, preferred_element_type=jnp.float32)
        logits = jnp.where(valid_vocab, logits + bias[None, :, None, :].astype(jnp.float32), -jnp.inf)
        lse = jax.nn.logsumexp(logits, axis=-1)
        target_logit = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
        loss = acc[0] + jnp.sum(cf * (lse - target_logit))
        correct = acc[1] + jnp.sum(jnp.where(valid & (jnp.argmax(logits, axis=-1) == tgt), 1.0, 0.0))
        if not with_grads:
            return c + 1, (loss, correct)
        d_logits = cf[..., None] * (jnp.exp(logits - lse[..., None]) - jax.nn.one_hot(tgt, v_pad, dtype=jnp.float32))
        d_x = jnp.einsum("bskv,dsv->bskd", d_logits.astype(dtype), w_mat, preferred_element_type=jnp.float32)
        d_feats = acc[2].at[rows, idx.reshape(b, s * k)].add(d_x.reshape(b, s * k, d))
        d_kernel = acc[3] + jnp.einsum("bskd,bskv->dsv", x, d_logits.astype(dtype), preferred_element_type=jnp.float32)
        d_bias = acc[4] + jnp.sum(d_logits, axis=(0, 2))
        return c + 1, (loss, correct, d_feats, d_kernel, d_bias)

    zero = jnp.zeros((), jnp.float32)
    acc = (zero, zero)
    if with_grads:
        acc += (
            jnp.zeros(feats.shape, jnp.float32),
            jnp.zeros(kernel.shape, jnp.float32),
            jnp.zeros(bias.shape, jnp.float32),
        )
    _, acc = jax.lax.while_loop(lambda carry: carry[0] < n_chunks, body, (jnp.zeros((), n_chunks.dtype), acc))
    return acc


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _fused_head_ce(feats, kernel, bias, order, counts, targets, coef, chunk, vocab_size, dtype):
    return _head_ce_loop(feats, kernel, bias, order, counts, targets, coef, chunk, vocab_size, dtype, False)


def _fused_head_ce_fwd(feats, kernel, bias, order, counts, targets, coef, chunk, vocab_size, dtype):
    loss, correct, d_feats, d_kernel, d_bias = _head_ce_loop(
        feats, kernel, bias, order, counts, targets, coef, chunk, vocab_size, dtype, True
    )
    return (loss, correct), (d_feats.astype(feats.dtype), d_kernel.astype(kernel.dtype), d_bias.astype(bias.dtype))


def _fused_head_ce_bwd(chunk, vocab_size, dtype, res, g):
    del chunk, vocab_size, dtype
    d_feats, d_kernel, d_bias = res
    g_loss = g[0]  # the correct count is a metric: its cotangent is ignored
    return ((g_loss * d_feats).astype(d_feats.dtype), g_loss * d_kernel, g_loss * d_bias, None, None, None, None)


_fused_head_ce.defvjp(_fused_head_ce_fwd, _fused_head_ce_bwd)
