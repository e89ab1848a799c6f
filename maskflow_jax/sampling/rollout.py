"""Chunk-wise long-video generation (docs/method.md §7, §12) with one compiled chunk step.

Symbols: window T_w (the training clip length), context m, stride s, target length L. Starting
from m context frames, every chunk fills a T_w-frame window [last m' generated frames | MASK]
and keeps s new frames, until L frames exist. The last chunk keeps exactly the frames still
needed (the release always keeps s, so it can overshoot L, docs/method.md §11) and uses as much past
context as fits (m' = min(T_w - remaining, frames so far)), as the release does.

Every chunk has the same shapes (a (B, T_w) boolean marks the context frames), so the jitted
chunk step compiles once and is reused for every chunk and every L.

Presets (docs/method.md §12; NFE at S = 20): ffs_chunk (T_w 16, m 2, s 14): 60 / 120 / 240 NFE for
L = 32 / 80 / 160; ffs_ar (m 15, s 1): 340 / 1300 / 2900; dmlab_ar (T_w 36, m 35, s 1).
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.sampling.fm import fm_sample
from maskflow_jax.sampling.mgm import mgm_sample

PRESETS = {
    "ffs_chunk": {"window": 16, "context": 2, "stride": 14, "steps": 20},
    "ffs_ar": {"window": 16, "context": 15, "stride": 1, "steps": 20},
    "dmlab_ar": {"window": 36, "context": 35, "stride": 1, "steps": 20},
}


@dataclasses.dataclass(frozen=True)
class Chunk:
    context: int  # m': past frames placed at the start of the window
    keep: int  # new frames appended to the video


def rollout_plan(length, window, context, stride):
    """The chunks that turn `context` given frames into exactly `length` frames."""
    if not 0 <= context < window:
        raise ValueError(f"context m={context} must satisfy 0 <= m < window T_w={window} (config.sampling.context)")
    if not 1 <= stride <= window - context:
        raise ValueError(
            f"stride s={stride} must satisfy 1 <= s <= T_w - m = {window - context} (config.sampling.stride)"
        )
    if length < max(context, 1):
        raise ValueError(f"length L={length} must be at least the context m={context} (config.sampling.horizon)")
    if context == 0 and length > window:
        raise ValueError(
            f"without context frames only one window can be generated (L={length} > T_w={window}); "
            "set config.sampling.context >= 1 for long videos"
        )
    plan, have = [], context
    while have < length:
        remaining = length - have
        if remaining > stride:
            plan.append(Chunk(context, stride))
            have += stride
        else:
            plan.append(Chunk(min(window - remaining, have), remaining))
            have = length
    return plan


def make_sampler(sampling_cfg, mask_id, kappa_name="sigmoid"):
    """sampler(rng, logits_fn, tokens (B, F, H, W), context (B, F) bool) -> (tokens, nfe) from config.sampling."""
    s = sampling_cfg
    common = dict(
        steps=s.steps,
        mask_id=mask_id,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        kappa_name=kappa_name,
        allow_mask=s.parity_allow_mask,
        guidance=s.guidance,
        guidance_steps=s.guidance_steps,
        gathered=s.get("gathered_draw", True),
    )
    if s.sampler == "mgm":
        return lambda rng, fn, tok, ctx: mgm_sample(
            rng,
            fn,
            tok,
            ctx,
            mode=s.mgm_mode,
            randomize=s.randomize,
            randomize_temp=s.randomize_temp,
            time_input=s.time_input,
            count_context=s.parity_count_context,
            **common,
        )
    if s.sampler == "fm":
        return lambda rng, fn, tok, ctx: fm_sample(
            rng, fn, tok, ctx, matrix=s.scheduling_matrix, adaptive=s.adaptive_step, **common
        )
    raise ValueError(f"config.sampling.sampler={s.sampler!r}: expected mgm or fm")


def make_chunk_fn(sampler, logits_fn, params=None):
    """The jitted chunk step: (rng, window (B, T_w, H, W), context (B, T_w) bool[, actions (B, T_w) int])
    -> (window, nfe).

    With `actions` (an action-conditioned model), logits_fn gets them as a last argument:
    logits_fn([params,] tokens, t, actions); without, logits_fn([params,] tokens, t).
    With `params`, logits_fn is called as logits_fn(params, tokens, t) and the parameters enter the
    compiled step as an argument. Real models must be passed this way: parameters closed over by a
    jitted function become compile-time constants, which XLA constant-folds (slow compiles, one
    executable per parameter set) and, on XLA:CPU with all-zero parameters at batch >= 4, folded the
    sampler into a single repeated token. `_cache_size()` of the returned function reports the jitted
    step's compilations.
    """

    @jax.jit
    def step(p, rng, window, context, actions):
        model = logits_fn if p is None else functools.partial(logits_fn, p)

        def fn(tokens, t):
            return model(tokens, t) if actions is None else model(tokens, t, actions)

        return sampler(rng, fn, window, context)

    def chunk(rng, window, context, actions=None):
        return step(params, rng, window, context, actions)

    chunk._cache_size = step._cache_size  # noqa: SLF001  (one compilation per shape and actions/no actions)
    return chunk


def rollout(
    rng,
    chunk_fn,
    context_tokens,
    *,
    length,
    window,
    context,
    stride,
    mask_id,
    grid=None,
    batch=None,
    callback=None,
    actions=None,
):
    """Generates exactly `length` frames (B, L, H, W) int32; returns (tokens, info).

    actions: optional int (B, L) per-frame actions of an action-conditioned model (actions[:, f] is
    the action taken after frame f, DMLab convention); every chunk gets the actions of its window.
    context_tokens: (B, m, H, W) given frames (kept as the first m output frames), or None with
    context = 0: the first window is generated from nothing. callback(chunk_index, new_frames)
    is called with each chunk's kept frames (B, keep, H, W) as they are produced (streaming).
    info: chunks, nfe (executed network evaluations, summed over chunks), seconds.
    """
    if context_tokens is not None:
        context_tokens = np.asarray(context_tokens)
        if context_tokens.ndim != 4 or context_tokens.shape[1] != context:
            raise ValueError(f"context_tokens has shape {context_tokens.shape}; expected (B, m={context}, H, W)")
        batch, grid = context_tokens.shape[0], context_tokens.shape[2:]
    elif context:
        raise ValueError(f"context={context} frames requested but context_tokens is None")
    elif grid is None or batch is None:
        raise ValueError("without context_tokens, pass grid=(H, W) and batch=B")
    plan = rollout_plan(length, window, context, stride)
    if actions is not None:
        actions = np.asarray(actions)
        if actions.shape != (batch, length) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions has shape {actions.shape} ({actions.dtype}); expected integers (B, L) = "
                f"({batch}, {length}): one action per generated frame"
            )
        # A window that reaches past L (only when L < T_w) gets action 0 on the frames it drops.
        actions = np.pad(actions, ((0, 0), (0, window)))
    video = [context_tokens[:, i] for i in range(context)] if context else []
    nfe, start = 0, time.perf_counter()
    for i, chunk in enumerate(plan):
        rng, k = jax.random.split(rng)
        win = np.full((batch, window, *grid), mask_id, np.int32)
        if chunk.context:
            win[:, : chunk.context] = np.stack(video[-chunk.context :], axis=1)
        ctx = np.zeros((batch, window), bool)
        ctx[:, : chunk.context] = True
        first = len(video) - chunk.context  # the window's first frame in the video
        act = None if actions is None else jnp.asarray(actions[:, first : first + window], jnp.int32)
        out, used = (
            chunk_fn(k, jnp.asarray(win), jnp.asarray(ctx))
            if act is None
            else chunk_fn(k, jnp.asarray(win), jnp.asarray(ctx), act)
        )
        new = np.asarray(out[:, chunk.context : chunk.context + chunk.keep])
        video += [new[:, j] for j in range(chunk.keep)]
        nfe += int(used)
        if callback is not None:
            callback(i, new)
    tokens = np.stack(video, axis=1)
    return tokens, {"chunks": len(plan), "nfe": nfe, "seconds": time.perf_counter() - start}
