"""Procedural maze: schema, determinism (byte-identical files), agent/action semantics, rendering."""

import math

import numpy as np
import pytest

from maskflow_jax.data import maze


@pytest.fixture(scope="module")
def small():
    return maze.generate_trajectories(seed=3, num=3, length=12)


def test_schema_and_content(small):
    video, actions = small
    assert video.shape == (3, 12, 64, 64, 3) and video.dtype == np.uint8
    assert actions.shape == (3, 12) and actions.dtype == np.int32
    assert set(np.unique(actions)) <= {maze.LEFT, maze.RIGHT, maze.FORWARD}
    assert video.std() > 20  # textured, not a flat colour
    assert np.mean(np.abs(np.diff(video.astype(np.int16), axis=1))) > 2  # the camera moves


def test_agent_actions_explain_the_poses():
    worlds, rngs = maze.make_worlds(7, [0])
    walls = worlds.walls[0]
    pos, heading, actions = maze.simulate_agent(walls, rngs[0], 300)
    for t in range(299):
        a, dh = actions[t], (heading[t + 1] - heading[t]) % maze.TURN_STEPS
        step = pos[t + 1] - pos[t]
        if a == maze.LEFT:
            assert dh == 1 and np.allclose(step, 0)
        elif a == maze.RIGHT:
            assert dh == maze.TURN_STEPS - 1 and np.allclose(step, 0)
        else:
            ang = heading[t] * 2 * math.pi / maze.TURN_STEPS
            assert dh == 0 and 0 < np.linalg.norm(step) <= maze.STEP + 1e-9
            np.testing.assert_allclose(step / np.linalg.norm(step), [math.cos(ang), math.sin(ang)], atol=1e-9)
    cells = np.floor(pos).astype(int)
    assert not walls[cells[:, 0], cells[:, 1]].any()  # never inside a wall
    frac = pos - cells  # never closer than 0.3 cells to a wall cell's face
    for (x, y), (fx, fy) in zip(cells, frac):
        assert (fx > 0.3 or not walls[x - 1, y]) and (fx < 0.7 or not walls[x + 1, y])
        assert (fy > 0.3 or not walls[x, y - 1]) and (fy < 0.7 or not walls[x, y + 1])
    assert len({tuple(c) for c in cells}) >= 8  # it explores, not spins in place
    assert (actions == maze.FORWARD).mean() > 0.4


def test_turning_left_shifts_the_view_right():
    worlds, _ = maze.make_worlds(1, [0])
    open_cell = np.argwhere(~worlds.walls[0])[0] + 0.5
    pos = np.stack([open_cell, open_cell])
    for h in (0, 9, 20):
        img = maze.render(worlds, np.zeros(2, int), pos, np.array([h, h + 1])).astype(np.float32)
        errs = {
            s: np.mean((img[1][:, s:] - img[0][:, : 64 - s]) ** 2)
            if s >= 0
            else np.mean((img[1][:, :s] - img[0][:, -s:]) ** 2)
            for s in range(-16, 17)
        }
        best = min(errs, key=errs.get)
        assert 7 <= best <= 14, (h, best)  # 10° of a 60° view on 64 columns ≈ 10.7 columns


def test_write_split_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num, frames"):
        maze.write_split(tmp_path, "train", num=0, frames=4, seed=0)
