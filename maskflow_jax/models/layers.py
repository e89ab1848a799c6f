"""Building blocks of the discrete Latte denoiser (docs/method.md §5): fixed sin-cos embeddings, the
timestep embedder, attention (an explicit einsum, or `jax.nn.dot_product_attention` with the XLA or
cuDNN implementation: `config.model.attention`), and the adaLN-Zero block.

Shapes: x (..., L, D) sequences of length L (L = N patches for a spatial block, F frames for a
temporal block), modulation vectors broadcastable to x.

Mixed precision (`config.model.dtype=bfloat16`): the residual stream x stays float32; each block
feeds attention and the MLP a layer-normed copy in the compute dtype and adds their outputs back
in float32, so the sum over 2 x depth blocks is not rounded to bf16 at every block.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.parallel import axes as ax

xavier = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros


def part(init, *names):
    return nn.with_logical_partitioning(init, names)


def sincos_1d(dim, positions):
    """[sin(pos w_k), cos(pos w_k)] with w_k = 10000^(-k / (dim/2)), k < dim/2 -> (len, dim) float32."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.asarray(positions, np.float64)[:, None] * omega[None]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1).astype(np.float32)


def sincos_2d(dim, grid_h, grid_w):
    """MAE 2-D sin-cos embedding (N = grid_h * grid_w row-major, dim): the first dim/2 channels
    encode the column index, the last dim/2 the row index (docs/method.md §5.2)."""
    rows, cols = grid_positions(grid_h, grid_w).T
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)


ROPE_BASE = 100.0  # rotary base: grids and clips are tens of positions long, so the fast frequencies matter


