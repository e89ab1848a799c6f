"""DMLab reader: every layout of docs/data.md and every bad input (errors name the file); HDF5 caches."""

import numpy as np
import pytest

from maskflow_jax.data import dmlab, h5cache, records
from maskflow_jax.errors import DataError


def _video(tag, t=6, size=8):
    v = np.zeros((t, size, size, 3), np.uint8)
    v[..., 0] = tag
    return v


def _write(path, tag=0, t=6, actions=True, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"video": _video(tag, t)}
    if actions:
        arrays["actions"] = np.arange(t, dtype=np.int64) % 3
    np.savez_compressed(path, **arrays, **extra)
    return path


def _tags(split):
    return [int(ex["video"][0, 0, 0, 0]) for ex in split]


def test_teco_layout_sorted_by_relative_path(tmp_path):
    # Names repeat across worker folders; order is by relative path, not by base name.
    for tag, rel in enumerate(["w1/0.npz", "w0/1.npz", "w0/0.npz", "w0/sub/0.npz"]):
        _write(tmp_path / "train" / rel, tag)
    _write(tmp_path / "test" / "0.npz", 9)
    split = dmlab.DmlabSplit(tmp_path, "train")
    assert [str(p.relative_to(tmp_path / "train")) for p in split.files] == [
        "w0/0.npz",
        "w0/1.npz",
        "w0/sub/0.npz",
        "w1/0.npz",
    ]
    assert _tags(split) == [2, 1, 3, 0]
    assert _tags(dmlab.DmlabSplit(tmp_path, "test")) == [9]


def test_split_aliases_and_flat_folder(tmp_path):
    _write(tmp_path / "a" / "training" / "0" / "0.npz", 1)
    _write(tmp_path / "a" / "validation" / "0.npz", 2)
    assert _tags(dmlab.DmlabSplit(tmp_path / "a", "train")) == [1]
    assert _tags(dmlab.DmlabSplit(tmp_path / "a", "test")) == [2]
    for tag in (3, 4):
        _write(tmp_path / "flat" / f"{tag}.npz", tag)
    assert _tags(dmlab.DmlabSplit(tmp_path / "flat", "train")) == [3, 4]
    assert _tags(dmlab.DmlabSplit(tmp_path / "flat", "test")) == [3, 4]


def test_actions_optional_other_keys_ignored(tmp_path):
    p = _write(tmp_path / "x.npz", actions=False, depth=np.zeros((6, 8, 8), np.float32))
    video, actions = dmlab.load_video(p)
    assert actions is None and video.shape == (6, 8, 8, 3)
    video, actions = dmlab.load_video(_write(tmp_path / "y.npz"))
    assert actions.dtype == np.int32 and actions.tolist() == [0, 1, 2, 0, 1, 2]


def _bad_files(tmp):
    """name -> (path, text the error must contain)."""
    out = {}
    p = tmp / "float.npz"
    np.savez(p, video=np.zeros((6, 8, 8, 3), np.float32))
    out["dtype"] = (p, "dtype float32")
    p = tmp / "gray.npz"
    np.savez(p, video=np.zeros((6, 8, 8), np.uint8))
    out["shape"] = (p, "(T, H, W, 3)")
    out["size"] = (_write(tmp / "big.npz", t=6), "expected 16x16")
    out["short"] = (_write(tmp / "short.npz", t=2), "shorter than the 4")
    p = tmp / "acts.npz"
    np.savez(p, video=_video(0), actions=np.zeros(5, np.int32))
    out["actions"] = (p, "'actions' has shape (5,)")
    p = _write(tmp / "trunc.npz")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    out["truncated"] = (p, "unreadable, truncated or corrupt")
    p = tmp / "garbage.npz"
    p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    out["corrupt"] = (p, "unreadable, truncated or corrupt")
    p = tmp / "pickle.npz"
    np.savez(p, video=np.array([{"a": 1}], dtype=object))
    out["pickle"] = (p, "unreadable, truncated or corrupt")
    p = tmp / "novideo.npz"
    np.savez(p, frames=_video(0))
    out["no_video"] = (p, "no 'video' array")
    p = _write(tmp / "crc.npz")  # flip bytes inside the compressed stream
    data = bytearray(p.read_bytes())
    data[200:240] = bytes(40)
    p.write_bytes(bytes(data))
    out["crc"] = (p, "unreadable, truncated or corrupt")
    p = tmp / "bare.npz"
    with open(p, "wb") as f:
        np.save(f, _video(0))
    out["npy"] = (p, "a bare .npy array")
    return out


@pytest.mark.parametrize(
    "case", ["dtype", "shape", "size", "short", "actions", "truncated", "corrupt", "pickle", "no_video", "crc", "npy"]
)
def test_bad_file_errors_name_the_file(tmp_path, case):
    path, text = _bad_files(tmp_path)[case]
    image_size = 16 if case == "size" else None
    with pytest.raises(DataError) as err:
        dmlab.load_video(path, min_length=4, image_size=image_size)
    assert str(path) in str(err.value) and text in str(err.value)
    assert isinstance(err.value, ValueError)


