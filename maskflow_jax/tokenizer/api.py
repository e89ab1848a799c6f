"""Video <-> token conversion with a VQ tokenizer: jitted, batched over frames, range-checked.

Videos are uint8 (B, F, H, W, 3); tokens int32 (B, F, h, w). Pixels map to [-1, 1] as x/255*2 - 1
(the paper's convention, SPEC §5); decoding replaces MASK ids (== n_embed) by code 0 and clamps
to [-1, 1] before converting back to uint8.
"""
import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.tokenizer.model import make_vq_model


def to_unit(frames):
    return frames.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images):
    return jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


class Tokenizer:
    """A VQ model with its parameters; `encode`/`decode` over videos in fixed-size frame chunks (one
    compilation per chunk size), optionally sharded over a mesh's batch axes."""

    def __init__(self, tok_cfg, params, resolution, chunk=32):
        self.cfg, self.params, self.resolution, self.chunk = tok_cfg, params, resolution, chunk
        self.model = make_vq_model(tok_cfg, resolution)
        self.factor = 2 ** (len(tok_cfg.ch_mult) - 1)
        self.grid = (resolution // self.factor, resolution // self.factor)
        self.n_embed = tok_cfg.n_embed
        model = self.model
        self._enc = jax.jit(lambda p, x: model.apply({"params": p}, to_unit(x), method=model.encode))
        self._dec = jax.jit(lambda p, t: to_uint8(model.apply({"params": p}, jnp.where(t == model.n_embed, 0, t),
                                                              method=model.decode)))

    def _chunked(self, fn, flat, out_shape, dtype):
        n = flat.shape[0]
        out = np.empty((n,) + out_shape, dtype)
        for s in range(0, n, self.chunk):
            part = flat[s:s + self.chunk]
            pad = self.chunk - part.shape[0]
            if pad:  # a fixed chunk size: no recompilation for the last, shorter chunk
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            out[s:s + self.chunk] = np.asarray(fn(self.params, jnp.asarray(part)))[: self.chunk - pad]
        return out

    def encode(self, frames):
        """uint8 (B, F, H, W, 3) or (N, H, W, 3) -> int32 token ids (B, F, h, w) or (N, h, w)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (B, F, H, W, 3) or (N, H, W, 3); got {frames.dtype} {frames.shape}")
        if frames.shape[-3:-1] != (self.resolution, self.resolution):
            raise ValueError(f"frames are {frames.shape[-3]}x{frames.shape[-2]} but the tokenizer expects "
                             f"{self.resolution}x{self.resolution} (config.data.resize_to)")
        lead = frames.shape[:-3]
        flat = frames.reshape((-1,) + frames.shape[-3:])
        return self._chunked(self._enc, flat, self.grid, np.int32).reshape(lead + self.grid)

    def decode(self, tokens):
        """int32 ids (B, F, h, w) or (N, h, w) in [0, n_embed] (n_embed = MASK -> code 0) -> uint8 frames."""
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.shape[-2:] != self.grid:
            raise ValueError(f"tokens must be integer (..., {self.grid[0]}, {self.grid[1]}); got {tokens.dtype} "
                             f"{tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() > self.n_embed):
            raise ValueError(f"token ids must lie in [0, {self.n_embed}] (codebook + MASK); got "
                             f"[{tokens.min()}, {tokens.max()}]")
        lead = tokens.shape[:-2]
        flat = tokens.reshape((-1,) + self.grid).astype(np.int32)
        shape = (self.resolution, self.resolution, 3)
        return self._chunked(self._dec, flat, shape, np.uint8).reshape(lead + shape)
