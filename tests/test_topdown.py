"""Built-in top-down world: schema, determinism, moves as exact one-tile shifts, DMLab action timing."""

import numpy as np
import pytest

from maskflow_jax.data import loader, topdown

T = topdown


@pytest.fixture(scope="module")
def small():
    return T.generate_trajectories(seed=3, num=3, length=40)


def test_schema_and_content(small):
    video, actions = small
    assert video.shape == (3, 40, 64, 64, 3) and video.dtype == np.uint8
    assert actions.shape == (3, 40) and actions.dtype == np.int32
    assert set(np.unique(actions)) <= set(range(T.NUM_ACTIONS))
    assert video.std() > 20  # textured tiles, not a flat colour
    moving = np.mean(actions != T.STAY)
    assert moving > 0.85  # the camera moves on most frames


def _without_agent(frame):
    """The frame with the agent's tile blanked (the sprite is drawn over the tile it stands on)."""
    out = frame.astype(np.int16).copy()
    a0 = T.AGENT_CELL * T.CELL
    out[a0 : a0 + T.CELL, a0 : a0 + T.CELL] = -1
    return out


def test_a_move_shifts_the_view_by_exactly_one_tile_as_the_recorded_action_says(small):
    video, actions = small
    c = T.CELL
    checked = 0
    for v, acts in zip(video, actions):
        for f in range(len(acts) - 1):
            a, prev, nxt = acts[f], _without_agent(v[f]), _without_agent(v[f + 1])
            dr, dc = T.MOVES[int(a)]
            # actions[f] is taken after frame f: frame f + 1 shows the map moved by one tile against the move.
            # Pixel (y, x) of frame f + 1 is pixel (y + dr*c, x + dc*c) of frame f where both lie in view.
            ys = slice(max(0, -dr * c), 64 - max(0, dr * c))
            xs = slice(max(0, -dc * c), 64 - max(0, dc * c))
            ys_prev = slice(ys.start + dr * c, ys.stop + dr * c)
            xs_prev = slice(xs.start + dc * c, xs.stop + dc * c)
            a_new, a_old = nxt[ys, xs], prev[ys_prev, xs_prev]
            both = (a_new >= 0) & (a_old >= 0)
            np.testing.assert_array_equal(a_new[both], a_old[both])
            if a == T.STAY:
                np.testing.assert_array_equal(v[f + 1], v[f])
            else:  # the view really changed (and would not match under another move)
                assert not np.array_equal(v[f + 1], v[f])
            checked += 1
    assert checked == 3 * 39


def test_moves_shift_the_32px_tokens_grid_exactly_after_the_resize(small):
    """Resized 64 -> 32 as the default config does, one move is a shift of exactly 4 pixels (one token)."""
    video, actions = small
    small32 = loader.resize_video(video[0], 32).astype(np.int16)
    f = int(np.argmax(actions[0] == T.EAST))
    assert actions[0, f] == T.EAST
    # moving east: the view's content moves one tile to the left
    np.testing.assert_array_equal(small32[f + 1, :12, :28], small32[f, :12, 4:])


def test_agent_never_stands_on_blocked_tiles():
    rng = np.random.default_rng([5, 0])
    kind, _, _ = T.make_map(rng)
    positions, headings, actions = T.simulate_agent(kind, rng, 200)
    assert np.all(np.isin(kind[positions[:, 0], positions[:, 1]], T.WALKABLE))
    steps = (positions[1:] - positions[:-1] + 1) % T.MAP - 1  # on the torus
    expected = np.array([T.MOVES[int(a)] for a in actions[:-1]])
    np.testing.assert_array_equal(steps, expected)
    moved = actions[:-1] != T.STAY
    np.testing.assert_array_equal(headings[1:][moved], actions[:-1][moved])


def test_procedural_data_for_the_topdown_config(tmp_path):
    from configs import topdown as cfg_mod

    cfg = cfg_mod.get_config("smoke")
    out = loader.ensure_procedural_data(cfg.data, tmp_path)
    assert out["train"]["count"] == cfg.data.topdown.num_train
    assert out[cfg.data.eval_split]["count"] == cfg.data.topdown.num_test
    assert (tmp_path / "data" / "raw" / "train" / "topdown.json").is_file()