def test_bad_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        dmlab.list_split(tmp_path / "nope", "train")
    (tmp_path / "train" / "w0").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no .npz") as err:
        dmlab.list_split(tmp_path, "train")
    assert str(tmp_path / "train") in str(err.value)
    with pytest.raises(DataError, match="no split 'test'") as err:
        dmlab.list_split(tmp_path, "test")
    assert "train" in str(err.value)  # lists what is there


def test_skip_corrupt_counts_and_strict_mode_raises(tmp_path):
    root = tmp_path / "d"
    _write(root / "train" / "0.npz", 1)
    (root / "train" / "1.npz").write_bytes(b"not a zip")
    _write(root / "train" / "2.npz", 2, t=2)  # too short
    _write(root / "train" / "3.npz", 3)
    strict = dmlab.DmlabSplit(root, "train", min_length=4)
    with pytest.raises(DataError, match="1.npz"):
        list(strict)
    lenient = dmlab.DmlabSplit(root, "train", min_length=4, skip_corrupt=True)
    assert _tags(lenient) == [1, 3] and len(lenient.skipped) == 2
    meta = records.prepare_split(lenient, tmp_path / "prep", "train")
    assert meta["count"] == 2 and len(meta["skipped"]) == 2
    with pytest.raises(DataError, match="1.npz"):
        records.prepare_split(strict, tmp_path / "prep2", "train")
    assert not records.is_prepared(tmp_path / "prep2", "train")


def _h5(path, video, index):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f["video"] = video
        f["start_index_list"] = index
    return path


def test_h5_token_cache(tmp_path):
    tokens = np.arange(10 * 2 * 2, dtype=np.int32).reshape(10, 2, 2)
    cache = h5cache.H5Cache(_h5(tmp_path / "t.h5", tokens, np.array([[0, 4], [4, 10]])), min_length=3)
    assert len(cache) == 2 and cache[1].shape == (6, 2, 2) and cache[1].dtype == np.int32
    np.testing.assert_array_equal(cache[1], tokens[4:])
    pixels = np.random.default_rng(0).integers(0, 255, (5, 3, 4, 4), dtype=np.uint8)
    pix = h5cache.H5Cache(_h5(tmp_path / "p.h5", pixels, np.array([[0, 5]])))
    np.testing.assert_array_equal(pix[0], pixels.transpose(0, 2, 3, 1))


def test_h5_token_cache_imports_as_token_records(tmp_path, capsys):
    """The importer writes the videos as the token records `--mode=train` reads (data.token_cache)."""
    tokens = np.random.default_rng(3).integers(0, 16, (10, 2, 2)).astype(np.int32)
    tokens[0, 0, 0], tokens[0, 0, 1] = 0, 15
    path = _h5(tmp_path / "t.h5", tokens, np.array([[0, 4], [4, 10]]))
    h5cache.main(["--h5", f"train={path}", "--out", str(tmp_path / "tokens"), "--n-embed", "16"])
    assert "train: 2 videos" in capsys.readouterr().out
    src = records.RecordSource(tmp_path / "tokens", "train")
    assert len(src) == 2 and sorted(src[1]) == ["video"]
    np.testing.assert_array_equal(src[0]["video"], tokens[:4])
    np.testing.assert_array_equal(src[1]["video"], tokens[4:])
    with pytest.raises(DataError, match=r"video 0 has token ids in \[0, 15\].*--n-embed"):
        h5cache.import_token_cache(path, tmp_path / "bad", "train", n_embed=8)
    pixels = _h5(tmp_path / "p.h5", np.zeros((5, 3, 4, 4), np.uint8), np.array([[0, 5]]))
    with pytest.raises(DataError, match="holds pixels"):
        h5cache.import_token_cache(pixels, tmp_path / "bad", "train", n_embed=8)


@pytest.mark.parametrize(
    "index, text",
    [
        (np.array([[0, 4], [4, 11]]), "outside"),
        (np.array([0, 4]), "expected int (N, 2)"),
        (np.array([[0, 2], [2, 10]]), "shorter than the 3"),
    ],
)
def test_h5_cache_bad_index(tmp_path, index, text):
    path = _h5(tmp_path / "t.h5", np.zeros((10, 2, 2), np.int32), index)
    with pytest.raises(DataError) as err:
        h5cache.H5Cache(path, min_length=3)
    assert str(path) in str(err.value) and text in str(err.value)


def test_h5_cache_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a readable HDF5"):
        h5cache.H5Cache(tmp_path / "x.h5")


def test_loads_from_many_threads_agree(tmp_path):
    """Files are read in threads; numpy's header parse is serialised (CPython 3.11 compile() race)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [tmp_path / f"{i}.npz" for i in range(4)]
    for i, p in enumerate(paths):
        _write(p, tag=i)
    want = [dmlab.load_video(p)[0] for p in paths]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: dmlab.load_video(paths[i % 4])[0], range(400)))
    assert all(np.array_equal(g, want[i % 4]) for i, g in enumerate(got))
