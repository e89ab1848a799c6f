"""Frame-level corruption (docs/method.md §3): per-frame times and a per-token Bernoulli mask.

Each frame f of clip b has its own t_{b,f}; every token of that frame is replaced by MASK with
probability 1 - kappa(t_{b,f}). This is the release's dense V-way mixture drawn in closed form
(identical in distribution), so memory is O(B F H W) rather than O(B F H W V).
"""

import jax
import jax.numpy as jnp

from maskflow_jax.flow.schedules import kappa

PAPER_NOISE_LEVELS = ("random_all", "constant", "dynamic")  # the paper's and the release's
PREFIX_NOISE_LEVELS = ("prefix_shared", "prefix_iid", "prefix_masked")  # beyond the paper: clean prefixes
NOISE_LEVELS = PAPER_NOISE_LEVELS + PREFIX_NOISE_LEVELS
CLEAN = 1.0  # the time of a clean frame (kappa(1) = 1: nothing masked)


def sample_times(rng, batch, frames, mode="random_all", eps=1e-3, dynamic_prob=0.8, prefix_prob=0.5):
    """Per-frame times t (B, F) float32 in [eps, 1] (1 only for the clean prefix frames below).

    random_all:    i.i.d. over clips and frames (the paper's frame-level masking).
    constant:      one t per clip shared by its frames (the baseline), clamped to [eps, 1 - eps].
    dynamic:       one coin per batch; with probability `dynamic_prob` random_all, otherwise one
                   t = 0.5 + 0.5 U per clip shared over frames.
    prefix_shared: beyond the paper (Diffusion-Forcing style). Each clip independently, with probability
                   `prefix_prob`: a clean prefix of L ~ U{1, ..., F - 1} frames (t = 1, nothing masked),
                   and the frames after it share one t ~ U[eps, 1). Other clips: random_all. This is the
                   setup every sampling chunk starts from (clean context, the rest masked at one level),
                   which random_all draws for ~1 % of frames.
    prefix_iid:    as prefix_shared, but the frames after the prefix draw i.i.d. t ~ U[eps, 1).
    prefix_masked: as prefix_shared, but every frame after the prefix is at t = eps (all its tokens
                   masked): exactly the input of the first MGM / FM step of a chunk, where the model
                   must predict from the clean past alone (with partly visible later frames it can
                   copy from them instead, and random_all rewards that).
    """
    if mode not in NOISE_LEVELS:
        raise ValueError(
            f"noise level {mode!r} is unknown; expected one of {list(NOISE_LEVELS)} (config.flow.noise_level)"
        )
    k_all, k_clip, k_coin = jax.random.split(rng, 3)  # as before the prefix modes: same draws
    per_frame = (1 - eps) * jax.random.uniform(k_all, (batch, frames)) + eps
    if mode == "random_all":
        return per_frame
    u = jax.random.uniform(k_clip, (batch, 1))
    if mode == "constant":
        return jnp.broadcast_to(jnp.clip((1 - eps) * u + eps, eps, 1 - eps), (batch, frames))
    if mode == "dynamic":
        shared = jnp.broadcast_to(0.5 + 0.5 * u, (batch, frames))
        return jnp.where(jax.random.uniform(k_coin) < dynamic_prob, per_frame, shared)
    if frames < 2:
        raise ValueError(
            f"flow.noise_level={mode!r} needs clips of >= 2 frames (a prefix and a frame after it); got {frames}"
        )
    if not 0.0 <= prefix_prob <= 1.0:
        raise ValueError(f"flow.prefix_prob={prefix_prob} must be in [0, 1]")
    has_prefix = jax.random.uniform(k_coin, (batch, 1)) < prefix_prob
    length = jax.random.randint(jax.random.fold_in(k_coin, 1), (batch, 1), 1, frames)  # L in [1, F - 1]
    in_prefix = jnp.arange(frames)[None, :] < length
    if mode == "prefix_iid":
        rest = per_frame
    elif mode == "prefix_masked":
        rest = jnp.full((batch, frames), eps, jnp.float32)
    else:
        rest = jnp.broadcast_to((1 - eps) * u + eps, (batch, frames))
    return jnp.where(has_prefix, jnp.where(in_prefix, CLEAN, rest), per_frame)


def corrupt(rng, tokens, t, mask_id, kappa_name="sigmoid"):
    """Masks tokens (B, F, H, W) with per-frame probability 1 - kappa(t (B, F)).

    Returns (x_t (B, F, H, W) int32, mask (B, F, H, W) bool) where mask marks the MASK positions.
    """
    if t.shape != tokens.shape[:2]:
        raise ValueError(f"t has shape {t.shape} but tokens {tokens.shape}: t must be (B, F) = {tokens.shape[:2]}")
    keep = kappa(t, kappa_name)[:, :, None, None]
    mask = jax.random.uniform(rng, tokens.shape) >= keep
    return jnp.where(mask, jnp.asarray(mask_id, tokens.dtype), tokens), mask
