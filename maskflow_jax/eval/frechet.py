"""Fréchet distance between two sets of features (FVD when the features are I3D logits)."""
import numpy as np


def stats(features):
    """(mean (D,), unbiased covariance (D, D)) in float64 of features (N, D), N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D); got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the square root via an eigen-decomposition
    of the symmetric S1^1/2 S2 S1^1/2 (float64; tiny negative eigenvalues clipped)."""
    w1, v1 = np.linalg.eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    middle = root1 @ sigma2 @ root1
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(w, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fvd_from_features(a, b):
    """FVD of feature sets a (N, D) and b (M, D)."""
    return frechet_distance(*stats(a), *stats(b))
