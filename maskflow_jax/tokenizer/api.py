"""Video <-> token conversion with a VQ tokenizer: jitted, batched over frames, range-checked.

Videos are uint8 (B, F, H, W, 3); tokens int32 (B, F, h, w). Pixels map to [-1, 1] as x/255*2 - 1
(the paper's convention, docs/method.md §8); decoding replaces MASK ids (== n_embed) by code 0 and clamps
to [-1, 1] before converting back to uint8 by one of two rules (`UINT8_RULES`, config
`tokenizer.decode_uint8`): "round" = round((x + 1) * 127.5), "trunc" = trunc((x + 1) * 0.5 * 255)
(the release's cast, which the paper's reference sets and samples went through; 255 only at x = 1).

The model is built from the tokenizer config alone; `resolution` is the size of the frames this
Tokenizer takes (config.data.resize_to), any multiple of the downsampling factor.
"""

import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.tokenizer.model import downsampling_factor, make_vq_model, valid_sizes

UINT8_RULES = ("round", "trunc")


def to_unit(frames):
    """uint8 (..., 3) -> float32 in [-1, 1]."""
    return frames.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images, rule="round"):
    """Images (..., 3) (any range) -> uint8 after clamping to [-1, 1].

    round: round((x + 1) * 127.5), half to even (0 -> 128); the maze tokenizer's rule.
    trunc: trunc((x + 1) * 0.5 * 255) (0 -> 127, 255 only at x = 1): the release's rule.
    """
    x = jnp.clip(images, -1.0, 1.0)
    if rule == "round":
        return jnp.round((x + 1.0) * 127.5).astype(jnp.uint8)
    if rule == "trunc":
        return jnp.floor((x + 1.0) * 0.5 * 255.0).astype(jnp.uint8)  # >= 0, so floor = trunc
    raise ValueError(f"config.tokenizer.decode_uint8={rule!r}: expected one of {list(UINT8_RULES)}")


class Tokenizer:
    """A VQ model with its parameters; `encode`/`decode` over videos in fixed-size frame chunks (one
    compilation per chunk size), optionally sharded over a mesh's batch axes.

    resolution: H = W of the frames it takes (config.data.resize_to), a multiple of the downsampling
    factor f; the token grid is (H / f, W / f). decode_uint8: "round" | "trunc" (default from
    tok_cfg.decode_uint8, else "round").
    """

    def __init__(self, tok_cfg, params, resolution, chunk=32, decode_uint8=None):
        self.factor = downsampling_factor(tok_cfg)
        size = int(resolution) if isinstance(resolution, (int, np.integer)) else None
        if size is None or size < self.factor or size % self.factor:
            raise ValueError(
                f"config.data.resize_to={resolution} is not a frame size this tokenizer takes: valid "
                f"sizes are the {valid_sizes(self.factor, size)}"
            )
        rule = decode_uint8 or tok_cfg.get("decode_uint8") or "round"
        if rule not in UINT8_RULES:
            raise ValueError(f"config.tokenizer.decode_uint8={rule!r}: expected one of {list(UINT8_RULES)}")
        self.cfg, self.params, self.resolution, self.chunk, self.decode_uint8 = tok_cfg, params, size, chunk, rule
        self.model = make_vq_model(tok_cfg)
        self.grid = (self.resolution // self.factor, self.resolution // self.factor)
        self.n_embed = tok_cfg.n_embed
        model = self.model
        self._enc = jax.jit(lambda p, x: model.apply({"params": p}, to_unit(x), method=model.encode))
        self._dec = jax.jit(
            lambda p, t: to_uint8(
                model.apply({"params": p}, jnp.where(t == model.n_embed, 0, t), method=model.decode), rule
            )
        )

    def _chunked(self, fn, flat, out_shape, dtype):
        n = flat.shape[0]
        out = np.empty((n,) + out_shape, dtype)
        for s in range(0, n, self.chunk):
            part = flat[s : s + self.chunk]
            pad = self.chunk - part.shape[0]
            if pad:  # a fixed chunk size: no recompilation for the last, shorter chunk
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            out[s : s + self.chunk] = np.asarray(fn(self.params, jnp.asarray(part)))[: self.chunk - pad]
        return out

    def encode(self, frames):
        """uint8 (B, F, H, W, 3) or (N, H, W, 3) -> int32 token ids (B, F, h, w) or (N, h, w)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim not in (4, 5) or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (B, F, H, W, 3) or (N, H, W, 3); got {frames.dtype} {frames.shape}")
        if frames.shape[-3:-1] != (self.resolution, self.resolution):
            raise ValueError(
                f"frames are {frames.shape[-3]}x{frames.shape[-2]} but the tokenizer expects "
                f"{self.resolution}x{self.resolution} (config.data.resize_to)"
            )
        lead = frames.shape[:-3]
        flat = frames.reshape((-1,) + frames.shape[-3:])
        return self._chunked(self._enc, flat, self.grid, np.int32).reshape(lead + self.grid)

    def decode(self, tokens):
        """int32 ids (B, F, h, w) or (N, h, w) in [0, n_embed] (n_embed = MASK -> code 0) -> uint8 frames."""
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.shape[-2:] != self.grid:
            raise ValueError(
                f"tokens must be integer (..., {self.grid[0]}, {self.grid[1]}); got {tokens.dtype} {tokens.shape}"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() > self.n_embed):
            raise ValueError(
                f"token ids must lie in [0, {self.n_embed}] (codebook + MASK); got [{tokens.min()}, {tokens.max()}]"
            )
        lead = tokens.shape[:-2]
        flat = tokens.reshape((-1,) + self.grid).astype(np.int32)
        shape = (self.resolution, self.resolution, 3)
        return self._chunked(self._dec, flat, shape, np.uint8).reshape(lead + shape)