def rope_tables(head_dim, positions):
    """Rotary position tables for integer positions (L, A) on A axes (A = 1: frames, 2: grid rows and
    columns): (cos, sin), each (L, head_dim / 2) float32. The head dim's pairs are split evenly over the
    axes; axis a's pairs rotate by pos_a * ROPE_BASE^(-k / n) for k < n = head_dim / (2 A)."""
    positions = np.asarray(positions, np.float64)
    n_axes = positions.shape[1]
    if head_dim % (2 * n_axes):
        raise ValueError(
            f"rotary embedding over {n_axes} axes needs a head dim (config.model.hidden / config.model.heads) "
            f"divisible by {2 * n_axes}; got {head_dim}"
        )
    n = head_dim // (2 * n_axes)
    omega = ROPE_BASE ** (-np.arange(n, dtype=np.float64) / n)
    angles = np.concatenate([positions[:, a : a + 1] * omega[None] for a in range(n_axes)], axis=1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def grid_positions(grid_h, grid_w):
    """(row, column) of each of the N = grid_h * grid_w patches, row-major: (N, 2)."""
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    return np.stack([rows.reshape(-1), cols.reshape(-1)], axis=1)


def apply_rope(x, tables):
    """Rotates x (M, L, heads, dh) by the tables (cos, sin) of `rope_tables` (L, dh / 2): the pair
    (x[..., k], x[..., k + dh/2]) turns by angle k. Computed in float32, returned in x's dtype."""
    cos, sin = (jnp.asarray(t)[None, :, None, :] for t in tables)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def timestep_features(t, dim=256, max_period=10000.0):
    """DiT sinusoid with cos first, t in [0, 1] not rescaled (docs/method.md §5.2, §11): (..., dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[..., None].astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nn.Module):
    """t (B, F) -> (B, F, D): sinusoid(256) -> Linear -> SiLU -> Linear, weights N(0, 0.02)."""

    hidden: int
    freq_dim: int = 256
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, t):
        init = nn.initializers.normal(0.02)
        x = timestep_features(t, self.freq_dim)
        x = nn.Dense(
            self.hidden,
            dtype=self.dtype,
            kernel_init=part(init, ax.FREQ, ax.EMBED),
            bias_init=part(zeros, ax.EMBED),
            name="mlp_in",
        )(x)
        x = nn.silu(x)
        return nn.Dense(
            self.hidden,
            dtype=self.dtype,
            kernel_init=part(init, ax.EMBED, ax.MLP),
            bias_init=part(zeros, ax.MLP),
            name="mlp_out",
        )(x)


def layer_norm(x, eps=1e-6):
    """LayerNorm without affine parameters, computed in fp32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def _materialise(x):
    """x (..., D) copied through a gather over its last axis: an exact copy that XLA classes as
    expensive, so its fusion pass will not duplicate (recompute) what produced x into every user."""
    return jnp.take(x, jnp.arange(x.shape[-1]), axis=-1)


@jax.custom_vjp
def fusion_barrier(x):
    """Identity on the residual stream x (..., D), there to stop XLA:CPU from recomputing it.

    Under differentiation XLA:CPU fuses the elementwise chain of the residual stream (the
    residual adds and adaLN gates of every earlier block in the forward, and of every later block
    in the cotangent) into each backward fusion that reads it: each block's gradient re-evaluates
    the chain of all the others, a cost quadratic in depth (docs/performance.md: 13x the forward
    at Latte-S/2). Only the differentiated path changes: its forward and backward materialise the
    value and the cotangent through `_materialise` (an exact copy), so values are unchanged. A
    plain forward (sampling) is the identity. `lax.optimization_barrier` does not help here:
    XLA:CPU removes it before fusion.
    """
    return x


def _fusion_barrier_fwd(x):
    return _materialise(x), None


def _fusion_barrier_bwd(_, g):
    return (_materialise(g),)


fusion_barrier.defvjp(_fusion_barrier_fwd, _fusion_barrier_bwd)


def _sum_to(g, x, shape):
    """sum over the axes where `shape` is 1 and x is not of g * x, as an einsum -> `shape`."""
    letters = "abcdefghijklmnopqrstuvw"[: g.ndim]
    keep = "".join(c for c, n, m in zip(letters, shape, x.shape) if not (n == 1 and m != 1))
    return jnp.einsum(f"{letters},{letters}->{keep}", g, x).reshape(shape)


def bcast_mul(x, s):
    """x * s for s broadcast over some axes of x (an adaLN scale or gate: (B, F, 1, D) against
    (B, F, N, D)). The same product; the backward sums s's gradient as an einsum, not as
    reduce(multiply) over a non-minor axis, which XLA:CPU's YNNPACK path runs ~30x slower at some
    shapes (5.3 ms vs 0.16 ms for (1, 64, 16, 384) -> (1, 1, 16, 384); docs/performance.md)."""
    if s.ndim > x.ndim or jnp.broadcast_shapes(x.shape, s.shape) != x.shape:
        return x * s
    return _bcast_mul(x, s.reshape((1,) * (x.ndim - s.ndim) + s.shape)).astype(jnp.result_type(x, s))


@jax.custom_vjp
def _bcast_mul(x, s):
    return x * s


def _bcast_mul_fwd(x, s):
    return x * s, (x, s)


def _bcast_mul_bwd(res, g):
    x, s = res
    return g * s, _sum_to(g, x, s.shape).astype(s.dtype)


_bcast_mul.defvjp(_bcast_mul_fwd, _bcast_mul_bwd)


def modulate(x, shift, scale):
    """x * (1 + scale) + shift, with the scale/shift vectors broadcast over x's token axis."""
    return bcast_mul(x, 1 + scale) + shift


class Attention(nn.Module):
    """Full bidirectional multi-head attention over the L axis of x (..., L, D); qkv and proj with bias.
    impl: "einsum" | "xla" | "cudnn" (already resolved, see `resolve_attention`). `rope`: None, or the
    (cos, sin) tables of `rope_tables` for the L positions, applied to queries and keys."""

    heads: int
    dtype: jnp.dtype = jnp.float32
    impl: str = "einsum"

    @nn.compact
    def __call__(self, x, rope=None):
        lead, (seq, d) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, seq, d)  # (M, L, D)
        dh = d // self.heads

        def proj(name):
            return nn.Einsum(
                (d, self.heads, dh),
                "mld,dhk->mlhk",
                dtype=self.dtype,
                name=name,
                kernel_init=part(xavier_heads, ax.EMBED, ax.HEADS, ax.KV),
                bias_init=part(zeros, ax.HEADS, ax.KV),
            )(x)

        q, k, v = (
            nn.with_logical_constraint(proj(n), (ax.BATCH, None, ax.HEADS, ax.KV)) for n in ("query", "key", "value")
        )
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = attention(q, k, v, self.impl)  # (M, L, heads, dh); scale dh^-1/2
        out = nn.Einsum(
            (self.heads, dh, d),
            "mlhk,hkd->mld",
            dtype=self.dtype,
            name="out",
            kernel_init=part(xavier_heads_out, ax.HEADS, ax.KV, ax.EMBED),
            bias_init=part(zeros, ax.EMBED),
        )(out)
        return out.reshape(*lead, seq, d)


