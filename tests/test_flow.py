"""Flow matching pieces: kappa schedules, frame-level corruption, the weighted masked loss (docs/method.md §2-4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskflow_jax.flow import corruption, losses, schedules


def test_sigmoid_kappa_pinned_values():
    k = schedules.kappa(jnp.array([0.0, 0.3, 0.5, 0.9, 1.0]))
    np.testing.assert_allclose(k, [1e-5, 0.2033, 0.5, 0.9605, 1.0], atol=1e-4)
    assert float(k[0]) == pytest.approx(1e-5, rel=1e-3)  # clamped
    d = schedules.kappa_derivative(jnp.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(d, [0.2995, 1.657, 0.2995], atol=1e-3)


@pytest.mark.parametrize("name", schedules.NAMES)
def test_derivatives_match_finite_differences_and_ends(name):
    t = jnp.linspace(0.2, 0.8, 13)
    h = 1e-3
    fd = (schedules.kappa(t + h, name) - schedules.kappa(t - h, name)) / (2 * h)
    np.testing.assert_allclose(schedules.kappa_derivative(t, name), fd, rtol=2e-2, atol=2e-3)
    assert float(schedules.kappa(1.0, name)) == pytest.approx(1.0, abs=1e-5)
    assert float(schedules.kappa(0.0, name)) == pytest.approx(0.0, abs=2e-5)
    assert np.all(np.diff(np.asarray(schedules.kappa(jnp.linspace(0, 1, 50), name))) >= 0)


@pytest.mark.parametrize("name", ["sigmoid", "cosine", "linear", "arccos"])
def test_kappa_inverse(name):
    t = jnp.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(schedules.kappa_inverse(schedules.kappa(t, name), name), t, atol=1e-4)


def test_unknown_schedule_names_the_field():
    with pytest.raises(ValueError, match="config.flow.kappa"):
        schedules.kappa(0.5, "tanh")
    with pytest.raises(ValueError, match="config.flow.noise_level"):
        corruption.sample_times(jax.random.key(0), 2, 3, mode="per_pixel")


def test_fused_snr_weights_pinned():
    w = losses.frame_weights(jnp.array([[0.9, 0.9, 0.1, 0.5], [0.5, 0.5, 0.5, 0.5]]))
    np.testing.assert_allclose(w[0], [6.0, 6.0, 4.8, 4.2], atol=1e-3)
    np.testing.assert_allclose(w[1], [1.0, 1.6667, 1.6667, 1.6667], atol=1e-3)
    low = losses.frame_weights(jnp.full((1, 4), 0.1))
    np.testing.assert_allclose(low[0], [0.0017, 0.003, 0.003, 0.003], atol=3e-4)
    unfused = losses.frame_weights(jnp.array([[0.9, 0.1]]), fused=False)
    assert float(unfused[0, 0]) == pytest.approx(6.0) and float(unfused[0, 1]) < 0.01


def test_random_all_times_differ_per_frame_and_constant_is_shared():
    t = corruption.sample_times(jax.random.key(0), 64, 8)
    assert t.shape == (64, 8) and float(t.min()) >= 1e-3 and float(t.max()) < 1.0
    assert float(jnp.std(t, axis=1).mean()) > 0.2  # frames of a clip really differ
    c = corruption.sample_times(jax.random.key(0), 64, 8, mode="constant")
    assert float(jnp.abs(c - c[:, :1]).max()) == 0.0 and float(jnp.std(c[:, 0])) > 0.2
    d = jnp.stack([corruption.sample_times(jax.random.key(i), 4, 8, mode="dynamic") for i in range(40)])
    shared = jnp.all(jnp.abs(d - d[:, :, :1]) == 0, axis=(1, 2))
    assert 0 < int(shared.sum()) < 40  # both branches are taken
    assert float(d[shared].min()) >= 0.5


def test_corruption_rate_matches_kappa_per_frame():
    tokens = jnp.zeros((4, 3, 32, 32), jnp.int32) + 7
    t = jnp.array([[0.1, 0.5, 0.9]] * 4)
    x_t, mask = corruption.corrupt(jax.random.key(1), tokens, t, mask_id=99)
    assert jnp.array_equal(x_t == 99, mask) and jnp.all(jnp.where(mask, True, x_t == 7))
    rate = np.asarray(mask.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(rate, 1 - np.asarray(schedules.kappa(t[0])), atol=0.03)
    with pytest.raises(ValueError, match="t must be"):
        corruption.corrupt(jax.random.key(1), tokens, t[:, :2], mask_id=99)


def test_only_masked_positions_contribute_and_normalisation_is_global():
    key = jax.random.key(2)
    logits = jax.random.normal(key, (2, 3, 4, 4, 11))
    targets = jax.random.randint(jax.random.key(3), (2, 3, 4, 4), 0, 10)
    mask = jax.random.bernoulli(jax.random.key(4), 0.5, (2, 3, 4, 4))
    w = jnp.array([[1.0, 2.0, 3.0], [0.5, 1.0, 4.0]])
    loss, metrics = losses.masked_cross_entropy(logits, targets, mask, w)
    # Changing logits at unmasked positions leaves the loss unchanged.
    noisy = jnp.where(mask[..., None], logits, logits + 5 * jax.random.normal(key, logits.shape))
    loss2, _ = losses.masked_cross_entropy(noisy, targets, mask, w)
    assert float(loss) == pytest.approx(float(loss2), rel=1e-6)
    # Hand computation: one global sum over masked positions divided by one global count.
    logp = jax.nn.log_softmax(logits)
    ce = -np.take_along_axis(np.asarray(logp), np.asarray(targets)[..., None], -1)[..., 0]
    expected = (ce * np.asarray(w)[:, :, None, None] * np.asarray(mask)).sum() / np.asarray(mask).sum()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    acc = (np.argmax(np.asarray(logits), -1) == np.asarray(targets))[np.asarray(mask)].mean()
    assert float(metrics["accuracy"]) == pytest.approx(acc)
    mean_loss, _ = losses.masked_cross_entropy(logits, targets, mask, w, mask_ce=False)
    assert float(mean_loss) == pytest.approx((ce * np.asarray(w)[:, :, None, None]).mean(), rel=1e-5)


@pytest.mark.parametrize("mode", corruption.PREFIX_NOISE_LEVELS)
def test_prefix_mixtures_distribution(mode):
    """prefix_*: a share prefix_prob of clips has a clean prefix of L ~ U{1..F-1} frames (t = 1), then
    frames at one shared t (prefix_shared), i.i.d. t (prefix_iid) or fully masked at t = eps
    (prefix_masked); the other clips are random_all."""
    b, f, p = 20000, 8, 0.3
    t = np.asarray(corruption.sample_times(jax.random.key(0), b, f, mode=mode, prefix_prob=p))
    clean = t == corruption.CLEAN
    has_prefix = clean[:, 0]
    assert abs(has_prefix.mean() - p) < 0.015
    # random_all clips never draw t = 1; prefix clips: clean frames exactly form a prefix
    lengths = clean.sum(1)
    assert np.all(lengths[~has_prefix] == 0)
    np.testing.assert_array_equal(clean[has_prefix], np.arange(f)[None] < lengths[has_prefix, None])
    counts = np.bincount(lengths[has_prefix], minlength=f)
    assert counts[0] == 0 and counts[f:].sum() == 0  # L in [1, F - 1]: at least one frame to denoise
    share = counts[1:f] / has_prefix.sum()
    np.testing.assert_allclose(share, np.full(f - 1, 1 / (f - 1)), atol=0.02)  # uniform
    rest = [t[i, lengths[i] :] for i in np.nonzero(has_prefix)[0][:2000]]
    spread = np.array([r.max() - r.min() for r in rest if len(r) > 1])
    after = np.concatenate(rest)
    if mode == "prefix_masked":
        np.testing.assert_allclose(after, 1e-3)  # every frame after the prefix at t = eps: all masked
    else:
        if mode == "prefix_shared":
            assert spread.max() == 0.0  # one t for every frame after the prefix
        else:
            assert spread.mean() > 0.2  # i.i.d. frames differ
        assert after.min() >= 1e-3 and after.max() < 1.0
        assert abs(after.mean() - 0.5) < 0.02 and abs(np.mean(after < 0.25) - 0.25) < 0.02  # ~U[eps, 1)
    free = t[~has_prefix]  # random_all: i.i.d. per frame
    assert abs(free.mean() - 0.5) < 0.01 and float(np.std(free, axis=1).mean()) > 0.2


def test_prefix_frames_are_never_masked_and_paper_modes_unchanged():
    t = corruption.sample_times(jax.random.key(1), 64, 6, mode="prefix_shared", prefix_prob=1.0)
    tokens = jnp.ones((64, 6, 4, 4), jnp.int32)
    _, mask = corruption.corrupt(jax.random.key(2), tokens, t, mask_id=9)
    clean = np.asarray(t) == 1.0
    assert clean[:, 0].all() and not np.asarray(mask)[clean].any()
    # the prefix options do not change the paper modes' draws for a key
    a = corruption.sample_times(jax.random.key(3), 4, 5, mode="random_all")
    b = corruption.sample_times(jax.random.key(3), 4, 5, mode="random_all", prefix_prob=0.9)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs clips of >= 2 frames"):
        corruption.sample_times(jax.random.key(0), 2, 1, mode="prefix_iid")
    with pytest.raises(ValueError, match="flow.prefix_prob"):
        corruption.sample_times(jax.random.key(0), 2, 4, mode="prefix_iid", prefix_prob=1.5)
