"""The discrete Latte denoiser (docs/method.md §5): token ids (B, F, H, W) and per-frame times t (B, F) ->
clean-token logits (B, F, H, W, V).

Layout differs from the release only in being channels-last: the release returns (B, V, F, H, W).
The vocabulary of the embedding table and the output head is padded to a multiple of
`VOCAB_PAD` so it shards evenly over a tensor axis (V = 16385 is odd); padded rows are never
looked up and padded logits are sliced off, so the function computed is unchanged.
The temporal sin-cos embedding is computed for the F of the input (the release hard-wires F to
the training clip length; for that F both are identical).

Mixed precision (`config.model.dtype`): parameters stay float32 (`param_dtype`), matmuls and
activations run in the compute dtype (bfloat16 on accelerators with "auto"), the residual stream
and layer norms in float32, and the output head accumulates and returns float32 logits, so the
log-softmax and the loss are float32 (flow/losses.py).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.models.layers import (
    AdaLNBlock,
    TimestepEmbedder,
    grid_positions,
    layer_norm,
    modulate,
    part,
    resolve_attention,
    rope_tables,
    sincos_1d,
    sincos_2d,
    xavier,
    zeros,
)
from maskflow_jax.parallel import axes as ax

# name -> (depth in blocks, hidden D, heads); patch 2 for all (docs/method.md §5.6).
PRESETS = {
    "tiny": (4, 128, 4),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
VOCAB_PAD = 64
ACTION_ALIGNS = ("after", "cause", "both")  # config.model.action_align
ROPE_CHOICES = ("none", "spatial", "spatiotemporal")  # config.model.rope
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
DTYPE_CHOICES = ("auto",) + tuple(DTYPES)  # config.model.dtype


def resolve_dtype(name, backend=None):
    """config.model.dtype -> the compute dtype. "auto" (the DMLab and FFS configs) is bfloat16 on an
    accelerator (the JAX default backend is not "cpu") and float32 on CPU, where bf16 matmuls are no
    faster (XLA:CPU) and the tests run."""
    if name == "auto":
        return jnp.float32 if (backend or jax.default_backend()) == "cpu" else jnp.bfloat16
    if name not in DTYPES:
        raise ValueError(f"config.model.dtype={name!r}: expected one of {list(DTYPE_CHOICES)}")
    return DTYPES[name]


REMAT_POLICIES = {
    "nothing": None,  # save nothing: recompute the whole block in the backward pass (least memory)
    "dots": "dots_with_no_batch_dims_saveable",  # keep matmul outputs, recompute the elementwise rest
}


class BlockPair(nn.Module):
    """A spatial adaLN-Zero block over the N patches of each frame, then a temporal one over the F
    frames of each patch position: x (B, F, N, D) -> (B, F, N, D). `first` (scalar, 1 for the first
    pair) gates the temporal sin-cos embedding (added once, docs/method.md §5.3). Returns (x, None) so the
    same module serves a Python loop and `nn.scan`. `rope` (beyond the paper, `Latte`): "spatial" rotates
    the spatial blocks' queries and keys by the patch's (row, column) on the `grid` (gh, gw),
    "spatiotemporal" also the temporal blocks' by the frame index."""

    heads: int
    mlp_ratio: float
    dtype: jnp.dtype
    remat: bool = False
    remat_policy: str = "nothing"
    attention: str = "einsum"
    rope: str = "none"
    grid: tuple = ()
    barrier: bool = True

    @nn.compact
    def __call__(self, x, first, c_spatial, c_temporal, temp_embed):
        dh = x.shape[-1] // self.heads
        rope_s = rope_t = None
        if self.rope in ("spatial", "spatiotemporal"):
            rope_s = tuple(jnp.asarray(a) for a in rope_tables(dh, grid_positions(*self.grid)))
        if self.rope == "spatiotemporal":
            rope_t = tuple(jnp.asarray(a) for a in rope_tables(dh, np.arange(x.shape[1])[:, None]))
        block = AdaLNBlock
        if self.remat:
            if self.remat_policy not in REMAT_POLICIES:
                raise ValueError(
                    f"config.model.remat_policy={self.remat_policy!r}: expected one of {sorted(REMAT_POLICIES)}"
                )
            name = REMAT_POLICIES[self.remat_policy]
            block = nn.remat(AdaLNBlock, policy=getattr(jax.checkpoint_policies, name) if name else None)
        kw = dict(heads=self.heads, mlp_ratio=self.mlp_ratio, dtype=self.dtype, attention=self.attention)
        x = block(**kw, barrier=self.barrier, name="spatial")(x, c_spatial, rope_s)
        x = x.transpose(0, 2, 1, 3)  # (B, N, F, D)
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.SEQ, ax.FRAMES, ax.EMBED))
        x = x + temp_embed * first
        x = block(**kw, barrier=self.barrier, name="temporal")(x, c_temporal, rope_t)
        x = x.transpose(0, 2, 1, 3)  # (B, F, N, D)
        return nn.with_logical_constraint(x, (ax.BATCH, ax.FRAMES, ax.SEQ, ax.EMBED)), None


