"""Fréchet distance between feature sets (FVD when the features are I3D logits), in float64 numpy.

    d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½)

Means and unbiased (N - 1) covariances; Tr((S_a S_b)^½) = Σ sqrt(eig(S_a^½ S_b S_a^½)), a
symmetric positive semi-definite matrix, so only `eigh` is needed (no complex sqrtm, stable when
N < D makes the covariances singular). FeatureStats accumulates the statistics batch by batch
(Chan et al.'s pairwise update), so thousands of videos never sit in memory at once.
Shapes: N videos, D feature size (400 for I3D).
"""
import numpy as np


def sqrtm_psd(a):
    """Square root (D, D) of a symmetric positive semi-definite (D, D) matrix (eigenvalues < 0,
    from rounding, are clipped to 0)."""
    a = np.asarray(a, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"a must be a square (D, D) matrix; got shape {a.shape}")
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(cov_a, cov_b):
    """Tr((S_a S_b)^½) for symmetric PSD (D, D) matrices, via the eigenvalues of S_a^½ S_b S_a^½."""
    root = sqrtm_psd(cov_a)
    middle = root @ np.asarray(cov_b, np.float64) @ root
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0, None))))


def frechet_distance(mu_a, cov_a, mu_b, cov_b):
    """Fréchet distance between N(mu_a (D,), cov_a (D, D)) and N(mu_b, cov_b); a float >= 0."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    d = mu_a.shape[0]
    for name, value, shape in (("mu_a", mu_a, (d,)), ("mu_b", mu_b, (d,)), ("cov_a", cov_a, (d, d)),
                               ("cov_b", cov_b, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (D = len(mu_a)); got {value.shape}")
    dist = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product(cov_a, cov_b)
    return float(max(dist, 0.0))  # rounding can give -1e-12 for equal sets


class FeatureStats:
    """Streaming mean and unbiased covariance of features, in float64.

    Usage: s = FeatureStats(); s.update(batch (n, D)); ...; mu, cov = s.mean, s.cov.
    """

    def __init__(self):
        self.count = 0
        self._mean = None  # (D,)
        self._m2 = None  # (D, D): Σ (x - mean)(x - mean)ᵀ

    def update(self, features):
        """Adds features (n, D) (any float dtype); n may be 0."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (n, D); got shape {x.shape}")
        if self._mean is not None and x.shape[1] != self._mean.shape[0]:
            raise ValueError(f"features have D = {x.shape[1]}, earlier batches had {self._mean.shape[0]}")
        n = x.shape[0]
        if n == 0:
            return self
        batch = FeatureStats()
        batch.count, batch._mean = n, x.mean(axis=0)
        centred = x - batch._mean
        batch._m2 = centred.T @ centred
        return self.merge(batch)

    def merge(self, other):
        """Adds the videos of another FeatureStats (same D) to this one; returns self."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self._mean, self._m2 = other.count, other._mean.copy(), other._m2.copy()
            return self
        if other._mean.shape != self._mean.shape:
            raise ValueError(f"cannot merge statistics of D = {other._mean.shape[0]} into D = {self._mean.shape[0]}")
        total = self.count + other.count
        delta = other._mean - self._mean
        self._m2 = self._m2 + other._m2 + np.outer(delta, delta) * (self.count * other.count / total)
        self._mean = self._mean + delta * (other.count / total)
        self.count = total
        return self

    @property
    def mean(self):
        if self._mean is None:
            raise ValueError("FeatureStats is empty: call update() with features first")
        return self._mean

    @property
    def cov(self):
        if self.count < 2:
            raise ValueError(f"an unbiased covariance needs at least 2 videos; got {self.count}")
        return self._m2 / (self.count - 1)


def feature_stats(features):
    """(mean (D,), unbiased covariance (D, D)) in float64 of features (N >= 2, D)."""
    s = FeatureStats().update(features)
    return s.mean, s.cov


def fvd(feats_a, feats_b):
    """Fréchet distance between feature sets (N, D) and (M, D), N, M >= 2 (FVD for I3D features)."""
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b))
