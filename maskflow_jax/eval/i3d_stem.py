"""Faster exact forms of I3D's stem (`Conv3d_1a_7x7`: 7x7x7, stride 2, TF "SAME", C = 3 -> 64).

XLA:CPU's direct convolution reaches a few % of the matmul peak on three input channels, and the stem was
over half of the network's time (docs/performance.md §2, §5). Two equivalent forms, same parameter
("kernel" (7, 7, 7, 3, 64)) and the same function up to the summation order:

- `SpaceToDepthConv`: the stride-2 conv as a stride-1 conv over 2x2x2 space-to-depth blocks (24 channels).
- `ResizedStemConv`: the conv of a bilinearly *upsampled* frame, computed from the small frame. Scoring
  32x32 or 64x64 frames, I3D first resizes them to 224x224 (eval/i3d.preprocess); the resize and the
  conv are both linear, and their composite is periodic: output rows oy and oy + P read input rows
  D apart with the same weights (P = 224 / gcd(224, 2h), D = 2Ph / 224, e.g. P = 7, D = 2 at h = 32).
  So each of the P x P output phases is a small stride-D conv of the small frame, and stacking the
  phases on the output channels makes one conv (kernel (7, K, K, 3, P * P * 64), K ~ 5 at h = 32)
  and a depth-to-space. The bilinear resize clamps at the frame's border, which is the same as
  replicating the edge pixels; the few output rows and columns whose taps reach the conv's zero
  padding (0, 110 and 111 at 224) are not periodic and are computed directly from their resized strip.

Shapes: B videos, T frames, H x W pixels, C channels; outputs (B, ceil(T / 2), 112, 112, 64) at 224.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST
_DN = ("NDHWC", "DHWIO", "NDHWC")
MAX_PERIOD = 8  # ResizedStemConv applies when the composite's period is at most this (h a multiple of 14 or 16)


def same_pad_before(size, kernel, stride):
    """TF "SAME" padding before one axis (ceil(size / stride) outputs; an odd total puts the extra one after)."""
    out = -(-size // stride)
    return max((out - 1) * stride + kernel - size, 0) // 2


def same_pads(size, kernel, stride):
    """(before, after) TF "SAME" padding of one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def reshape_keep_batch(x, shape):
    """Reshape that keeps the leading batch axis and its sharding (an explicitly sharded batch, as
    `i3d_features` gets from a mesh with Explicit axes, needs the output sharding spelt out)."""
    sharding = jax.typeof(x).sharding
    spec = tuple(getattr(sharding, "spec", ()) or ())
    if not spec or all(a is None for a in spec):
        return x.reshape(shape)
    out = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[0]))
    return jax.lax.reshape(x, shape, out_sharding=out)