def head_logits(x, kernel, bias, dtype):
    """The output head on patch features x (..., D): kernel (D, C), bias (C,) -> float32 (..., C).

    Inputs are cast to the compute dtype and the products accumulated and returned in float32
    (preferred_element_type), so bf16 training gets float32 logits without a bf16 rounding first.
    """
    out = jnp.einsum("...d,dc->...c", x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)
    return out + bias.astype(jnp.float32)


class OutputHead(nn.Module):
    """Linear D -> p*p*V_pad on the final patch features (..., D), float32 logits (`head_logits`).

    Parameters `kernel` (D, p*p*V_pad) and `bias` are named and initialised like the nn.Dense this
    replaces, so checkpoints and initial values are unchanged. The masked-head loss
    (flow/losses.py `masked_head_cross_entropy`) reads the same two parameters.
    """

    features: int
    dtype: jnp.dtype = jnp.float32
    init_std: float = 0.0

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(self.init_std) if self.init_std > 0 else zeros
        kernel = self.param("kernel", part(init, ax.EMBED, ax.VOCAB), (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", part(zeros, ax.VOCAB), (self.features,), jnp.float32)
        return head_logits(x, kernel, bias, self.dtype)


class Latte(nn.Module):
    """Alternating spatial / temporal adaLN-Zero blocks over patch tokens (docs/method.md §5).

    Attributes: vocab_size V (codebook + MASK), hidden D, depth (blocks; depth/2 pairs), heads,
    patch p, time_cond (False zeroes t: a timestep-independent model), num_actions (> 0 adds a
    per-frame action embedding to the time embedding), dtype (compute), remat (per block, with
    remat_policy), scan (nn.scan over the depth/2 block pairs: parameters stacked on a leading
    `layers` axis, one compiled pair; the function computed is the same as the loop's),
    head_init_std (0 = the release's zero-initialised output head; > 0 draws it from N(0, std^2):
    beyond the paper, since a zero head with the loss on masked tokens only gives the body exactly
    zero gradients at the first steps), action_align (which action frame f is conditioned on, given
    actions (B, F) in the data's convention `actions[f]` = the move taken after frame f: "after"
    embeds actions[f]; "cause" embeds actions[f - 1], the move that produced frame f, and a learnt
    "no action" id (num_actions) for frame 0; "both", beyond the paper, adds the two embeddings, from
    separate tables, so a visible frame knows the move out of it and a masked one the move into it),
    attention (the resolved implementation: einsum | xla |
    cudnn, see layers.resolve_attention), rope ("none" = the paper's absolute sin-cos embeddings only;
    beyond the paper, "spatial" adds rotary embeddings of the patch's (row, column) to the spatial
    attention, "spatiotemporal" also of the frame index to the temporal attention: `BlockPair`. With a
    rotary spatial attention a query that is the same at every patch, such as the per-frame adaLN shift
    carrying an action, selects a relative offset; with absolute embeddings only it can only favour
    absolute positions, so an action-dependent move of the view is hard to express), fusion_barrier
    (`layers.fusion_barrier` on the residual stream: the same function, faster backward on XLA:CPU at
    Latte-S/2's shapes, ~10 % slower at the built-in worlds' tiny model; docs/performance.md §8).

    Call: (tokens (B, F, H, W), t (B, F)[, actions (B, F)]) -> float32 logits (B, F, H, W, V); with
    features_only=True, the final adaLN-modulated patch features (B, F, N, D) in the compute dtype,
    i.e. everything but the output head (`head` parameters), for the masked-head loss.
    """

    vocab_size: int
    hidden: int
    depth: int
    heads: int
    patch: int = 2
    mlp_ratio: float = 4.0
    time_cond: bool = True
    num_actions: int = 0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    remat: bool = False
    remat_policy: str = "nothing"
    scan: bool = False
    head_init_std: float = 0.0
    action_align: str = "after"
    rope: str = "none"
    attention: str = "einsum"
    fusion_barrier: bool = True

    @nn.compact
    def __call__(self, tokens, t, actions=None, features_only=False):
        b, f, h, w = tokens.shape
        p, d = self.patch, self.hidden
        gh, gw = h // p, w // p
        if h % p or w % p:
            raise ValueError(f"token grid {h}x{w} is not divisible by the patch size {p} (config.model.patch)")
        if t.shape != (b, f):
            raise ValueError(f"t has shape {t.shape}; expected (B, F) = {(b, f)}")

        v_pad = -(-self.vocab_size // VOCAB_PAD) * VOCAB_PAD
        emb = nn.Embed(
            v_pad,
            d // 2,
            embedding_init=part(nn.initializers.normal(1.0), ax.VOCAB, ax.EMBED),
            param_dtype=self.param_dtype,
            name="token_embed",
        )(tokens).astype(self.dtype)
        # Patchify: a p x p stride-p conv written as a Dense over flattened patches (same xavier fans).
        x = (
            emb.reshape(b, f, gh, p, gw, p, d // 2)
            .transpose(0, 1, 2, 4, 3, 5, 6)
            .reshape(b, f, gh * gw, p * p * d // 2)
        )
        x = nn.Dense(
            d,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="patch_embed",
            kernel_init=part(xavier, ax.PATCH, ax.EMBED),
            bias_init=part(zeros, ax.EMBED),
        )(x)
        x = x.astype(jnp.float32) + jnp.asarray(sincos_2d(d, gh, gw))  # the float32 residual stream
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.FRAMES, ax.SEQ, ax.EMBED))

        t_in = t if self.time_cond else jnp.zeros_like(t)
        c = TimestepEmbedder(d, dtype=self.dtype, name="t_embed")(t_in)  # (B, F, D)
        if self.num_actions > 0:
            if actions is None or actions.shape != (b, f):
                raise ValueError(
                    f"an action-conditioned denoiser (config.model.action_cond) needs actions (B, F) = "
                    f"{(b, f)}; got {None if actions is None else actions.shape}"
                )
            if self.action_align not in ACTION_ALIGNS:
                raise ValueError(f"config.model.action_align={self.action_align!r}: expected one of {ACTION_ALIGNS}")
            after = actions  # frame f <- actions[f], the move taken after it
            cause = jnp.concatenate([jnp.full((b, 1), self.num_actions, actions.dtype), actions[:, :-1]], 1)
            embeds = {  # name -> (ids, table): "cause" has a learnt NO_ACTION = num_actions for frame 0
                "after": [("action_embed", after, self.num_actions)],
                "cause": [("action_embed", cause, self.num_actions + 1)],
                "both": [("action_embed", after, self.num_actions), ("cause_embed", cause, self.num_actions + 1)],
            }[self.action_align]
            for name, ids, table in embeds:
                c = c + nn.Embed(
                    table,
                    d,
                    embedding_init=part(nn.initializers.normal(0.02), ax.VOCAB, ax.EMBED),
                    param_dtype=self.param_dtype,
                    name=name,
                )(ids).astype(self.dtype)
        c = nn.with_logical_constraint(c, (ax.BATCH, ax.FRAMES, ax.EMBED))
        c_spatial = c[:, :, None, :]  # (B, F, 1, D): one vector per frame, broadcast over patches
        c_temporal = c[:, None, :, :]  # (B, 1, F, D): per-frame modulation inside temporal attention
        temp_embed = jnp.asarray(sincos_1d(d, np.arange(f)))  # float32, added to the residual stream

        pairs = self.depth // 2
        first = (jnp.arange(pairs) == 0).astype(jnp.float32)  # the temporal embedding enters pair 0 only
        pair_kw = dict(
            heads=self.heads,
            mlp_ratio=self.mlp_ratio,
            dtype=self.dtype,
            remat=self.remat,
            remat_policy=self.remat_policy,
            attention=self.attention,
            rope=self.rope,
            grid=(gh, gw),
            barrier=self.fusion_barrier,
        )
        if self.rope not in ROPE_CHOICES:
            raise ValueError(f"config.model.rope={self.rope!r}: expected one of {list(ROPE_CHOICES)}")
        if self.scan:  # one compiled pair, parameters stacked over a leading "layers" axis
            scanned = nn.scan(
                BlockPair,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
                length=pairs,
                metadata_params={nn.PARTITION_NAME: ax.LAYERS},
            )
            x, _ = scanned(**pair_kw, name="pairs")(x, first, c_spatial, c_temporal, temp_embed)
        else:
            for i in range(pairs):
                x, _ = BlockPair(**pair_kw, name=f"pair_{i}")(x, first[i], c_spatial, c_temporal, temp_embed)

        mod = nn.Dense(
            2 * d,
            dtype=self.dtype,
            kernel_init=part(zeros, ax.EMBED, ax.MLP),
            bias_init=part(zeros, ax.MLP),
            name="final_adaLN",
        )(nn.silu(c_spatial))
        shift, scale = jnp.split(mod, 2, axis=-1)
        x = modulate(layer_norm(x).astype(self.dtype), shift, scale)
        if features_only:
            return x
        out = OutputHead(p * p * v_pad, self.dtype, self.head_init_std, name="head")(x)
        out = nn.with_logical_constraint(out, (ax.BATCH, ax.FRAMES, ax.SEQ, ax.VOCAB))
        # Unpatchify: (B, F, N, p*p*V_pad) -> (B, F, H, W, V); channel (py * p + px) * V_pad + v is the
        # logit of token (gy * p + py, gx * p + px) of patch (gy, gx).
        out = out.reshape(b, f, gh, gw, p, p, v_pad).transpose(0, 1, 2, 4, 3, 5, 6)
        logits = out.reshape(b, f, h, w, v_pad)[..., : self.vocab_size]
        return nn.with_logical_constraint(logits, (ax.BATCH, ax.FRAMES, None, None, ax.VOCAB))


@dataclasses.dataclass(frozen=True)
class DenoiserSpec:
    depth: int
    hidden: int
    heads: int


def resolve_size(model_cfg):
    """(depth, hidden, heads) from the preset with config overrides, validated."""
    if model_cfg.size not in PRESETS:
        raise ValueError(f"config.model.size={model_cfg.size!r}: expected one of {list(PRESETS)}")
    depth, hidden, heads = PRESETS[model_cfg.size]
    depth = model_cfg.depth if model_cfg.get("depth") is not None else depth
    hidden = model_cfg.hidden if model_cfg.get("hidden") is not None else hidden
    heads = model_cfg.heads if model_cfg.get("heads") is not None else heads
    if depth < 2 or depth % 2:
        raise ValueError(f"config.model.depth={depth}: blocks come in (spatial, temporal) pairs; use an even number")
    if hidden % heads:
        raise ValueError(f"config.model.hidden={hidden} is not divisible by config.model.heads={heads}")
    if hidden % 4:
        raise ValueError(f"config.model.hidden={hidden} must be divisible by 4 (2-D sin-cos embedding)")
    return DenoiserSpec(depth, hidden, heads)


def make_denoiser(model_cfg, vocab_size, frames=None, grid=None):
    """Builds the Latte denoiser from `config.model` for a vocabulary of `vocab_size` (incl. MASK).

    `frames` and `grid` are accepted for validation: the grid must be divisible by the patch. The
    compute dtype ("auto": `resolve_dtype`) and the attention implementation (`layers.resolve_attention`)
    are resolved here, for the default JAX backend.
    """
    spec = resolve_size(model_cfg)
    if grid is not None and (grid[0] % model_cfg.patch or grid[1] % model_cfg.patch):
        raise ValueError(f"token grid {grid} is not divisible by config.model.patch={model_cfg.patch}")
    dtype = resolve_dtype(model_cfg.dtype)
    attention = resolve_attention(model_cfg.get("attention", "auto"), dtype, spec.hidden // spec.heads)
    return Latte(
        vocab_size=vocab_size,
        hidden=spec.hidden,
        depth=spec.depth,
        heads=spec.heads,
        patch=model_cfg.patch,
        mlp_ratio=model_cfg.mlp_ratio,
        time_cond=bool(model_cfg.time_cond),
        num_actions=model_cfg.num_actions if model_cfg.action_cond else 0,
        dtype=dtype,
        param_dtype=DTYPES[model_cfg.param_dtype],
        attention=attention,
        remat=bool(model_cfg.remat),
        remat_policy=model_cfg.get("remat_policy", "nothing"),
        scan=bool(model_cfg.get("scan_blocks", False)),
        head_init_std=float(model_cfg.get("head_init_std", 0.0)),
        action_align=model_cfg.get("action_align", "after"),
        rope=model_cfg.get("rope", "none"),
        fusion_barrier=bool(model_cfg.get("fusion_barrier", True)),
    )


def init_params(model, rng, frames, grid):
    """The (boxed, logically named) parameters of `model` for clips of `frames` frames of a `grid` token
    grid: the one place that knows Latte.init's dummy inputs (tokens (1, F, H, W), t (1, F), actions)."""
    tokens = jnp.zeros((1, frames, *grid), jnp.int32)
    t = jnp.ones((1, frames), jnp.float32)
    actions = jnp.zeros((1, frames), jnp.int32) if model.num_actions else None
    return model.init(rng, tokens, t, actions=actions)["params"]
