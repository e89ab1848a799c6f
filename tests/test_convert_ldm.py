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

TINY = {"ch": 32, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (8,), "z_channels": 4, "embed_dim": 4,
        "n_embed": 16, "beta": 0.25, "l2_normalize": False, "resolution": 16}


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

    model = make_vq_model(ml_collections.ConfigDict(TINY), 16)
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

    model = make_vq_model(ml_collections.ConfigDict(TINY), 16)
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
            ref[i, j] = np.einsum("hwi,oihw->o", xp[i:i + 3, j:j + 3], w) + b
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
    assert convert_ldm.flax_path("encoder.down.0.block.1.norm1.weight") == ("encoder", "down_0_block_1", "norm1", "weight")
    assert convert_ldm.flax_path("decoder.up.3.attn.2.proj_out.bias") == ("decoder", "up_3_attn_2", "proj_out", "bias")
    assert convert_ldm.flax_path("encoder.down.2.downsample.conv.weight") == ("encoder", "down_2_downsample", "conv",
                                                                               "weight")
    assert convert_ldm.flax_path("encoder.mid.attn_1.q.weight") == ("encoder", "mid_attn_1", "q", "weight")