ATTENTION_CHOICES = ("auto", "xla", "cudnn", "einsum")  # config.model.attention
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)  # cuDNN flash attention's input dtypes (fp8 aside)


def _is_cuda():
    try:
        import jax.extend  # noqa: PLC0415 - not imported by `import jax`

        return "cuda" in jax.extend.backend.get_backend().platform_version.lower()
    except Exception:  # noqa: BLE001 - an unknown GPU runtime: treat as no cuDNN
        return False


def cudnn_head_dim_max():
    """Largest head dim cuDNN flash attention takes: 256 on Hopper (compute capability 9.0) or later, else 128."""
    try:
        major = int(str(jax.devices()[0].compute_capability).split(".")[0])
    except Exception:  # noqa: BLE001 - no compute capability (not a CUDA device)
        return 128
    return 256 if major >= 9 else 128


def cudnn_problem(dtype, head_dim, backend=None, head_dim_max=None):
    """Why cuDNN flash attention cannot run here (a sentence), or None if it can.

    Its conditions (jax.nn.dot_product_attention, implementation="cudnn", no bias or mask): bfloat16
    or float16 inputs, a head dim that is a multiple of 8 and <= 128 (256 on Hopper), a CUDA GPU.
    """
    if jnp.dtype(dtype) not in [jnp.dtype(d) for d in CUDNN_DTYPES]:
        return (
            f"cuDNN flash attention takes bfloat16 or float16 inputs, and config.model.dtype resolves to "
            f"{jnp.dtype(dtype).name}"
        )
    limit = head_dim_max or cudnn_head_dim_max()
    if head_dim % 8 or head_dim > limit:
        return (
            f"cuDNN flash attention needs a head dim (config.model.hidden / config.model.heads) that is a "
            f"multiple of 8 and <= {limit}; got {head_dim}"
        )
    backend = backend or jax.default_backend()
    if backend != "gpu" or not _is_cuda():
        return f"cuDNN needs an NVIDIA GPU, and the JAX backend here is {backend!r}"
    return None


def resolve_attention(choice, dtype, head_dim, backend=None):
    """config.model.attention -> the implementation `attention` runs: "einsum" | "xla" | "cudnn".

    auto: cuDNN flash attention on a CUDA GPU when `cudnn_problem` finds none, XLA's
    dot_product_attention on other accelerators (TPU, or a GPU where cuDNN cannot run), and the
    explicit einsum on CPU (XLA:CPU's dot_product_attention backward was ~3x slower, see `attention`).
    A forced "cudnn" that cannot run raises a ValueError naming config.model.attention.
    """
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"config.model.attention={choice!r}: expected one of {list(ATTENTION_CHOICES)}")
    backend = backend or jax.default_backend()
    if choice == "auto":
        if backend == "cpu":
            return "einsum"
        return "cudnn" if cudnn_problem(dtype, head_dim, backend) is None else "xla"
    if choice == "cudnn":
        problem = cudnn_problem(dtype, head_dim, backend)
        if problem is not None:
            raise ValueError(
                f"config.model.attention='cudnn' cannot run: {problem}. Use "
                "--config.model.attention=auto (cuDNN where it can run) or xla"
            )
    return choice


