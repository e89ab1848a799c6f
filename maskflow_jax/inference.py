"""Notebook API: load a trained run and generate long videos.

    from maskflow_jax import inference
    run = inference.load_run("runs/maze")                  # tokenizer + denoiser (EMA weights)
    video, info = run.generate(jax.random.key(0), num_frames=160, batch_size=2)   # uint8 (B, L, H, W, 3)
    inference.save_gif("maze.gif", video[0]); inference.save_frame_grid("maze.png", video[0])

`sample_heldout` (`--mode=sample`, the pipeline's samples stage) continues held-out videos and writes
GIFs and a frame grid to `<workdir>/samples/`.
"""

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from maskflow_jax import checkpoint
from maskflow_jax.config_validation import token_grid
from maskflow_jax.data import heldout, records, tokens
from maskflow_jax.models.latte import init_params, make_denoiser
from maskflow_jax.sampling import rollout as ro
from maskflow_jax.tokenizer.train import load_tokenizer
from maskflow_jax.train.setup import vocab
from maskflow_jax.train.state import STATE_VERSION


def load_denoiser(cfg, workdir, use_ema=True, step=None):
    """(model, params, step) of the run's latest denoiser checkpoint (or of checkpoint `step`) on one device.

    Restores only the parameter item it returns (`ema` or `params`, checkpoint.restore_params): no
    optimizer is built and its state is never read.
    """
    vocab_size, _ = vocab(cfg)
    grid = token_grid(cfg)
    model = make_denoiser(cfg.model, vocab_size=vocab_size, frames=cfg.data.frames, grid=grid)
    shapes = jax.eval_shape(lambda: nn.meta.unbox(init_params(model, jax.random.key(0), cfg.data.frames, grid)))
    target = checkpoint.single_device_target(shapes)
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"))
    try:
        restored = checkpoint.restore_params(
            manager, target, item="ema" if use_ema else "params", step=step, version=STATE_VERSION
        )
    finally:
        manager.close()
    if restored is None:
        raise FileNotFoundError(f"no denoiser checkpoint in {workdir}/checkpoints: train first (--mode=train)")
    return model, restored[1], int(restored[0])


def saved_config(workdir):
    """The config a run was trained with (from its newest checkpoint's metadata)."""
    ckpt = os.path.join(workdir, "checkpoints")
    steps = sorted((int(d) for d in os.listdir(ckpt) if d.isdigit()), reverse=True) if os.path.isdir(ckpt) else []
    for step in steps:
        path = os.path.join(ckpt, str(step), "meta", "metadata")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return ml_collections.ConfigDict(json.load(f)["config"])
    raise FileNotFoundError(f"no checkpoint metadata under {ckpt}")