class SpaceToDepthConv(nn.Module):
    """A stride-2 TF-"SAME" 3-D conv without bias, computed as a stride-1 conv on 2x2x2 space-to-depth blocks.

    The same function as `nn.Conv(features, kernel, (2, 2, 2), padding="SAME", use_bias=False)` with the same
    parameter ("kernel" (kt, kh, kw, C, features)); only the summation order differs. The blocked form has
    8C = 24 input channels and ran 2.1x faster than the direct conv on a 2-core CPU.
    """

    features: int
    kernel: tuple = (7, 7, 7)

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        w = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel, c, self.features))
        pads = [(0, 0)]
        for size, k in zip(x.shape[1:4], self.kernel):
            before = same_pad_before(size, k, 2)
            out = -(-size // 2)
            blocks = out + (k + 1) // 2 - 1  # output o reads blocks o .. o + ceil(k / 2) - 1
            pads.append((before, 2 * blocks - size - before))
        x = jnp.pad(x, pads + [(0, 0)])
        b, t, h, wd = x.shape[0], x.shape[1] // 2, x.shape[2] // 2, x.shape[3] // 2
        x = reshape_keep_batch(x, (b, t, 2, h, 2, wd, 2, c)).transpose(0, 1, 3, 5, 2, 4, 6, 7)
        x = reshape_keep_batch(x, (b, t, h, wd, 8 * c))
        kb = tuple((k + 1) // 2 for k in self.kernel)  # kernel in blocks (zero-padded to an even size)
        w = jnp.pad(w, [(0, 2 * n - k) for n, k in zip(kb, self.kernel)] + [(0, 0), (0, 0)])
        w = w.reshape(kb[0], 2, kb[1], 2, kb[2], 2, c, self.features).transpose(0, 2, 4, 1, 3, 5, 6, 7)
        w = w.reshape(*kb, 8 * c, self.features)
        return jax.lax.conv_general_dilated(x, w, (1, 1, 1), "VALID", dimension_numbers=_DN, precision=_HIGHEST)


# --- the stem of an upsampled frame ---------------------------------------------------------------


def resize_period(side, size):
    """(P, D): output rows oy and oy + P of a stride-2 conv on `side` pixels upsampled to `size` read
    input rows D apart with the same weights."""
    g = math.gcd(size, 2 * side)
    return size // g, 2 * side // g


def fits_resized_stem(side, size, kernel=7):
    """Whether `ResizedStemConv` applies: upsampling (side < size), a short period, whole periods."""
    if side >= size or size % 2:
        return False
    p, _ = resize_period(side, size)
    return p <= MAX_PERIOD and (size // 2) % p == 0 and size // 2 >= 2 * p + kernel


@functools.cache
def _resize_matrix(side, size):
    """(size, side) float32 R with resize(x) = R @ x along one axis: jax.image.resize's own weights
    (bilinear, half-pixel centres, no antialias), read off by resizing the identity."""
    with jax.ensure_compile_time_eval():
        eye = jnp.eye(side, dtype=jnp.float32)
        r = jax.image.resize(eye, (size, side), "bilinear", antialias=False)
    return np.asarray(r, np.float32)


@functools.cache
def _axis_plan(side, size, kernel=7):
    """How one spatial axis of `resized_stem` is computed: (base, k, pad, segments).

    Output o = P*q + p (phase p of block q) reads small-frame pixels D*q + base + a (a < k) of the frame
    zero-padded by pad = (before, after). segments: [(q0, q1, w)] contiguous block ranges that share the
    weights w (P, kernel, k): the weight of pixel a in the resized pixel that tap d of phase p reads, taken
    from jax.image.resize's own matrix, 0 where the tap is the conv's zero padding. Interior blocks are one
    segment; the first and last block (the border clamp, the conv's padding) are their own."""
    r = _resize_matrix(side, size)
    p_, d_ = resize_period(side, size)
    q_n = size // 2 // p_
    before = same_pad_before(size, kernel, 2)
    rows = np.array([[[2 * (p_ * q + p) + d - before for d in range(kernel)] for p in range(p_)] for q in range(q_n)])
    valid = (rows >= 0) & (rows < size)
    hit = [np.nonzero(r[row])[0] - d_ * q for q in range(q_n) for row in rows[q][valid[q]].ravel()]
    base = min(int(i.min()) for i in hit if len(i))
    k = max(int(i.max()) for i in hit if len(i)) - base + 1
    w = np.zeros((q_n, p_, kernel, k), np.float32)
    for q in range(q_n):
        for p in range(p_):
            for d in range(kernel):
                if valid[q, p, d]:
                    lo = d_ * q + base
                    cols = np.arange(lo, lo + k)
                    ok = (cols >= 0) & (cols < side)
                    w[q, p, d, ok] = r[rows[q, p, d], cols[ok]]
    segments = []
    for q in range(q_n):  # equal up to float rounding of the resize's sample positions
        if segments and np.allclose(w[q], segments[-1][2], rtol=0, atol=1e-5):
            segments[-1] = (segments[-1][0], q + 1, segments[-1][2])
        else:
            segments.append((q, q + 1, w[q]))
    pad = (max(0, -base), max(0, d_ * (q_n - 1) + base + k - side))
    return base, k, pad, tuple(segments)


def _patches(x, kt, k, d_, pt, pad):
    """(B, T', Q, Q, kt * k * k * C) windows of the zero-padded small frames: time stride 2, space stride D."""
    x = jnp.pad(x, [(0, 0), pt, pad, pad, (0, 0)])
    t_out = (x.shape[1] - kt) // 2 + 1
    q_n = (x.shape[2] - k) // d_ + 1

    def taps(x, axis, n, stride, count):
        out = [jax.lax.slice_in_dim(x, a, a + stride * (count - 1) + 1, stride, axis) for a in range(n)]
        return jnp.stack(out, axis=-2)  # the tap next to the channels: (..., taps, C') then merged

    for axis, n, stride, count in ((3, k, d_, q_n), (2, k, d_, q_n), (1, kt, 2, t_out)):
        y = taps(x, axis, n, stride, count)
        x = reshape_keep_batch(y, (*y.shape[:-2], y.shape[-2] * y.shape[-1]))
    return x  # the last axis is (t, a, b, C) in that order: each stage puts its taps in front


def resized_stem(w, x, size):
    """conv_SAME_stride2(resize(x, size)) for a stem kernel w (kt, 7, 7, C, O) and small frames x
    (B, T, h, h, C) with `fits_resized_stem(h, size)`: (B, ceil(T / 2), size / 2, size / 2, O)."""
    b, t, h, wd, c = x.shape
    kt, kh, kw, _, o = w.shape
    if h != wd or kh != kw or not fits_resized_stem(h, size, kh):
        raise ValueError(f"resized_stem needs square frames that fit_resized_stem; got {x.shape}, kernel {w.shape}")
    p_, d_ = resize_period(h, size)
    base, k, pad, segments = _axis_plan(h, size, kh)
    pm = _patches(x, kt, k, d_, same_pads(t, kt, 2), pad)  # (B, T', Q, Q, kt * k * k * C)
    rows = []
    for qy0, qy1, wy in segments:
        cols = []
        for qx0, qx1, wx in segments:
            kern = jnp.einsum("tdecO,pda,reb->tabcprO", w, wy, wx, precision=_HIGHEST)
            kern = kern.reshape(kt * k * k * c, p_ * p_ * o)
            cols.append(jnp.einsum("btyxk,kO->btyxO", pm[:, :, qy0:qy1, qx0:qx1], kern, precision=_HIGHEST))
        rows.append(jnp.concatenate(cols, axis=3))
    y = jnp.concatenate(rows, axis=2)  # (B, T', Q, Q, P * P * O)
    tt, q_n, n = y.shape[1], y.shape[2], size // 2
    y = reshape_keep_batch(y, (b, tt, q_n, q_n, p_, p_, o)).transpose(0, 1, 2, 4, 3, 5, 6)
    return reshape_keep_batch(y, (b, tt, n, n, o))


class ResizedStemConv(nn.Module):
    """The stride-2 TF-"SAME" stem conv of frames bilinearly resized to size x size, from the small frames
    (B, T, h, h, C): `resized_stem` with the stem's parameter ("kernel" (kt, kh, kw, C, features))."""

    features: int
    kernel: tuple = (7, 7, 7)
    size: int = 224

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel, x.shape[-1], self.features))
        return resized_stem(w, x, self.size)
