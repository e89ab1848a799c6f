"""Records and the grain pipeline: shapes, crops, shuffling, host sharding, exact resume, mesh."""

import grain
import jax
import numpy as np
import pytest

from configs import base
from maskflow_jax.data import loader, records
from maskflow_jax.errors import DataError

N, T, S = 12, 20, 8  # videos, frames per video, frame size


def _videos():
    """Video i, frame t has red = i and green = t, so a clip tells where it came from."""
    for i in range(N):
        v = np.zeros((T, S, S, 3), np.uint8)
        v[..., 0], v[..., 1] = i, np.arange(T)[:, None, None]
        yield {"video": v, "actions": (np.arange(T, dtype=np.int32) + i) % 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    records.prepare_split(_videos(), out, "train")
    records.prepare_split(list(_videos())[:5], out, "test")
    return out


def _cfg(prepared, **kw):
    d = base.get_base().data
    d.prepared_dir = str(prepared)
    d.frames, d.frame_skip, d.batch_size = 4, 2, 4
    d.image_size = d.resize_to = S
    d.use_actions, d.num_threads, d.prefetch = True, 1, 2
    d.update(kw)
    return d


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_batch_schema_and_clip_content(prepared):
    b = next(loader.make_train_iterator(_cfg(prepared), seed=0))
    assert b["video"].shape == (4, 4, S, S, 3) and b["video"].dtype == np.uint8
    assert b["actions"].shape == (4, 4) and b["actions"].dtype == np.int32
    for k in range(4):
        i, frames = b["index"][k], b["video"][k, :, 0, 0, 1].astype(int)
        assert (b["video"][k, ..., 0] == i).all()
        assert np.all(np.diff(frames) == 2) and 0 <= frames[0] <= T - 7  # stride 2, inside the video
        np.testing.assert_array_equal(b["actions"][k], (frames + i) % 3)  # actions of the same frames


def test_shuffle_epochs_and_seeds(prepared):
    def epochs(seed, n=2):
        it = loader.make_train_iterator(_cfg(prepared), seed=seed)
        idx = np.concatenate([b["index"] for b in _take(it, n * N // 4)])
        return idx.reshape(n, N)

    e = epochs(0)
    assert sorted(e[0]) == list(range(N)) and sorted(e[1]) == list(range(N))  # each epoch is a permutation
    assert list(e[0]) != list(range(N)) and list(e[0]) != list(e[1])  # shuffled, reshuffled per epoch
    assert list(epochs(1)[0]) != list(e[0])  # the seed matters
    np.testing.assert_array_equal(epochs(0), e)  # deterministic


def test_two_hosts_are_disjoint_and_match_one_host(prepared):
    cfg = _cfg(prepared)
    hosts = [_take(loader.make_train_iterator(cfg, seed=0, process_index=p, process_count=2), 3) for p in range(2)]
    sets = [set(np.concatenate([b["index"] for b in h]).tolist()) for h in hosts]
    assert sets[0].isdisjoint(sets[1]) and sets[0] | sets[1] == set(range(N))  # one epoch, split
    single = _take(loader.make_train_iterator(cfg, seed=0, process_index=0, process_count=1), 3)
    for step in range(3):  # the hosts' batches form the single-host global batch, same clips
        both = {int(i): v for h in hosts for i, v in zip(h[step]["index"], h[step]["video"])}
        ref = {int(i): v for i, v in zip(single[step]["index"], single[step]["video"])}
        assert both.keys() == ref.keys()
        for i in ref:
            np.testing.assert_array_equal(both[i], ref[i])
    assert hosts[0][0]["video"].shape[0] == 2  # per-host batch = global / process_count
    with pytest.raises(ValueError, match="data.batch_size=4 is not divisible by the 3"):
        loader.make_train_iterator(cfg, seed=0, process_index=0, process_count=3)


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_exact_resume_from_state(prepared):
    cfg = _cfg(prepared)
    it = loader.make_train_iterator(cfg, seed=0)
    _take(it, 5)  # crosses an epoch boundary (3 batches per epoch)
    state = it.get_state()
    expected = _take(it, 4)
    fresh = loader.make_train_iterator(cfg, seed=0)
    _take(fresh, 1)  # set_state must also move an iterator that already started
    fresh.set_state(state)
    _assert_same(_take(fresh, 4), expected)


def test_exact_resume_through_orbax(prepared, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    cfg = _cfg(prepared)
    it = loader.make_train_iterator(cfg, seed=0)
    _take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    expected = _take(it, 3)
    fresh = loader.make_train_iterator(cfg, seed=0)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.restore(mngr.latest_step(), args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    _assert_same(_take(fresh, 3), expected)


def test_global_batch_on_4x2_mesh(prepared):
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    b = next(loader.make_train_iterator(_cfg(prepared, batch_size=8), seed=0))
    g = loader.to_global_batch(b, mesh)
    assert g["video"].shape == (8, 4, S, S, 3) and g["video"].dtype == np.uint8
    assert g["video"].sharding.spec == jax.P(("data", "fsdp"))
    shards = g["video"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape[0] == 1 for s in shards)
    np.testing.assert_array_equal(np.asarray(g["video"]), b["video"])
    np.testing.assert_array_equal(np.asarray(g["actions"]), b["actions"])
    with pytest.raises(ValueError, match="multiple of 8"):
        loader.to_global_batch({"x": np.zeros((4, 2))}, mesh)


def test_resize_matches_jax_bilinear(prepared):
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    ours = loader.resize_video(x, 32).astype(int)
    ref = np.asarray(jax.image.resize(x.astype(np.float32), (2, 32, 32, 3), "bilinear"))
    assert np.abs(ours - np.clip(np.rint(ref), 0, 255)).max() <= 1
    b = next(loader.make_train_iterator(_cfg(prepared, resize_to=32), seed=0))
    assert b["video"].shape == (4, 4, 32, 32, 3) and b["video"].dtype == np.uint8


def test_eval_iterator_in_order_padded_and_host_split(prepared):
    cfg = _cfg(prepared)
    batches = list(loader.make_eval_iterator(cfg, frames=6, batch_size=4))
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 0, 0, 0]]
    assert [b["valid"].tolist() for b in batches] == [[True] * 4, [True, False, False, False]]
    np.testing.assert_array_equal(batches[0]["video"][0, :, 0, 0, 1], [0, 2, 4, 6, 8, 10])  # from frame 0
    hosts = [list(loader.make_eval_iterator(cfg, batch_size=4, process_index=p, process_count=2)) for p in range(2)]
    assert len(hosts[0]) == len(hosts[1]) == 2  # same number of steps on every host
    valid = [{int(i) for b in h for i, v in zip(b["index"], b["valid"]) if v} for h in hosts]
    assert valid[0].isdisjoint(valid[1]) and valid[0] | valid[1] == set(range(5))


def test_too_short_and_missing_actions_errors(prepared, tmp_path):
    with pytest.raises(DataError, match="data.frames x data.frame_skip"):
        loader.make_train_iterator(_cfg(prepared, frames=11), seed=0)
    records.prepare_split([np.zeros((T, S, S, 3), np.uint8)], tmp_path, "train")
    with pytest.raises(DataError, match="use_actions=False"):
        loader.make_train_iterator(_cfg(tmp_path), seed=0)
    with pytest.raises(DataError, match="prepared_dir"):
        loader.make_train_iterator(_cfg(tmp_path / "nothing"), seed=0)


def test_records_roundtrip_and_atomic_prepare(tmp_path):
    tokens = np.arange(5 * 3 * 4, dtype=np.int32).reshape(5, 3, 4)
    ex = records.decode(records.encode({"video": tokens, "actions": np.arange(5, dtype=np.int32)}))
    np.testing.assert_array_equal(ex["video"], tokens)
    assert ex["video"].dtype == np.int32 and ex["actions"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="MFR1"):
        records.decode(b"XXXX" + bytes(16))

    meta = records.prepare_split([(tokens, None), tokens[:3]], tmp_path, "tok", fingerprint={"v": 1})
    assert meta["count"] == 2 and meta["lengths"] == [5, 3]
    assert meta["keys"]["video"] == ["<i4", [None, 3, 4]]
    assert records.is_prepared(tmp_path, "tok", {"v": 1})
    assert not records.is_prepared(tmp_path, "tok", {"v": 2})  # another source: rebuild
    (tmp_path / "tok.json").unlink()  # as if the prepare had been killed before its last step
    assert not records.is_prepared(tmp_path, "tok")
    meta = records.prepare_split([tokens], tmp_path, "tok", fingerprint={"v": 2})
    assert meta["count"] == 1 and len(records.RecordSource(tmp_path, "tok")) == 1
    with pytest.raises(DataError, match="differ from the first record"):
        records.prepare_split([tokens, tokens[:, :2]], tmp_path, "bad")
    assert not list(tmp_path.glob("bad*"))  # a failed prepare leaves no shards and no metadata


def test_ensure_procedural_data_builds_once(tmp_path):
    d = base.get_base().data
    d.maze.num_train, d.maze.num_test, d.maze.length = 2, 1, 16
    d.num_threads, d.prefetch = 1, 2
    out = loader.ensure_procedural_data(d, tmp_path)
    assert out["train"] == {"count": 2, "skipped": 0} and out["test"]["count"] == 1
    stamp = (tmp_path / "data" / "prepared" / "train.json").stat().st_mtime_ns
    loader.ensure_procedural_data(d, tmp_path)  # no-op the second time
    assert (tmp_path / "data" / "prepared" / "train.json").stat().st_mtime_ns == stamp
    b = next(loader.make_train_iterator(d, seed=0, workdir=tmp_path))
    assert b["video"].shape == (d.batch_size, 16, 64, 64, 3)
    before = records.RecordSource(tmp_path / "data" / "prepared", "train")[0]["video"].copy()
    d.maze.seed = 5  # new parameters: raw data and records are rebuilt
    loader.ensure_procedural_data(d, tmp_path)
    after = records.RecordSource(tmp_path / "data" / "prepared", "train")[0]["video"]
    assert not np.array_equal(before, after)
    d.eval_split = "foreign"
    (tmp_path / "data" / "raw" / "foreign").mkdir()
    with pytest.raises(DataError, match="not written by the maze generator"):
        loader.ensure_procedural_data(d, tmp_path)
