"""vq-f8 import: a synthetic checkpoint in torch's zip format and LDM's key layout, written here
without torch, converts to our parameters; wrong shapes, missing keys and bad files are named."""

import collections
import io
import pickle
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from maskflow_jax.tokenizer import convert_ldm
from maskflow_jax.tokenizer.model import make_vq_model
from maskflow_jax.tokenizer.torch_pickle import CheckpointFormatError, load_torch_zip

TINY = {
    "ch": 32,
    "ch_mult": (1, 2),
    "num_res_blocks": 1,
    "attn_resolutions": (8,),
    "z_channels": 4,
    "embed_dim": 4,
    "n_embed": 16,
    "beta": 0.25,
    "l2_normalize": False,
    "resolution": 16,
}


def _torch_key(path):
    """Our param path -> the LDM state_dict key (the inverse of convert_ldm.flax_path)."""
    out = []
    for p in path[:-1]:
        bits = p.split("_")
        if bits[0] in ("down", "up") and len(bits) >= 3:
            out += [bits[0], bits[1], bits[2]] + bits[3:]
        elif bits[0] == "mid":
            out += ["mid", "_".join(bits[1:])]
        else:
            out.append(p)
    leaf = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight"}[path[-1]]
    if path == ("quantize", "embedding"):
        return "quantize.embedding.weight"
    return ".".join(out + [leaf])


def ldm_state_dict(params):
    sd = collections.OrderedDict()
    for path, value in traverse_util.flatten_dict(params).items():
        v = np.asarray(value)
        sd[_torch_key(path)] = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v  # HWIO -> OIHW
    sd["loss.discriminator.main.1.num_batches_tracked"] = np.asarray(7, np.int64)
    sd["loss.perceptual_loss.lin0.model.1.weight"] = np.ones((1, 64, 1, 1), np.float32)
    return sd


def write_torch_zip(path, obj, prefix="archive"):
    """A minimal torch.save-format writer: data.pkl with persistent storage ids + raw storages."""
    storages = []
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    class FloatStorage:  # noqa: D401 - a stand-in class the pickle references by name
        pass

    class LongStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    for cls in (FloatStorage, LongStorage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
        setattr(torch_mod, cls.__name__, cls)
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch_mod._utils = utils_mod

    class Tensor:
        def __init__(self, array):
            self.array = np.array(array, order="C")  # keeps 0-d scalars 0-d

        def __reduce__(self):
            a = self.array
            stride = tuple(s // a.itemsize for s in a.strides)
            return _rebuild_tensor_v2, (_StorageRef(a), 0, a.shape, stride, False, collections.OrderedDict())

    class _StorageRef:
        def __init__(self, array):
            self.array = array

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _StorageRef):
                key = str(len(storages))
                storages.append(o.array)
                kind = FloatStorage if o.array.dtype == np.float32 else LongStorage
                return ("storage", kind, key, "cpu", o.array.size)
            return None

    wrapped = {k: (Tensor(v) if isinstance(v, np.ndarray) else v) for k, v in obj["state_dict"].items()}
    top = {"state_dict": collections.OrderedDict(wrapped), "epoch": 3, "global_step": 100}
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(top)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", buf.getvalue())
        zf.writestr(f"{prefix}/version", "3\n")
        for i, arr in enumerate(storages):
            zf.writestr(f"{prefix}/data/{i}", arr.astype(arr.dtype.newbyteorder("<")).tobytes())


@pytest.fixture(scope="module")
def tiny_params():
    import ml_collections

    model = make_vq_model(ml_collections.ConfigDict(TINY))
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    return jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(1), x.shape), params)


