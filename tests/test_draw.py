"""Candidate draws at selected positions (sampling/draw.py) equal jax.random.categorical's, and the samplers'
tokens do not change with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskflow_jax.sampling import draw
from maskflow_jax.sampling.fm import fm_sample
from maskflow_jax.sampling.mgm import mgm_sample

V = 37
MASK = V - 1


def test_wide_multiply_matches_uint64():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 4096, dtype=np.uint64)
    b = rng.integers(0, 2**32, 4096, dtype=np.uint64)
    a[:3], b[:3] = 2**32 - 1, [2**32 - 1, 1, 0]
    hi, lo = draw.mul_u32_wide(jnp.asarray(a.astype(np.uint32)), jnp.asarray(b.astype(np.uint32)))
    got = (np.asarray(hi).astype(np.uint64) << np.uint64(32)) | np.asarray(lo).astype(np.uint64)
    np.testing.assert_array_equal(got, a * b)


# Known-answer vectors of Threefry-2x32-20 (Salmon et al., SC 2011): (key, counter) -> output words.
_THREEFRY_KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("key, counter, expected", _THREEFRY_KAT)
def test_threefry_known_answers(key, counter, expected):
    k1, k2 = (np.uint32(k) for k in key)
    x0, x1 = (jnp.asarray([c], jnp.uint32) for c in counter)
    got = draw.threefry2x32(k1, k2, x0, x1)
    assert [int(g[0]) for g in got] == list(expected)


def test_threefry_gives_jax_random_bits():
    key = jax.random.key(42)
    shape = (3, 1000)
    lo = jnp.arange(3000, dtype=jnp.uint32).reshape(shape)
    b1, b2 = draw.threefry2x32(*jax.random.key_data(key), jnp.zeros_like(lo), lo)
    np.testing.assert_array_equal(np.asarray(b1 ^ b2), np.asarray(jax.random.bits(key, shape)))


def test_first_argmax_breaks_ties_like_argmax():
    y = jnp.asarray(np.random.default_rng(0).integers(0, 3, (64, 9)), jnp.float32)  # many ties
    y = y.at[:8].set(-jnp.inf).at[:8, 5].set(0.0).at[8:12].set(2.0)  # -inf rows with one finite class; all equal
    np.testing.assert_array_equal(np.asarray(jax.jit(draw._first_argmax)(y)), np.asarray(jnp.argmax(y, axis=-1)))


def test_the_check_against_jax_passes_here():
    assert draw.gathered_draw_supported()
    assert draw.can_gather(jax.random.key(0))
    assert not draw.can_gather(jax.random.PRNGKey(0))  # raw uint32 keys take the full draw
    assert not draw.can_gather(jax.random.key(0, impl="rbg"))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, V), (4, 1025), (1, 2, 3, 4, 5, 2)])
def test_categorical_at_equals_the_full_draw(shape):
    logits = 2.0 * jax.random.normal(jax.random.key(1), shape)
    logits = jnp.where(jax.random.uniform(jax.random.key(2), shape) < 0.3, -jnp.inf, logits)  # filtered classes
    logits = logits.at[..., 0].set(0.0)  # every row keeps a finite class
    n = int(np.prod(shape[:-1]))
    rows = jnp.asarray(np.random.default_rng(3).permutation(n)[: max(1, n // 2)], jnp.int32)
    for seed in range(4):
        key = jax.random.key(seed)
        full = np.asarray(jax.random.categorical(key, logits)).reshape(-1)
        part = np.asarray(draw.categorical_at(key, logits.reshape(n, shape[-1])[rows], rows))
        np.testing.assert_array_equal(part, full[np.asarray(rows)])


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.3, 0.7, 1.0])
def test_map_selected_rows_matches_all_rows_at_every_capacity(fraction):
    shape = (2, 4, 4, 4)
    logits = jax.random.normal(jax.random.key(4), shape + (V,))
    select = jax.random.uniform(jax.random.key(5), shape) < fraction
    key = jax.random.key(6)
    assert draw.default_capacities(select.size, V) == ()  # too small a draw to gather by default
    caps = draw.default_capacities(select.size, draw.MIN_GATHER_DRAWS)
    assert caps == (8, 16, 32, 48, 64, 80, 96)

    @jax.jit
    def run(logits, select):
        def fn(rows_logits, rows):
            cand = draw.draw_rows(key, rows_logits, rows)
            return cand, jnp.max(rows_logits, axis=-1)

        return draw.map_selected_rows(fn, logits, select, caps)

    cand, top = run(logits, select)
    sel = np.asarray(select)
    np.testing.assert_array_equal(np.asarray(cand)[sel], np.asarray(jax.random.categorical(key, logits))[sel])
    np.testing.assert_array_equal(np.asarray(top)[sel], np.asarray(jnp.max(logits, axis=-1))[sel])


def test_map_selected_rows_rejects_unsorted_capacities():
    with pytest.raises(ValueError, match="capacities"):
        draw.map_selected_rows(lambda r, i: r[:, 0], jnp.zeros((4, 4, 3)), jnp.ones((4, 4), bool), (8, 4))


_TABLE = 1.5 * jax.random.normal(jax.random.key(11), (6, 4, 4, V))


def varied_logits(tokens, t):
    """A fake model whose logits depend on the position, the input tokens and t."""
    dep = jnp.sin(tokens[..., None] * 0.37 + jnp.arange(V) * 0.11) + t[:, :, None, None, None]
    return _TABLE[None, : tokens.shape[1]] + dep


def _window(b=2, f=6, h=4, m=2):
    tokens = np.full((b, f, h, h), MASK, np.int32)
    tokens[:, :m] = np.random.default_rng(0).integers(0, MASK, size=(b, m, h, h))
    context = np.zeros((b, f), bool)
    context[:, :m] = True
    return jnp.asarray(tokens), jnp.asarray(context)


MGM_OPTIONS = [
    {},
    {"temperature": 0.7, "top_k": 5},
    {"top_p": 0.8, "randomize": "linear"},
    {"time_input": "unmasked_fraction", "mode": "cosine", "allow_mask": True},
    {"guidance": 1.5, "guidance_steps": 3, "count_context": True},
]


@pytest.fixture
def gather_small(monkeypatch):
    """Gathered draws even at the tests' tiny sizes (by default they start at MIN_GATHER_DRAWS numbers)."""
    monkeypatch.setattr(draw, "MIN_GATHER_DRAWS", 0)


