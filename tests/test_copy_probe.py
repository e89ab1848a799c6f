"""The copy probe (scripts/copy_probe.py): its clips hold the copies it scores, and it runs end to end."""

import numpy as np

from scripts import copy_probe


def test_neighbour_clips_pair_their_columns():
    clips = copy_probe.neighbour_clips(3, 4, 128, np.random.default_rng(0))
    assert clips.shape == (3, 4, 8, 8) and clips.dtype == np.int32
    np.testing.assert_array_equal(clips[..., 0::2], clips[..., 1::2])
    assert len(np.unique(clips)) > 60  # i.i.d. otherwise


def test_shift_clips_move_as_their_actions_say():
    clips, actions = copy_probe.shift_clips(6, 40, 128, np.random.default_rng(1))
    assert set(np.unique(actions)) == {0, 1, 2, 3, 4}
    for n in range(6):
        for f in range(39):
            dr, dc = copy_probe.MOVES[int(actions[n, f])]
            moved = np.roll(clips[n, f], (-dr, -dc), axis=(0, 1))  # frame f seen one move later
            inner = (slice(1, -1), slice(1, -1))  # the entering edge is new content
            np.testing.assert_array_equal(clips[n, f + 1][inner], moved[inner])


def test_run_scores_both_tasks():
    out = copy_probe.run("neighbour", 2, ["model.depth=2", "model.rope=spatial"], test_clips=4)
    assert 0.0 <= out["accuracy_partner_visible"] <= 1.0 and np.isfinite(out["final_loss"])
    out = copy_probe.run("shift", 2, ["model.depth=2"], test_clips=4)
    assert {"changed_accuracy_recorded", "changed_accuracy_shuffled", "copy_accuracy"} <= set(out)
