"""Atomic writes: a failed write leaves the old file and no temporary behind."""

import json

import numpy as np
import pytest

from maskflow_jax import files


def test_write_json_replaces_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "result.json"
    files.write_json(path, {"a": 1}, indent=1)
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError), files.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"a": 2')  # half written
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_atomic_path_suffix_for_numpy_savez(tmp_path):
    path = tmp_path / "x.npz"
    with files.atomic_path(path, suffix=".npz") as tmp:
        assert tmp.endswith(".npz")
        np.savez(tmp, a=np.arange(3))
    np.testing.assert_array_equal(np.load(path)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