def attention(q, k, v, impl="einsum"):
    """Softmax attention (M, L, heads, dh) -> (M, L, heads, dh), scale dh^-1/2.

    impl "xla" / "cudnn": `jax.nn.dot_product_attention` with that implementation (cuDNN: the fused
    flash-attention kernel). "einsum": an explicit einsum/softmax (softmax in float32), the CPU
    choice: XLA:CPU's lowering of dot_product_attention made the denoiser's backward pass ~3x slower
    there (benchmarks/denoiser.py; 13.4 s vs 4.3 s per Latte-S/2 gradient).
    """
    if impl in ("xla", "cudnn"):
        return jax.nn.dot_product_attention(q, k, v, implementation=impl)
    if impl != "einsum":
        raise ValueError(f"attention implementation {impl!r}: expected einsum, xla or cudnn (config.model.attention)")
    scores = jnp.einsum("mqhd,mkhd->mhqk", q, k) / math.sqrt(q.shape[-1])
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("mhqk,mkhd->mqhd", weights, v)


def xavier_heads(key, shape, dtype=jnp.float32):
    """Xavier-uniform of the fused PyTorch qkv Linear (D -> 3D), viewed as (D, heads, dh)."""
    d_in, heads, dh = shape
    limit = math.sqrt(6.0 / (d_in + 3 * heads * dh))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def xavier_heads_out(key, shape, dtype=jnp.float32):
    """Xavier-uniform of the (D -> D) output projection, viewed as (heads, dh, D)."""
    heads, dh, d_out = shape
    limit = math.sqrt(6.0 / (heads * dh + d_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


class Mlp(nn.Module):
    """Linear(D -> r D) -> GELU(tanh) -> Linear(r D -> D)."""

    ratio: float = 4.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        h = nn.Dense(
            int(d * self.ratio),
            dtype=self.dtype,
            kernel_init=part(xavier, ax.EMBED, ax.MLP),
            bias_init=part(zeros, ax.MLP),
            name="fc1",
        )(x)
        h = nn.gelu(h, approximate=True)
        return nn.Dense(
            d, dtype=self.dtype, kernel_init=part(xavier, ax.MLP, ax.EMBED), bias_init=part(zeros, ax.EMBED), name="fc2"
        )(h)


class AdaLNBlock(nn.Module):
    """adaLN-Zero transformer block over the L axis of x (M, L, D) (docs/method.md §5.5); x and the
    result in float32 (the residual stream), attention and MLP in `dtype`.

    c: conditioning broadcastable to (M, L, D) after the 6D projection, e.g. (M, 1, D) for a
    spatial block (one vector per frame) or (M, L, D) for a temporal block (one per frame).
    rope: None or rotary tables for the L positions (`Attention`). barrier: put `fusion_barrier` on
    the residual stream (the same values either way; only XLA:CPU's speed differs, see `fusion_barrier`).
    """

    heads: int
    mlp_ratio: float = 4.0
    dtype: jnp.dtype = jnp.float32
    attention: str = "einsum"
    barrier: bool = True  # `fusion_barrier` on the residual stream (config.model.fusion_barrier)

    @nn.compact
    def __call__(self, x, c, rope=None):
        d = x.shape[-1]
        mod = nn.Dense(
            6 * d,
            dtype=self.dtype,
            kernel_init=part(zeros, ax.EMBED, ax.MLP),
            bias_init=part(zeros, ax.MLP),
            name="adaLN",
        )(nn.silu(c))
        mod = nn.with_logical_constraint(mod, (ax.BATCH,) + (None,) * (mod.ndim - 2) + (ax.MLP,))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)
        stream = fusion_barrier if self.barrier else (lambda y: y)
        x = stream(x)  # x: the residual stream, float32 whatever the compute dtype
        x = x + bcast_mul(
            Attention(self.heads, dtype=self.dtype, impl=self.attention, name="attn")(
                modulate(layer_norm(x).astype(self.dtype), shift_msa, scale_msa), rope
            ),
            gate_msa,
        )
        x = stream(x)
        x = x + bcast_mul(
            Mlp(self.mlp_ratio, dtype=self.dtype, name="mlp")(
                modulate(layer_norm(x).astype(self.dtype), shift_mlp, scale_mlp)
            ),
            gate_mlp,
        )
        return x