def test_scroll_moves_fly_east_or_west_and_are_recorded_in_the_marker(tmp_path):
    video, actions = T.generate_trajectories(seed=1, num=2, length=60, moves="scroll")
    assert set(np.unique(actions)) <= {T.WEST, T.EAST, T.STAY}
    assert np.mean(actions != T.STAY) > 0.85
    for v, acts in zip(video, actions):  # a horizontal move: one tile column in, rows unchanged in place
        for f in range(59):
            dc = T.MOVES[int(acts[f])][1] * T.CELL
            if dc:
                a_new, a_old = (
                    _without_agent(v[f + 1])[:, max(0, -dc) : 64 - max(0, dc)],
                    _without_agent(v[f])[:, max(0, dc) : 64 - max(0, -dc)],
                )
                both = (a_new >= 0) & (a_old >= 0)
                np.testing.assert_array_equal(a_new[both], a_old[both])
    T.main(["--out", str(tmp_path), "--num", "1", "--frames", "8", "--moves", "scroll"])
    assert '"moves": "scroll"' in (tmp_path / "train" / "topdown.json").read_text()
    with pytest.raises(ValueError, match="config.data.topdown.moves"):
        T.generate_trajectories(seed=1, num=1, length=4, moves="fly")


def test_shift_stats_of_exactly_shifted_tokens():
    """scripts/token_shift_stats.py on token videos that are exact shifts: every interior token is shift-exact."""
    import importlib.util  # noqa: PLC0415
    import pathlib  # noqa: PLC0415

    path = pathlib.Path(__file__).parents[1] / "scripts" / "token_shift_stats.py"
    spec = importlib.util.spec_from_file_location("token_shift_stats", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    world = rng.integers(0, 50, (40, 40))
    acts = np.array([[T.EAST, T.EAST, T.SOUTH, T.STAY, T.WEST, T.NORTH]])
    pos, frames = np.array([10, 10]), []
    for a in acts[0]:
        frames.append(world[pos[0] : pos[0] + 8, pos[1] : pos[1] + 8])
        pos = pos + T.MOVES[int(a)]
    res = mod.shift_stats(np.stack(frames)[None], acts)
    assert res["shift_exact_of_interior"] == 1.0 and 0.8 < res["interior_of_changed"] < 1.0
    assert res["edge_of_changed"] > 0


def test_carried_agreement_of_real_frozen_and_redrawn_videos(small):
    """data/topdown.carried_agreement: 1 on the world's own videos (tile ids as tokens), lower when a frame
    fails to move or redraws content, about 1 / V on random tokens; shapes are checked."""
    video, actions = small
    tiles = video.reshape(3, 40, T.VIEW, T.CELL, T.VIEW, T.CELL, 3).transpose(0, 1, 2, 4, 3, 5, 6)
    _, ids = np.unique(tiles.reshape(-1, T.CELL * T.CELL * 3), axis=0, return_inverse=True)
    tokens = ids.reshape(3, 40, T.VIEW, T.VIEW)
    share, count = T.carried_agreement(tokens, actions)
    assert share == 1.0 and count > 3 * 39 * 40
    frozen = tokens.copy()
    f = int(np.argmax(actions[0] == T.EAST))
    frozen[0, f + 1] = frozen[0, f]  # frame f + 1 does not move
    assert T.carried_agreement(frozen, actions)[0] < 1.0
    redrawn = tokens.copy()
    redrawn[:, 20:] = np.random.default_rng(0).integers(0, 64, redrawn[:, 20:].shape)
    assert 0.45 < T.carried_agreement(redrawn, actions)[0] < 0.55  # the second half: ~1/64
    with pytest.raises(ValueError, match="expected"):
        T.carried_agreement(tokens[..., :4], actions)
    with pytest.raises(ValueError, match=r"action ids must be in \[0, 5\)"):
        T.carried_agreement(tokens, actions + 5)
