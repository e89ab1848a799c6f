"""The shift probe (scripts/shift_probe.py): its videos move exactly as their actions say,
and its check scores fake models as the next-frame check defines."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from maskflow_jax import inference
from maskflow_jax.data import records
from scripts import shift_probe
from tests.factories import tiny_config

V = 16  # codebook size; MASK = V


def _frames(num=12, h=3, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, V, (num, h, w))


def test_moves_are_exact_shifts_recorded_by_actions():
    videos, actions = shift_probe.shift_videos(
        _frames(), 6, 60, np.random.default_rng(1), p_move=0.8, min_run=3, max_run=7
    )
    assert videos.shape == (6, 60, 3, 5) and videos.dtype == np.int32 and actions.shape == (6, 60)
    counts = np.bincount(actions[:, :-1].ravel(), minlength=3)
    assert counts.min() > 0  # the fixture moves both ways and also stays
    for n in range(6):
        for f in range(59):
            a, b = videos[n, f], videos[n, f + 1]
            if actions[n, f] == shift_probe.LEFT:  # the view moves left: content moves right
                np.testing.assert_array_equal(b[:, 1:], a[:, :-1])
            elif actions[n, f] == shift_probe.RIGHT:
                np.testing.assert_array_equal(b[:, :-1], a[:, 1:])
            else:
                np.testing.assert_array_equal(b, a)
    # runs of one action last at least min_run frames (the last run of a video may be cut short)
    for n in range(6):
        edges = np.flatnonzero(np.diff(actions[n])) + 1
        runs = np.diff(np.concatenate([[0], edges]))
        assert len(runs) == 0 or runs.min() >= 3


def test_p_move_extremes_and_errors():
    still, acts = shift_probe.shift_videos(_frames(), 2, 20, np.random.default_rng(0), p_move=0.0)
    assert (acts == shift_probe.STAY).all() and (still == still[:, :1]).all()
    _, acts = shift_probe.shift_videos(_frames(), 2, 20, np.random.default_rng(0), p_move=1.0)
    assert (acts != shift_probe.STAY).all()
    with pytest.raises(ValueError, match="p_move"):
        shift_probe.shift_videos(_frames(), 1, 8, np.random.default_rng(0), p_move=1.5)
    with pytest.raises(ValueError, match="p_noise"):
        shift_probe.shift_videos(_frames(), 1, 8, np.random.default_rng(0), p_noise=-0.1)
    with pytest.raises(ValueError, match="frames must be"):
        shift_probe.shift_videos(np.zeros((4, 4)), 1, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_run"):
        shift_probe.shift_videos(_frames(), 1, 8, np.random.default_rng(0), min_run=5, max_run=2)


def test_noise_replaces_the_given_share_of_tokens_and_keeps_the_motion():
    clean, acts = shift_probe.shift_videos(_frames(), 6, 60, np.random.default_rng(5))
    noisy, noisy_acts = shift_probe.shift_videos(_frames(), 6, 60, np.random.default_rng(5), p_noise=0.3)
    np.testing.assert_array_equal(acts, noisy_acts)
    # a replaced token differs unless the random draw hits the same id (~1/16 here)
    assert 0.3 * 0.8 < (noisy != clean).mean() < 0.3
    assert noisy.min() >= 0 and noisy.max() < V


def _probe_workdir(tmp_path, action_cond):
    """A source token cache of random frames, the probe cache built from it, and a tiny config whose
    denoiser is replaced by `model` in the tests."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        records.prepare_split(
            [{"video": rng.integers(0, V, (20, 4, 4)).astype(np.int32), "actions": None} for _ in range(n)], src, split
        )
    work = tmp_path / "probe"
    metas = shift_probe.build(str(src), str(work / "tokens"), num_train=4, num_test=3, length=16, every=2)
    assert {s: m["count"] for s, m in metas.items()} == {"train": 4, "test": 3}
    cfg = tiny_config(frames=4, grid=4, n_embed=V)
    cfg.model.action_cond = cfg.data.use_actions = action_cond
    cfg.sampling.context = 2
    test = records.RecordSource(str(work / "tokens"), "test")
    videos = np.stack([test[i]["video"] for i in range(3)])
    actions = np.stack([test[i]["actions"] for i in range(3)])
    return work, cfg, videos, actions


