"""Vector quantizer (taming `VectorQuantizer2`, legacy = True) with a straight-through estimator,
optional l2-normalised codes, and a dead-code restart so small codebooks do not collapse.

Shapes: latents z (..., D) with D = embed_dim; ids (...) int32 in [0, n_embed); codebook (K, D).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def _l2n(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


class VectorQuantizer(nn.Module):
    n_embed: int
    embed_dim: int
    beta: float = 0.25
    l2_normalize: bool = False

    def setup(self):
        k = self.n_embed

        def init(key, shape):  # U(-1/k, 1/k), as taming
            return jax.random.uniform(key, shape, minval=-1.0 / k, maxval=1.0 / k)

        self.embedding = self.param("embedding", init, (k, self.embed_dim))

    def codebook(self):
        return _l2n(self.embedding) if self.l2_normalize else self.embedding

    def lookup(self, z):
        """Nearest code ids (...) int32 by squared L2 distance ||z||^2 + ||e||^2 - 2 z.e (first index on ties)."""
        e = self.codebook()
        z = _l2n(z) if self.l2_normalize else z
        d = jnp.sum(z**2, -1, keepdims=True) + jnp.sum(e**2, -1) - 2.0 * jnp.einsum("...d,kd->...k", z, e)
        return jnp.argmin(d, axis=-1).astype(jnp.int32)

    def embed(self, ids):
        return jnp.take(self.codebook(), ids, axis=0)

    def __call__(self, z):
        """(z_q straight-through (..., D), ids (...), {"codebook_loss", "commit_loss"}).

        Legacy taming weighting: loss = mean((sg[z_q] - z)^2) + beta mean((z_q - sg[z])^2); we
        report the two terms separately (codebook_loss carries beta).
        """
        ids = self.lookup(z)
        z_n = _l2n(z) if self.l2_normalize else z
        z_q = self.embed(ids)
        commit = jnp.mean((jax.lax.stop_gradient(z_q) - z_n) ** 2)
        codebook = self.beta * jnp.mean((z_q - jax.lax.stop_gradient(z_n)) ** 2)
        z_st = z_n + jax.lax.stop_gradient(z_q - z_n)
        return z_st, ids, {"codebook_loss": codebook, "commit_loss": commit}


def code_usage(ids, n_embed):
    """Counts (K,) of each code in `ids`, the fraction of codes used and the perplexity."""
    counts = jnp.bincount(ids.reshape(-1), length=n_embed).astype(jnp.float32)
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    perplexity = jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)))
    return counts, jnp.mean((counts > 0).astype(jnp.float32)), perplexity


def restart_dead_codes(embedding, usage, latents, rng, threshold=1e-3):
    """Replaces codes whose running usage (K,) is below `threshold` by random latents (N, D) of the
    batch (plus a little noise). Returns
    (new_embedding (K, D), number restarted)."""
    k = embedding.shape[0]
    flat = latents.reshape(-1, latents.shape[-1])
    k_pick, k_noise = jax.random.split(rng)
    picks = flat[jax.random.randint(k_pick, (k,), 0, flat.shape[0])]
    picks = picks + 1e-3 * jax.random.normal(k_noise, picks.shape)
    dead = usage < threshold
    return jnp.where(dead[:, None], picks.astype(embedding.dtype), embedding), jnp.sum(dead)
