"""MGM and FM samplers with fake logits_fns, and the unmask / scheduling schedules (docs/method.md §6, §12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskflow_jax.sampling import schedules
from maskflow_jax.sampling.candidates import filter_logits
from maskflow_jax.sampling.fm import fm_nfe, fm_sample
from maskflow_jax.sampling.mgm import mgm_sample

V = 9
MASK = V - 1


def prefer(k, strength=20.0):
    def logits_fn(tokens, t):
        return jnp.zeros(tokens.shape + (V,)).at[..., k].set(strength)

    return logits_fn


def random_logits(tokens, t):
    """A fake model whose logits depend on the input (so confidence ordering is non-trivial)."""
    h = (tokens[..., None] * 7 + jnp.arange(V) * 3 + jnp.sum(tokens, axis=(1, 2, 3))[:, None, None, None, None]) % 11
    return h.astype(jnp.float32) * 0.3


def _window(b=2, f=4, h=4, m=1, seed=0):
    tokens = np.full((b, f, h, h), MASK, np.int32)
    ctx_tokens = np.random.default_rng(seed).integers(0, MASK, size=(b, m, h, h))
    tokens[:, :m] = ctx_tokens
    context = np.zeros((b, f), bool)
    context[:, :m] = True
    return jnp.asarray(tokens), jnp.asarray(context)


def test_unmask_counts_pinned_and_sum():
    c = schedules.unmask_counts(20, 16384)
    assert list(c[:3]) == [1, 271, 385] and c.sum() == 16384 and len(c) == 20
    for mode in schedules.MGM_MODES:
        for n in (0, 3, 50, 1000):
            counts = schedules.unmask_counts(8, n, mode)
            assert counts.sum() == n and (counts >= 0).all()
    with pytest.raises(ValueError, match="config.sampling.mgm_mode"):
        schedules.unmask_counts(4, 10, "zigzag")


def test_scheduling_matrices():
    full = schedules.scheduling_matrix("full_sequence", 4, 3)
    assert full.shape == (5, 3) and list(full[:, 0]) == [4, 3, 2, 1, 0]
    pyr = schedules.scheduling_matrix("pyramid", 4, 3)
    assert pyr.shape == (7, 3) and pyr[0].tolist() == [3, 3, 3] and pyr[2].tolist() == [2, 3, 3]
    assert pyr[-1].tolist() == [0, 0, 0]
    assert fm_nfe(20, 16) == 20 and fm_nfe(20, 16, "pyramid") == 35
    with pytest.raises(ValueError, match="config.sampling.scheduling_matrix"):
        schedules.scheduling_matrix("diagonal", 4, 3)


def test_mgm_fills_each_mask_once_with_scheduled_counts():
    tokens, context = _window()
    steps = 6
    seen = []
    base = random_logits

    def recording(tok, t):
        jax.debug.callback(lambda x: seen.append(np.asarray(x)), jnp.sum(tok == MASK, axis=(1, 2, 3)), ordered=True)
        return base(tok, t)

    out, nfe = jax.jit(lambda r, x, c: mgm_sample(r, recording, x, c, steps=steps, mask_id=MASK))(
        jax.random.key(0), tokens, context
    )
    out = np.asarray(out)
    assert int(nfe) == steps and len(seen) == steps
    remaining = np.stack(seen + [np.sum(out == MASK, axis=(1, 2, 3))])  # (S+1, B)
    committed = remaining[:-1] - remaining[1:]
    expected = schedules.unmask_counts(steps, int(np.sum(np.asarray(tokens[0]) == MASK)))
    np.testing.assert_array_equal(committed, np.stack([expected] * 2, axis=1))
    assert not (out == MASK).any()
    np.testing.assert_array_equal(out[:, :1], np.asarray(tokens[:, :1]))  # context untouched


def test_mgm_never_emits_mask_and_follows_a_confident_model():
    tokens, context = _window()
    out, _ = mgm_sample(jax.random.key(1), prefer(MASK, 20.0), tokens, context, steps=4, mask_id=MASK)
    assert not (np.asarray(out) == MASK).any()
    out, _ = mgm_sample(jax.random.key(1), prefer(3), tokens, context, steps=4, mask_id=MASK)
    assert (np.asarray(out[:, 1:]) == 3).all()
    # Release parity: MASK may be emitted (and stays in the output).
    out, _ = mgm_sample(jax.random.key(1), prefer(MASK, 20.0), tokens, context, steps=4, mask_id=MASK, allow_mask=True)
    assert (np.asarray(out[:, 1:]) == MASK).any()


def test_mgm_is_deterministic_per_rng_and_options_run():
    tokens, context = _window()
    kw = dict(steps=5, mask_id=MASK)
    a, _ = mgm_sample(jax.random.key(3), random_logits, tokens, context, **kw)
    b, _ = mgm_sample(jax.random.key(3), random_logits, tokens, context, **kw)
    c, _ = mgm_sample(jax.random.key(4), random_logits, tokens, context, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for opts in (
        {"randomize": "linear"},
        {"time_input": "unmasked_fraction"},
        {"top_k": 2},
        {"top_p": 0.5},
        {"temperature": 0.5},
        {"mode": "cosine"},
    ):
        out, nfe = mgm_sample(jax.random.key(3), random_logits, tokens, context, **kw, **opts)
        assert not (np.asarray(out) == MASK).any() and int(nfe) == 5, opts


def test_release_parity_counts_context_and_finishes_in_19_steps():
    b, f, h = 1, 16, 32
    tokens = jnp.full((b, f, h, h), MASK, jnp.int32).at[:, :2].set(0)
    context = jnp.zeros((b, f), bool).at[:, :2].set(True)
    _, nfe = mgm_sample(jax.random.key(0), prefer(1), tokens, context, steps=20, mask_id=MASK, count_context=True)
    assert int(nfe) == 19
    _, nfe = mgm_sample(jax.random.key(0), prefer(1), tokens, context, steps=20, mask_id=MASK)
    assert int(nfe) == 20


def test_guidance_costs_three_evaluations_per_guided_step():
    tokens, context = _window()
    _, nfe = mgm_sample(
        jax.random.key(0), random_logits, tokens, context, steps=5, mask_id=MASK, guidance=1.0, guidance_steps=2
    )
    assert int(nfe) == 3 * 2 + 3
    out, nfe = fm_sample(
        jax.random.key(0), random_logits, tokens, context, steps=4, mask_id=MASK, guidance=1.0, guidance_steps=4
    )
    assert int(nfe) == 12 and not (np.asarray(out) == MASK).any()


@pytest.mark.parametrize("matrix,adaptive", [("full_sequence", False), ("pyramid", False), ("full_sequence", True)])
def test_fm_fills_every_mask_and_keeps_context(matrix, adaptive):
    tokens, context = _window(f=5, m=2)
    out, nfe = fm_sample(
        jax.random.key(2), random_logits, tokens, context, steps=6, mask_id=MASK, matrix=matrix, adaptive=adaptive
    )
    out = np.asarray(out)
    assert not (out == MASK).any()
    np.testing.assert_array_equal(out[:, :2], np.asarray(tokens[:, :2]))
    assert int(nfe) == fm_nfe(6, 5, matrix)
    out, _ = fm_sample(jax.random.key(2), prefer(4), tokens, context, steps=6, mask_id=MASK, matrix=matrix)
    assert (np.asarray(out[:, 2:]) == 4).all()


def test_fm_unmasks_gradually():
    """Halfway through the schedule a sizeable fraction, but not all, of the masks are filled."""
    tokens, context = _window(b=1, f=4, h=8, m=0)
    seen = []

    def recording(tok, t):
        jax.debug.callback(lambda x: seen.append(float(x)), jnp.mean(tok == MASK), ordered=True)
        return random_logits(tok, t)

    fm_sample(jax.random.key(0), recording, tokens, context, steps=10, mask_id=MASK)
    assert seen[0] == 1.0 and 0.05 < seen[5] < 0.95 and seen[-1] < seen[5]


def test_filter_logits():
    logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
    assert np.isinf(filter_logits(logits, top_k=2)[2:]).all() and np.isfinite(filter_logits(logits, top_k=2)[:2]).all()
    kept = np.isfinite(np.asarray(filter_logits(logits, top_p=0.7)))
    assert kept.tolist() == [True, True, False, False]
    assert np.isinf(filter_logits(logits, mask_id=3)[3])
