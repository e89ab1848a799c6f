"""Tiny configs and synthetic token data shared by the tests (the tiny-model factory)."""

import os
import signal

import grain
import jax
import jax.numpy as jnp
import numpy as np

from configs import maze


def tiny_config(frames=4, grid=4, n_embed=16, batch_size=8, **overrides):
    """A maze config shrunk to a 2-block, D=32 denoiser over (frames, grid, grid) token clips."""
    cfg = maze.get_config()
    cfg.data.frames = frames
    cfg.data.batch_size = batch_size
    cfg.tokenizer.ch_mult = (1, 2)  # one downsampling: resize_to = 2 * grid
    cfg.data.resize_to = 2 * grid
    cfg.tokenizer.n_embed = n_embed
    cfg.model.size = "tiny"
    cfg.model.hidden = 32
    cfg.model.depth = 2
    cfg.model.heads = 2
    cfg.model.patch = 2  # the maze config's patch 1 would quadruple the tokens of every test model
    cfg.sampling.randomize = "none"  # the base default (the maze config anneals Gumbel noise)
    cfg.train.lr = 3e-3
    cfg.train.warmup_steps = 0
    cfg.train.ema_decay = 0.9
    cfg.train.log_every = 2
    cfg.train.ckpt_every = 3
    cfg.train.keep_checkpoints = 5
    cfg.sampling.context = 1
    cfg.sampling.stride = 1
    for key, value in overrides.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


def structured_tokens(num, frames, grid, n_embed, seed=0):
    """(num, frames, grid, grid) int32 clips with learnable structure: a per-clip pattern that shifts
    by one column per frame (so both spatial and temporal context help)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, n_embed, size=(num, 1, grid, grid))
    clips = np.concatenate([np.roll(base, f, axis=-1) for f in range(frames)], axis=1)
    return clips.astype(np.int32)


def token_iterator(tokens, batch_size, seed=0):
    """A checkpointable grain iterator of {"tokens": (batch_size, F, H, W)} batches, repeated forever."""
    ds = (
        grain.MapDataset.source([t for t in tokens])
        .shuffle(seed=seed)
        .repeat()
        .map(lambda x: {"tokens": x})
        .batch(batch_size, drop_remainder=True)
    )
    return iter(ds.to_iter_dataset())


def run_steps(trainer, state, tokens, steps, batch_size=8):
    """`steps` training steps of `trainer` on consecutive batches of `tokens` (N, F, H, W) from `state`,
    inside the trainer's mesh. Returns (state, [metrics dict of each step])."""
    metrics = []
    with jax.set_mesh(trainer.mesh):
        for i in range(steps):
            batch = {
                "tokens": jax.device_put(
                    jnp.asarray(tokens[batch_size * i : batch_size * (i + 1)]), trainer.batch_sharding
                )
            }
            state, m = trainer.step(state, batch)
            metrics.append(m)
    return state, metrics


class KillAt:
    """Wraps a grain iterator (as `.wrapped`, so its position is checkpointed) and sends SIGTERM to this
    process when batch `at` is drawn: the loop finishes that step, checkpoints and stops."""

    def __init__(self, wrapped, at):
        self.wrapped, self.at, self.count = wrapped, at, 0

    def __next__(self):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.wrapped)