def test_round_trip_through_a_torch_format_file(tmp_path, tiny_params):
    path = tmp_path / "vq.ckpt"
    write_torch_zip(path, {"state_dict": ldm_state_dict(tiny_params)}, prefix="vq-f8-random")
    loaded = load_torch_zip(path)
    assert loaded["epoch"] == 3 and int(loaded["state_dict"]["loss.discriminator.main.1.num_batches_tracked"]) == 7
    params = convert_ldm.convert(path, tmp_path / "out", TINY)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(tiny_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    restored, cfg = convert_ldm.load_converted(tmp_path / "out")
    assert cfg["n_embed"] == 16
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    import ml_collections

    model = make_vq_model(ml_collections.ConfigDict(TINY))
    ids_a = model.apply({"params": restored}, x, method=model.encode)
    ids_b = model.apply({"params": tiny_params}, x, method=model.encode)
    np.testing.assert_array_equal(ids_a, ids_b)


def test_one_conv_matches_a_numpy_reference(tiny_params):
    """conv_in of the converted model equals a direct NCHW cross-correlation with the torch weight."""
    w = np.asarray(ldm_state_dict(tiny_params)["encoder.conv_in.weight"])  # (O, I, 3, 3)
    b = np.asarray(tiny_params["encoder"]["conv_in"]["bias"])
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 3)).astype(np.float32)
    params = convert_ldm.convert_state_dict(ldm_state_dict(tiny_params), TINY)
    import flax.linen as nn

    ours = nn.Conv(32, (3, 3), padding=1).apply({"params": params["encoder"]["conv_in"]}, x)
    xp = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((6, 6, 32), np.float32)
    for i in range(6):
        for j in range(6):
            ref[i, j] = np.einsum("hwi,oihw->o", xp[i : i + 3, j : j + 3], w) + b
    np.testing.assert_allclose(np.asarray(ours[0]), ref, atol=1e-4)