FM_OPTIONS = [
    {},
    {"temperature": 0.8, "top_k": 7},
    {"top_p": 0.9, "adaptive": True},
    {"matrix": "pyramid", "allow_mask": True},
    {"guidance": 1.0, "guidance_steps": 2, "kappa_name": "linear"},
]

CASES = [(mgm_sample, 8, o) for o in MGM_OPTIONS] + [(fm_sample, 10, o) for o in FM_OPTIONS]


@pytest.mark.parametrize(("sampler", "steps", "options"), CASES)
def test_sampler_tokens_do_not_change_with_gathered_draws(sampler, steps, options, gather_small):
    assert draw.can_gather(jax.random.key(0))  # else both sides would take the full draw
    tokens, context = _window()
    fns = [
        jax.jit(
            lambda key, tok, ctx, g=g: sampler(
                key, varied_logits, tok, ctx, gathered=g, steps=steps, mask_id=MASK, **options
            )
        )
        for g in (True, False)
    ]
    for seed in range(3):
        outs = [fn(jax.random.key(seed), tokens, context) for fn in fns]
        np.testing.assert_array_equal(np.asarray(outs[0][0]), np.asarray(outs[1][0]))
        assert int(outs[0][1]) == int(outs[1][1])
        if not options.get("allow_mask"):  # with release parity MGM may commit MASK (docs/method.md §11)
            assert not np.any(np.asarray(outs[0][0]) == MASK)
