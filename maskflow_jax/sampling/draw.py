"""Categorical draws at selected positions only, equal bit for bit to `jax.random.categorical` on all of them.

A sampler step draws a candidate token at every one of the B*F*H*W positions of its (B, F, H, W, V) logits
(a Gumbel-max over V classes, i.e. B*F*H*W*V random numbers), but uses only some: the FM sampler the
positions that jump at this step (a few percent), the MGM sampler the positions still masked. On a CPU the
threefry bits of the full draw are most of the sampler's cost beside the forward (docs/performance.md §3).

With JAX's partitionable threefry (`jax_threefry_partitionable`, the default since JAX 0.5), the random
bits of element i of a draw of shape S are threefry2x32(key, hi(i), lo(i)) with i the flat (64-bit) index
into S, whatever S's other elements are. So the Gumbel noise of row p of logits (..., V) reshaped to (N, V)
is the one computed from counters p*V .. p*V + V - 1, and `categorical_at` draws exactly the values that
`jax.random.categorical(key, logits)` would give at those rows, without the others. `map_selected_rows`
runs a row function on the selected rows gathered to a static capacity (falling back to all rows when more
are selected), so the samplers' outputs for a key do not change.

The equivalence rests on JAX internals (the bit layout and the uniform/Gumbel transforms of jax.random). It
is checked once per process against `jax.random.categorical` (`gathered_draw_supported`); where it does not
hold (another PRNG implementation, the partitionable flag off, a JAX release that changed the transforms),
every draw falls back to the full `jax.random.categorical`, which is always correct.

Two things make these draws several times cheaper than `jax.random.categorical` on XLA:CPU, with the same
values (docs/performance.md §3): the threefry hash is written out as one elementwise expression
(`threefry2x32`; JAX's CPU lowering runs its five rounds as a loop over whole arrays, ~10x slower), and the
Gumbel-max is taken with `lax.top_k(., 1)` on CPUs (XLA:CPU fuses the Gumbel transform's two logarithms into
the argmax reduction, where they run scalar; top-k reads a materialised array and breaks ties towards the
lower index, as argmax does). Other platforms take the argmax.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

_MASK16 = np.uint32(0xFFFF)


def mul_u32_wide(a, b):
    """Full 64-bit product of uint32 arrays a, b as (hi, lo) uint32 arrays (no x64 needed)."""
    a0, a1 = a & _MASK16, a >> 16
    b0, b1 = b & _MASK16, b >> 16
    low = a0 * b0
    mid1, mid2 = a1 * b0, a0 * b1
    hi = a1 * b1 + (mid1 >> 16) + (mid2 >> 16)
    lo = low + (mid1 << 16)
    hi = hi + (lo < low).astype(jnp.uint32)
    lo2 = lo + (mid2 << 16)
    hi = hi + (lo2 < lo).astype(jnp.uint32)
    return hi, lo2


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v, r):
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(k1, k2, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al., SC 2011) of counters (x0, x1) under key (k1, k2), the hash
    that JAX's default PRNG uses, as one elementwise expression. k1, k2: () uint32; x0, x1: uint32 arrays of one
    shape. Returns the two output words (uint32 arrays of that shape)."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _first_argmax(y):
    """Index of the first maximum over the last axis of y (..., V) without NaN: jnp.argmax, as `lax.top_k` on CPUs."""
    return jax.lax.platform_dependent(
        y,
        cpu=lambda y: jax.lax.top_k(y, 1)[1][..., 0],
        default=lambda y: jnp.argmax(y, axis=-1),
    ).astype(jnp.int32)


def _gumbel_from_bits(bits, dtype):
    """jax.random.gumbel's default ("low") transform of 32 random bits, as jax.random._uniform writes it."""
    finfo = jnp.finfo(dtype)
    minval, maxval = jnp.asarray(finfo.tiny, dtype), jnp.asarray(1.0, dtype)
    float_bits = (bits >> np.uint32(32 - finfo.nmant)) | np.asarray(1.0, np.float32).view(np.uint32)
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.asarray(1.0, dtype)
    u = jax.lax.max(minval, floats * (maxval - minval) + minval)
    return -jnp.log(-jnp.log(u))


