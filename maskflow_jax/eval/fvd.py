"""Fréchet distance between feature sets (FVD when the features are I3D logits), in float64 numpy.

    d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½)

Means and unbiased (N - 1) covariances; Tr((S_a S_b)^½) = Σ sqrt(eig(S_a^½ S_b S_a^½)), a
symmetric positive semi-definite matrix, so only `eigh` is needed (no complex sqrtm, stable when
N < D makes the covariances singular). FeatureStats accumulates the statistics batch by batch
(Chan et al.'s pairwise update), so thousands of videos never sit in memory at once.

KVD (kernel_distance) is the unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / D + 1)³
(KID's kernel, Bińkowski et al. 2018, on I3D features: the KVD that Unterthiner et al. 2018 define
beside FVD). Unlike the Fréchet distance, its estimate is unbiased at any N, so it does not reward a
set for having little spread: with a few videos (N ≪ D) FVD is dominated by
Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^½), which is smallest for a set with small covariance, e.g. a
frozen frame. Its estimate can be slightly negative when the sets match. FeatureStats keeps the raw
features of up to MAX_KEPT videos for it.
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
    for name, value, shape in (
        ("mu_a", mu_a, (d,)),
        ("mu_b", mu_b, (d,)),
        ("cov_a", cov_a, (d, d)),
        ("cov_b", cov_b, (d, d)),
    ):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (D = len(mu_a)); got {value.shape}")
    dist = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product(cov_a, cov_b)
    return float(max(dist, 0.0))  # rounding can give -1e-12 for equal sets


MAX_KEPT = 4096  # raw feature rows FeatureStats keeps for the kernel distance (4096 x 400 float64 = 13 MB)


def kernel_distance(feats_a, feats_b):
    """KVD: unbiased MMD² between feature sets (N, D) and (M, D), N, M >= 2, with the kernel
    k(x, y) = (xᵀy / D + 1)³; a float, 0 in expectation for samples of one distribution."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D) with the same D; got {a.shape} and {b.shape}")
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased kernel distance needs at least 2 videos per set; got {n} and {m}")
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1.0) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within_a + within_b - 2.0 * k_ab.mean())


def stats_kernel_distance(stats_a, stats_b):
    """kernel_distance of two FeatureStats' raw features, or None when either has dropped them
    (more than MAX_KEPT videos) or holds fewer than 2."""
    a, b = stats_a.features, stats_b.features
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    return kernel_distance(a, b)


class FeatureStats:
    """Streaming mean and unbiased covariance of features, in float64, and the raw features
    while there are at most MAX_KEPT of them (`features`, else None).

    Usage: s = FeatureStats(); s.update(batch (n, D)); ...; mu, cov = s.mean, s.cov.
    """

    def __init__(self):
        self.count = 0
        self._mean = None  # (D,)
        self._m2 = None  # (D, D): Σ (x - mean)(x - mean)ᵀ
        self._kept = []  # raw (n, D) batches while count <= MAX_KEPT; None once dropped

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
        batch._kept = [x]
        return self.merge(batch)

    def merge(self, other):
        """Adds the videos of another FeatureStats (same D) to this one; returns self."""
        if other.count == 0:
            return self
        if self.count and other._mean.shape != self._mean.shape:
            raise ValueError(f"cannot merge statistics of D = {other._mean.shape[0]} into D = {self._mean.shape[0]}")
        if self._kept is not None and other._kept is not None and self.count + other.count <= MAX_KEPT:
            self._kept = self._kept + other._kept
        else:
            self._kept = None
        if self.count == 0:
            self.count, self._mean, self._m2 = other.count, other._mean.copy(), other._m2.copy()
            return self
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
    def features(self):
        """The raw features (count, D) while count <= MAX_KEPT, else None."""
        if self._kept is None or self.count == 0:
            return None
        return np.concatenate(self._kept)

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
