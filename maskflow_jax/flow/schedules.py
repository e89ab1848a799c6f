"""kappa(t): the probability that a token is unmasked at time t (t = 0 all MASK, t = 1 clean), docs/method.md §2.

Pure jnp functions; t may have any shape. The sigmoid schedule is clamped to [1e-5, 1] (its
derivative is not clamped), as in the release.
"""

import math

import jax
import jax.numpy as jnp

SIGMOID_START, SIGMOID_END, SIGMOID_TAU, SIGMOID_CLIP = -3.0, 3.0, 1.0, 1e-5
CUBIC_A, CUBIC_B = 0.0, 2.0
NAMES = ("sigmoid", "linear", "cosine", "cubic", "quadratic", "root", "sine", "arccos", "arcsin")


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


_S0 = _sig(SIGMOID_START / SIGMOID_TAU)
_S1 = _sig(SIGMOID_END / SIGMOID_TAU)


def _check(name):
    if name not in NAMES:
        raise ValueError(f"kappa schedule {name!r} is unknown; expected one of {list(NAMES)} (config.flow.kappa)")


def kappa(t, name="sigmoid"):
    """kappa(t), same shape as t."""
    _check(name)
    t = jnp.asarray(t, jnp.float32)
    if name == "sigmoid":
        z = (t * (SIGMOID_END - SIGMOID_START) + SIGMOID_START) / SIGMOID_TAU
        return jnp.clip((jax.nn.sigmoid(z) - _S0) / (_S1 - _S0), SIGMOID_CLIP, 1.0)
    if name == "linear":
        return t
    if name == "cosine":
        return 1.0 - jnp.cos(jnp.pi * t / 2)
    if name == "cubic":
        a, b = CUBIC_A, CUBIC_B
        return -2 * t**3 + 3 * t**2 + a * (t**3 - 2 * t**2 + t) + b * (t**3 - t**2)
    if name == "quadratic":
        return t**2
    if name == "root":
        return jnp.sqrt(t)
    if name == "sine":
        return jnp.sin(jnp.pi * t / 2)
    if name == "arccos":
        return 1.0 - (2 / jnp.pi) * jnp.arccos(t)
    return (2 / jnp.pi) * jnp.arcsin(t)  # arcsin


def kappa_derivative(t, name="sigmoid"):
    """d kappa / dt, same shape as t (the release's closed forms, including its +1e-6 terms)."""
    _check(name)
    t = jnp.asarray(t, jnp.float32)
    if name == "sigmoid":
        z = (t * (SIGMOID_END - SIGMOID_START) + SIGMOID_START) / SIGMOID_TAU
        s = jax.nn.sigmoid(z)
        return (SIGMOID_END - SIGMOID_START) / SIGMOID_TAU * s * (1 - s) / (_S1 - _S0)
    if name == "linear":
        return jnp.ones_like(t)
    if name == "cosine":
        return (jnp.pi / 2) * jnp.sin(jnp.pi * t / 2)
    if name == "cubic":
        a, b = CUBIC_A, CUBIC_B
        return -6 * t**2 + 6 * t + a * (3 * t**2 - 4 * t + 1) + b * (3 * t**2 - 2 * t)
    if name == "quadratic":
        return 2 * t
    if name == "root":
        return 0.5 / jnp.sqrt(t)
    if name == "sine":
        return (jnp.pi / 2) * jnp.cos(jnp.pi * t / 2)
    return (2 / jnp.pi) / jnp.sqrt(1 - t**2 + 1e-6)  # arccos and arcsin


def kappa_inverse(k, name="sigmoid", iters=40):
    """t with kappa(t) = k (k in [0, 1]), by bisection (every schedule is monotone on [0, 1])."""
    _check(name)
    k = jnp.asarray(k, jnp.float32)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        below = kappa(mid, name) < k
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(k), jnp.ones_like(k)))
    return 0.5 * (lo + hi)
