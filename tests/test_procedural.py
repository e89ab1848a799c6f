"""What every built-in world promises (maskflow_jax/data/procedural.py): trajectory i depends only on
(seed, i); written splits are byte-identical for a seed, in the DMLab layout, readable by its reader."""

import numpy as np
import pytest

from maskflow_jax.data import dmlab, maze, topdown


@pytest.mark.parametrize("world", [maze, topdown])
def test_trajectory_depends_only_on_seed_and_index(world):
    video, actions = world.generate_trajectories(seed=3, num=3, length=12)
    v2, a2 = world.generate_trajectories(seed=3, num=1, length=12, start=2)
    np.testing.assert_array_equal(v2[0], video[2])
    np.testing.assert_array_equal(a2[0], actions[2])
    v3, _ = world.generate_trajectories(seed=4, num=1, length=12, start=2)
    assert not np.array_equal(v3[0], video[2])


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("world", [maze, topdown])
def test_write_split_is_byte_identical_and_readable(tmp_path, world):
    world.write_split(tmp_path / "a", "train", num=3, frames=40, seed=0, shard_size=2)
    world.main(["--out", str(tmp_path / "b"), "--num", "3", "--frames", "40", "--seed", "0", "--shard-size", "2"])
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert sorted(a) == [
        "train/0000/0000.npz",
        "train/0000/0001.npz",
        "train/0001/0000.npz",
        f"train/{world.NAME}.json",
    ]
    assert a == b  # same names, same bytes (fixed zip timestamps)
    split = dmlab.DmlabSplit(tmp_path / "a", "train", min_length=40, image_size=64)
    ex = split[2]
    assert ex["video"].shape == (40, 64, 64, 3) and ex["video"].dtype == np.uint8
    assert ex["actions"].shape == (40,) and ex["actions"].dtype == np.int32
    ref_v, ref_a = world.generate_trajectories(0, 1, 40, start=2)  # shard 1, file 0 = trajectory 2
    np.testing.assert_array_equal(ex["video"], ref_v[0])
    np.testing.assert_array_equal(ex["actions"], ref_a[0])
    with np.load(tmp_path / "a" / "train" / "0000" / "0000.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["actions", "video"]