def _run_check(monkeypatch, work, cfg, apply):
    model = types.SimpleNamespace(apply=lambda variables, x, t, actions=None: apply(x, actions))
    monkeypatch.setattr(inference, "saved_config", lambda workdir: cfg)
    monkeypatch.setattr(inference, "load_denoiser", lambda c, workdir, use_ema=True: (model, {}, 0))
    rows = shift_probe.check(str(work))  # the sampler's time input without the future-visible control:
    return [r for r in rows if r["time_input"] == cfg.sampling.time_input and not r["visible_future"]]


def _one_hot(pred):
    return jnp.where(jnp.arange(V + 1) == pred[..., None], 10.0, 0.0)


def _previous_frame_and_m(x):
    """The clean frame before the first masked one, and that frame's index m (per clip)."""
    m = jnp.argmax((x == V).any(axis=(2, 3)), axis=1)  # (B,)
    prev = jnp.take_along_axis(x, (m - 1)[:, None, None, None], axis=1)[:, 0]
    return prev, m


def test_check_without_a_probe_cache_names_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "saved_config", lambda workdir: tiny_config())
    with pytest.raises(FileNotFoundError, match="scripts/shift_probe.py build"):
        shift_probe.check(str(tmp_path))


def test_check_scores_a_copying_model_at_the_copy_baseline(tmp_path, monkeypatch):
    work, cfg, videos, _ = _probe_workdir(tmp_path, action_cond=False)

    def copy(x, actions):
        prev, _ = _previous_frame_and_m(x)
        return _one_hot(jnp.broadcast_to(prev[:, None], x.shape))

    rows = _run_check(monkeypatch, work, cfg, copy)
    assert [r["context"] for r in rows] == [2, 3]
    clips = videos.reshape(-1, 4, 4, 4)  # 3 videos x 4 windows of 4 frames
    for r in rows:
        m = r["context"]
        assert r["num_clips"] == 12
        assert r["accuracy"] == pytest.approx(r["copy_accuracy"]) and r["changed_accuracy"] == 0.0
        assert r["copy_accuracy"] == pytest.approx((clips[:, m] == clips[:, m - 1]).mean())


def test_check_passes_actions_and_a_shift_oracle_misses_only_the_entering_column(tmp_path, monkeypatch):
    work, cfg, videos, actions = _probe_workdir(tmp_path, action_cond=True)

    def oracle(x, actions):  # moves the previous frame as the action after it says
        prev, m = _previous_frame_and_m(x)
        act = jnp.take_along_axis(actions, (m - 1)[:, None], axis=1)[:, 0, None, None]
        moved = jnp.where(
            act == shift_probe.LEFT,
            jnp.roll(prev, 1, axis=-1),
            jnp.where(act == shift_probe.RIGHT, jnp.roll(prev, -1, axis=-1), prev),
        )
        return _one_hot(jnp.broadcast_to(moved[:, None], x.shape))

    rows = _run_check(monkeypatch, work, cfg, oracle)
    clips, acts = videos.reshape(-1, 4, 4, 4), actions.reshape(-1, 4)
    for r in rows:
        m = r["context"]
        a, prev = acts[:, m - 1, None, None], clips[:, m - 1]
        moved = np.where(
            a == shift_probe.LEFT, np.roll(prev, 1, -1), np.where(a == shift_probe.RIGHT, np.roll(prev, -1, -1), prev)
        )
        assert r["accuracy"] == pytest.approx((moved == clips[:, m]).mean())
        # wrong at most on the entering column of a moving frame (it may match there by chance)
        assert 1 - (a != shift_probe.STAY).mean() / 4 <= r["accuracy"] and r["accuracy"] > r["copy_accuracy"]