def test_errors_name_the_keys(tmp_path, tiny_params):
    sd = ldm_state_dict(tiny_params)
    bad = collections.OrderedDict(sd)
    bad["encoder.conv_in.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    del bad["decoder.conv_out.bias"]
    bad["encoder.extra.weight"] = np.zeros((3,), np.float32)
    with pytest.raises(convert_ldm.ConversionError) as err:
        convert_ldm.convert_state_dict(bad, TINY)
    msg = str(err.value)
    assert "encoder.conv_in.weight: shape (5, 5, 3, 32)" in msg
    assert "decoder/conv_out/bias" in msg and "encoder.extra.weight: unexpected key" in msg
    (tmp_path / "not_zip.ckpt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointFormatError, match="legacy"):
        load_torch_zip(tmp_path / "not_zip.ckpt")
    with pytest.raises(FileNotFoundError, match="convert_ldm"):
        convert_ldm.load_converted(tmp_path)


def test_key_mapping():
    assert convert_ldm.flax_path("encoder.down.0.block.1.norm1.weight") == (
        "encoder",
        "down_0_block_1",
        "norm1",
        "weight",
    )
    assert convert_ldm.flax_path("decoder.up.3.attn.2.proj_out.bias") == ("decoder", "up_3_attn_2", "proj_out", "bias")
    assert convert_ldm.flax_path("encoder.down.2.downsample.conv.weight") == (
        "encoder",
        "down_2_downsample",
        "conv",
        "weight",
    )
    assert convert_ldm.flax_path("encoder.mid.attn_1.q.weight") == ("encoder", "mid_attn_1", "q", "weight")


# vq-f8's layout at small width: four levels laid out for 256x256 with attention at the 32x32 level (level 3).
SMALL_F8 = {
    "ch": 32,
    "ch_mult": (1, 2, 2, 4),
    "num_res_blocks": 1,
    "attn_resolutions": (32,),
    "z_channels": 4,
    "embed_dim": 4,
    "n_embed": 16,
    "beta": 0.25,
    "l2_normalize": False,
    "resolution": 256,
}


def random_params(model, size, seed=0):
    """Seeded parameters in numpy (fast: no per-leaf jax compilations) for the tree model.init builds at
    size x size: kernels ~ N(0, 1/fan_in), GroupNorm scales ~ 1 + N(0, 0.1), biases and codes ~ N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]

    def draw(path, leaf):
        x = rng.normal(size=leaf.shape)
        name = path[-1].key
        if name == "kernel":
            x = x / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            x = 1.0 + 0.1 * x if name == "scale" else 0.1 * x
        return x.astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def test_converted_vqf8_layout_serves_64_and_256_frames_with_the_same_params(tmp_path):
    """The architecture comes from tokenizer.resolution, not the input: the converted parameters
    encode 64x64 frames (8x8 tokens, DMLab's native size) and 256x256 frames (32x32 tokens)."""
    import flax
    import ml_collections

    from configs import dmlab
    from maskflow_jax.tokenizer import train as tok_train
    from maskflow_jax.tokenizer.api import to_unit

    small = ml_collections.ConfigDict(SMALL_F8)
    model = make_vq_model(small)
    params = random_params(model, 8)  # any input size gives the same tree
    assert {"down_3_attn_0", "mid_attn_1"} <= set(params["encoder"]) and "down_1_attn_0" not in params["encoder"]
    assert "up_3_attn_1" in params["decoder"] and "up_1_attn_0" not in params["decoder"]
    write_torch_zip(tmp_path / "vq.ckpt", {"state_dict": ldm_state_dict(params)})
    convert_ldm.convert(tmp_path / "vq.ckpt", tmp_path / "out", SMALL_F8)

    cfg = dmlab.get_config()
    cfg.tokenizer.update(SMALL_F8)
    cfg.tokenizer.init_from = str(tmp_path / "out")
    rng = np.random.default_rng(0)
    frames = {
        64: rng.integers(0, 256, (1, 2, 64, 64, 3), np.uint8),
        256: rng.integers(0, 256, (1, 1, 256, 256, 3), np.uint8),
    }
    toks = {}
    for size, video in frames.items():
        cfg.data.resize_to = size
        tok = toks[size] = tok_train.load_tokenizer(cfg, str(tmp_path))
        tok.chunk = video.shape[1]  # frames per compiled call (the default 32 would pad)
        assert tok.grid == (size // 8, size // 8) and tok.decode_uint8 == "trunc"
        ids = tok.encode(video)
        assert ids.shape == video.shape[:2] + tok.grid and 0 <= ids.min() and ids.max() < 16
        # The converted weights give exactly the ids of the original ones, at either size.
        np.testing.assert_array_equal(ids[0], np.asarray(tok._enc(params, jnp.asarray(video[0]))))
    for a, b in zip(jax.tree.leaves(toks[64].params), jax.tree.leaves(toks[256].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert toks[64].decode(toks[64].encode(frames[64])).shape == frames[64].shape
    ids256 = jnp.zeros((1, 32, 32), jnp.int32)
    assert jax.eval_shape(toks[256]._dec, toks[256].params, ids256).shape == (1, 256, 256, 3)

    # At 64x64 the 32x32-level attention runs on 8x8 feature maps: changing it changes the tokens.
    bumped = jax.tree.map(lambda a: a, params)  # new dicts, same arrays
    kernel = bumped["encoder"]["down_3_attn_0"]["proj_out"]["kernel"]
    bumped["encoder"]["down_3_attn_0"]["proj_out"]["kernel"] = kernel + np.random.default_rng(2).normal(
        size=kernel.shape
    ).astype(np.float32)
    x = jnp.asarray(frames[64][0])
    assert np.mean(np.asarray(toks[64]._enc(bumped, x)) != np.asarray(toks[64]._enc(params, x))) > 0.1
    # The old rule (attention by the input size: a model laid out for 64) cannot use these weights.
    as_64 = make_vq_model(ml_collections.ConfigDict({**SMALL_F8, "resolution": 64}))
    with pytest.raises(flax.errors.ScopeParamNotFoundError, match="down_1_attn_0"):
        jax.eval_shape(lambda: as_64.apply({"params": params}, to_unit(x), method=as_64.encode))


def test_a_config_that_differs_from_the_converted_weights_is_named():
    import ml_collections

    saved = {**SMALL_F8, "ch_mult": [1, 2, 2, 4], "attn_resolutions": [32]}  # as read back from tokenizer.json
    convert_ldm.check_config(saved, ml_collections.ConfigDict(SMALL_F8))  # lists vs tuples: the same
    with pytest.raises(ValueError, match=r"config.tokenizer.resolution=64 but DIR has 256"):
        convert_ldm.check_config(saved, ml_collections.ConfigDict({**SMALL_F8, "resolution": 64}), "DIR")