def categorical_at(key, logits_rows, rows):
    """The draws of jax.random.categorical(key, logits) at the given rows, without the others.

    key: typed threefry key; logits_rows: (C, V) float32, rows `rows` of logits reshaped to (N, V); rows: (C,)
    int32 flat row indices (any value; padding rows give values that are not used). Returns (C,) int32.
    """
    n_class = logits_rows.shape[-1]
    k1, k2 = jax.random.key_data(key)
    base_hi, base_lo = mul_u32_wide(rows.astype(jnp.uint32), jnp.uint32(n_class))  # (C,)
    offs = jnp.arange(n_class, dtype=jnp.uint32)
    lo = base_lo[:, None] + offs[None, :]
    hi = base_hi[:, None] + (lo < base_lo[:, None]).astype(jnp.uint32)
    bits1, bits2 = threefry2x32(k1, k2, hi, lo)
    return _first_argmax(_gumbel_from_bits(bits1 ^ bits2, logits_rows.dtype) + logits_rows)


def _eligible(key, logits_dtype):
    if not jax.config.jax_threefry_partitionable:
        return False
    if not jnp.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key):
        return False
    return str(jax.random.key_impl(key)) == "threefry2x32" and jnp.dtype(logits_dtype) == jnp.float32


@functools.cache
def gathered_draw_supported():
    """Whether `categorical_at` equals jax.random.categorical in this JAX (checked once, on small arrays)."""
    with jax.ensure_compile_time_eval():
        key = jax.random.key(7)
        logits = 3.0 * jax.random.normal(jax.random.key(1), (3, 5, 37), jnp.float32)
        full = np.asarray(jax.random.categorical(key, logits)).reshape(-1)
        rows = jnp.asarray([14, 0, 9, 3, 14], jnp.int32)
        part = np.asarray(categorical_at(key, logits.reshape(-1, 37)[rows], rows))
    return bool(np.array_equal(full[np.asarray(rows)], part))


def can_gather(key, logits_dtype=jnp.float32):
    """True when draws at selected rows reproduce jax.random.categorical for this key and dtype."""
    return _eligible(key, logits_dtype) and gathered_draw_supported()


def draw_rows(key, rows_logits, rows):
    """Row function helper: categorical_at at flat `rows`, or jax.random.categorical on all rows when rows is None."""
    if rows is None:
        return jax.random.categorical(key, rows_logits).astype(jnp.int32)
    return categorical_at(key, rows_logits, rows)


def map_selected_rows(fn: Callable, logits, select, capacities):
    """Applies a row function to the rows of `logits` where `select` holds; returns its outputs at every position.

    logits: (..., V); select: (...) bool. fn(rows_logits (C, V), rows (C,) int32 flat indices, or None for all
    rows in order) -> pytree of (C,) arrays. capacities: None runs fn once on all N = select.size rows with
    rows=None (the reference path); otherwise static increasing row counts tried in order (each below N), and
    when more rows are selected than the largest (or capacities is empty), fn runs on all rows with
    rows = arange(N).
    Returns the pytree of (...)-shaped arrays, fn's values at selected positions and unspecified elsewhere.
    """
    shape = select.shape
    n = int(np.prod(shape))
    flat_logits = logits.reshape(n, logits.shape[-1])
    if capacities is None:
        return jax.tree.map(lambda x: x.reshape(shape), fn(flat_logits, None))
    flat_select = select.reshape(n)
    caps = [int(c) for c in capacities if 0 < int(c) < n]
    if caps != sorted(set(caps)):
        raise ValueError(f"capacities={capacities}: expected increasing row counts")

    def full():
        return jax.tree.map(lambda x: x.reshape(shape), fn(flat_logits, jnp.arange(n, dtype=jnp.int32)))

    def gathered(cap):
        def branch():
            rows = jnp.nonzero(flat_select, size=cap, fill_value=n)[0].astype(jnp.int32)  # (cap,), n = padding
            out = fn(flat_logits[jnp.minimum(rows, n - 1)], rows)
            return jax.tree.map(lambda x: jnp.zeros((n,), x.dtype).at[rows].set(x, mode="drop").reshape(shape), out)

        return branch

    if not caps:
        return full()
    count = jnp.sum(flat_select.astype(jnp.int32))
    index = jnp.sum((count > jnp.asarray(caps)).astype(jnp.int32))  # first capacity that holds the rows
    return jax.lax.switch(index, [gathered(c) for c in caps] + [full])


# Below this many random numbers per full draw (N rows x V classes) gathering does not pay for its compile time.
MIN_GATHER_DRAWS = 1 << 20


def default_capacities(n, n_class, fractions=(1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4)):
    """Capacities for `map_selected_rows` over n rows of n_class logits: the given fractions of n, rounded up to
    multiples of 8; none (always draw all rows) when n * n_class < MIN_GATHER_DRAWS."""
    if n * n_class < MIN_GATHER_DRAWS:
        return ()
    caps = sorted({min(n, -(-int(np.ceil(f * n)) // 8) * 8) for f in fractions})
    return tuple(c for c in caps if c < n)