@dataclasses.dataclass
class Run:
    """A loaded run: tokenizer + denoiser parameters + config; generate() returns uint8 videos."""

    cfg: Any
    tokenizer: Any
    model: Any
    params: Any
    step: int
    _chunk_fns: dict = dataclasses.field(default_factory=dict)

    def apply_fn(self) -> Callable:
        """apply_fn(params, tokens (B, F, H, W), t (B, F)[, actions (B, F)]) -> logits (B, F, H, W, V): the
        form the jitted samplers take (parameters as an argument, never as compile-time constants)."""
        model = self.model
        return lambda params, tokens, t, actions=None: model.apply({"params": params}, tokens, t, actions=actions)

    @property
    def action_cond(self) -> bool:
        return bool(self.cfg.model.get("action_cond", False))

    def check_actions(self, actions, batch, length):
        """The actions generate() needs: None for an unconditional model; integers (B, L) in
        [0, model.num_actions) for an action-conditioned one (else a ValueError naming the fix; rollout
        checks the shape)."""
        if not self.action_cond:
            if actions is not None:
                raise ValueError(
                    "actions given, but this run's denoiser is not action-conditioned "
                    "(config.model.action_cond=False): drop actions="
                )
            return None
        if actions is None:
            raise ValueError(
                "this run's denoiser is action-conditioned (config.model.action_cond=True): pass "
                f"actions=int (B, L) = ({batch}, {length}), e.g. the held-out videos' actions "
                "(data/heldout.py actions)"
            )
        actions = np.asarray(actions)
        n = self.cfg.model.num_actions
        if actions.size and (actions.min() < 0 or actions.max() >= n):
            raise ValueError(
                f"action ids must be in [0, {n}) (config.model.num_actions); got [{actions.min()}, {actions.max()}]"
            )
        return actions

    def logits_fn(self) -> Callable:
        """logits_fn(tokens, t) -> logits with this run's parameters bound (for eager use in a notebook;
        to jit, jit apply_fn and pass the parameters)."""
        return functools.partial(self.apply_fn(), self.params)

    def chunk_fn(self, sampler=None, steps=None):
        key = (sampler or self.cfg.sampling.sampler, steps or self.cfg.sampling.steps)
        if key not in self._chunk_fns:
            s = ml_collections.ConfigDict(self.cfg.sampling.to_dict())
            s.sampler, s.steps = key
            fn = ro.make_sampler(s, mask_id=self.cfg.tokenizer.n_embed, kappa_name=self.cfg.flow.kappa)
            self._chunk_fns[key] = ro.make_chunk_fn(fn, self.apply_fn(), params=self.params)
        return self._chunk_fns[key]

    def generate(
        self,
        rng,
        context_video=None,
        context_tokens=None,
        num_frames=None,
        context=None,
        stride=None,
        sampler=None,
        steps=None,
        batch_size=None,
        callback: Callable | None = None,
        decode=True,
        actions=None,
        window=None,
    ):
        """Generates num_frames (L) frames from `context` (m) given frames.

        context_video: uint8 (B, >= m, H, W, 3) pixels (tokenized here), or context_tokens
        (B, >= m, h, w); with neither, m must be 0 (one window from nothing, L <= T_w).
        actions: int (B, L), required by (and only by) an action-conditioned run (model.action_cond):
        actions[:, f] is the action taken after frame f (DMLab convention).
        window: frames per chunk (default config.sampling.window, where 0 means data.frames T_w); a
        window shorter than T_w runs only the m context and s new frames of each chunk.
        callback(chunk_index, new_tokens (B, k, h, w)) streams chunks. Returns (video uint8
        (B, L, H, W, 3) or tokens if decode=False, info {"nfe", "chunks", "seconds", "tokens"}).
        """
        s = self.cfg.sampling
        m = s.context if context is None else context
        stride = s.stride if stride is None else stride
        num_frames = num_frames or s.horizon
        window = window or s.get("window", 0) or self.cfg.data.frames
        if not 0 < window <= self.cfg.data.frames:
            raise ValueError(
                f"window={window} must be in [1, data.frames={self.cfg.data.frames}] (config.sampling.window)"
            )
        if context_video is not None:
            context_tokens = self.tokenizer.encode(np.asarray(context_video)[:, :m])
        if context_tokens is not None:
            context_tokens = np.asarray(context_tokens)[:, :m]
        elif m:
            raise ValueError(f"context={m} frames requested: pass context_video or context_tokens (or context=0)")
        batch = context_tokens.shape[0] if context_tokens is not None else (batch_size or s.batch_size)
        actions = self.check_actions(actions, batch, num_frames)
        tokens, info = ro.rollout(
            rng,
            self.chunk_fn(sampler, steps),
            context_tokens,
            length=num_frames,
            window=window,
            context=m,
            stride=stride,
            mask_id=self.cfg.tokenizer.n_embed,
            grid=self.tokenizer.grid,
            batch=batch,
            callback=callback,
            actions=actions,
        )
        info["tokens"] = tokens
        return (self.tokenizer.decode(tokens) if decode else tokens), info


