"""The held-out videos every evaluation reads: tokens, pixels and actions of split `data.eval_split`.

The tokens come from the run's token cache (`--mode=tokenize` writes the eval split too), the pixels
from the prepared records, resized to `data.resize_to`; both hold the same videos in the same order.
Actions are returned only for an action-conditioned run (`model.action_cond`); actions[:, f] is the
action taken after frame f. Shapes: N videos, L frames, h x w tokens, H x W pixels.
"""

import os

import numpy as np

from maskflow_jax.data import loader, records, tokens


def sources(cfg, workdir):
    """(token RecordSource, pixel RecordSource) of split data.eval_split, checked to hold the same videos."""
    tok_dir = tokens.token_dir(cfg, workdir)
    if not os.path.isdir(tok_dir):
        raise FileNotFoundError(
            f"no token cache at {tok_dir!r} (config.data.token_cache): run --mode=tokenize "
            "first (it tokenizes the eval split too)"
        )
    tok = records.RecordSource(tok_dir, cfg.data.eval_split)
    pix = records.RecordSource(loader.resolve_prepared_dir(cfg.data, workdir), cfg.data.eval_split)
    if list(tok.lengths) != list(pix.lengths):
        raise ValueError(
            f"the token cache {tok_dir!r} does not match the prepared clips of split "
            f"{cfg.data.eval_split!r}: rerun --mode=tokenize"
        )
    return tok, pix


def indices(cfg, workdir, num, min_length):
    """Indices of the first `num` held-out videos with at least `min_length` frames (ValueError below 2)."""
    tok, _ = sources(cfg, workdir)
    usable = [i for i in range(len(tok)) if tok.lengths[i] >= min_length][:num]
    if len(usable) < 2:
        raise ValueError(
            f"need >= 2 videos of >= {min_length} frames in split {cfg.data.eval_split!r}; "
            f"found {len(usable)} (for a built-in world raise its config.data.<world>.length, or "
            "lower config.eval.horizons)"
        )
    return usable


def batches(cfg, workdir, idx, length, batch_size):
    """Yields (tokens (n, length, h, w) int32, pixels (n, length, H, W, 3) uint8) of videos `idx`."""
    tok, pix = sources(cfg, workdir)
    for s in range(0, len(idx), batch_size):
        part = idx[s : s + batch_size]
        yield (
            np.stack([np.asarray(tok[i]["video"])[:length] for i in part]),
            np.stack([loader.resize_video(np.asarray(pix[i]["video"])[:length], cfg.data.resize_to) for i in part]),
        )


def actions(cfg, workdir, idx, length):
    """int32 (N, length) actions of held-out videos `idx` for an action-conditioned run, else None."""
    if not cfg.model.get("action_cond", False):
        return None
    tok, _ = sources(cfg, workdir)
    out = []
    for i in idx:
        acts = tok[i].get("actions")
        if acts is None:
            raise ValueError(
                f"config.model.action_cond=True but held-out video {i} of split {cfg.data.eval_split!r} "
                "has no actions in the token cache: use data with actions (DMLab, the built-in worlds) "
                "or set config.model.action_cond=False"
            )
        if len(acts) < length:
            raise ValueError(
                f"an action-conditioned run needs the actions of all {length} generated frames, but "
                f"held-out video {i} has {len(acts)}: lower config.eval.horizons (or "
                f"config.sampling.horizon) to <= {len(acts)} frames"
            )
        out.append(np.asarray(acts[:length], np.int32))
    return np.stack(out)


def load(cfg, workdir, num, length):
    """(tokens (N, length, h, w), pixels (N, length, H, W, 3), actions (N, length) or None) of the first
    `num` held-out videos of >= `length` frames, all at once."""
    idx = indices(cfg, workdir, num, length)
    toks, pixels = next(batches(cfg, workdir, idx, length, len(idx)))
    return toks, pixels, actions(cfg, workdir, idx, length)
