"""PSNR and SSIM over video batches: uint8 (B, T, H, W, 3) -> per-video means (B,)."""
import jax
import jax.numpy as jnp


def psnr(a, b):
    """PSNR in dB per video (inf for identical videos)."""
    mse = jnp.mean(((a.astype(jnp.float32) - b.astype(jnp.float32)) / 255.0) ** 2, axis=(1, 2, 3, 4))
    return jnp.where(mse == 0, jnp.inf, -10.0 * jnp.log10(mse))


def _gaussian(size=11, sigma=1.5):
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a, b, size=11, sigma=1.5):
    """Mean SSIM per video (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, on [0, 1], per channel)."""
    x = a.astype(jnp.float32).reshape((-1,) + a.shape[2:]) / 255.0
    y = b.astype(jnp.float32).reshape((-1,) + b.shape[2:]) / 255.0
    g = _gaussian(size, sigma)

    def filt(z):  # (N, H, W, C) -> (N, H', W', C)
        k = jnp.outer(g, g)[:, :, None, None] * jnp.eye(z.shape[-1])[None, None]
        return jax.lax.conv_general_dilated(z, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return jnp.mean(s.reshape(a.shape[0], -1), axis=1)