class UntrainedRun(Run):
    """The untrained denoiser, without running the network: `params` is a float32 scalar 0 and the
    logits are that scalar broadcast to (B, F, H, W, V), i.e. uniform over the vocabulary.

    This is exactly what the untrained (initialised or zeroed) Latte denoiser outputs: its adaLN-Zero
    head is zero-initialised, so the logits are 0 whatever the input (tests/test_rollout.py
    checks this and that the generated tokens are identical), at no network cost. The zero is a
    runtime argument, not a constant, for the XLA:CPU folding reason of `rollout.make_chunk_fn`.
    With `model.head_init_std > 0` the initialised network's logits are small random values rather than
    0; the baseline stays the uniform one (the release's zero-head initialisation).
    """

    def apply_fn(self) -> Callable:
        vocab = self.model.vocab_size

        def apply(params, tokens, t, actions=None):
            del t, actions
            return jax.numpy.broadcast_to(params, tuple(tokens.shape) + (vocab,))

        return apply


def untrained_run(run):
    """The untrained-denoiser baseline of `run` (same config, tokenizer and sampler): see UntrainedRun."""
    return UntrainedRun(cfg=run.cfg, tokenizer=run.tokenizer, model=run.model, params=np.float32(0.0), step=0)


def load_run(workdir, cfg=None, use_ema=True, step=None):
    """Loads a trained run (config from its checkpoint unless given; EMA weights by default; the latest
    checkpoint unless `step` names one)."""
    cfg = cfg if cfg is not None else saved_config(workdir)
    model, params, step = load_denoiser(cfg, workdir, use_ema=use_ema, step=step)
    return Run(cfg=cfg, tokenizer=load_tokenizer(cfg, workdir), model=model, params=params, step=step)


def save_gif(path, video, fps=8):
    """video uint8 (T, H, W, 3) -> animated GIF."""
    from PIL import Image  # noqa: PLC0415

    frames = [Image.fromarray(np.asarray(f)) for f in video]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def save_frame_grid(path, video, every=1, columns=16):
    """video uint8 (T, H, W, 3) -> one PNG of every `every`-th frame in rows of `columns`."""
    from PIL import Image  # noqa: PLC0415

    frames = np.asarray(video)[::every]
    pad = (-len(frames)) % columns
    if pad:
        frames = np.concatenate([frames, np.zeros((pad,) + frames.shape[1:], frames.dtype)])
    rows = [np.concatenate(list(frames[i : i + columns]), axis=1) for i in range(0, len(frames), columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def sample_heldout(cfg, workdir):
    """Continues held-out videos to sampling.horizon frames (`--mode=sample`); GIFs + grid in <workdir>/samples."""
    run = load_run(workdir, cfg=cfg, use_ema=cfg.sampling.use_ema)
    src = records.RecordSource(tokens.token_dir(cfg, workdir), cfg.data.eval_split)
    b, m = cfg.sampling.batch_size, cfg.sampling.context
    if min(src.meta["lengths"]) < m:
        raise ValueError(f"held-out videos have {min(src.meta['lengths'])} frames, fewer than the context m={m}")
    idx = [i % len(src) for i in range(b)]
    ctx = np.stack([np.asarray(src[i]["video"])[:m] for i in idx])
    actions = heldout.actions(cfg, workdir, idx, cfg.sampling.horizon) if run.action_cond else None
    out = os.path.join(workdir, "samples")
    os.makedirs(out, exist_ok=True)
    video, info = run.generate(
        jax.random.key(cfg.seed), context_tokens=ctx, num_frames=cfg.sampling.horizon, actions=actions
    )
    for i in range(len(video)):
        save_gif(os.path.join(out, f"sample_{i}.gif"), video[i])
    save_frame_grid(os.path.join(out, "grid.png"), video[0], every=max(1, len(video[0]) // 32))
    per_frame = info["seconds"] / max(1, (cfg.sampling.horizon - m) * len(video))
    summary = {
        "nfe": info["nfe"],
        "chunks": info["chunks"],
        "seconds": info["seconds"],
        "seconds_per_frame": per_frame,
        "frames": int(video.shape[1]),
        "videos": int(len(video)),
        "summary": f"{len(video)} videos of {video.shape[1]} frames, {info['nfe']} NFE, "
        f"{per_frame:.3f} s per generated frame -> {out}",
    }
    with open(os.path.join(out, "info.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary
