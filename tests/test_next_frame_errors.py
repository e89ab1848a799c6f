"""scripts/next_frame_errors.py: the error categories of next-frame predictions on moved tokens."""

import numpy as np
import pytest

from maskflow_jax.data.topdown import EAST, NORTH, STAY, WEST
from scripts import next_frame_errors as nfe


def _moved(rng, move, n=3, h=8, w=8):
    """prev (n, h, w) random codes and truth = prev shifted by the camera move `move` (new edge random)."""
    dr, dc = {WEST: (0, -1), EAST: (0, 1), NORTH: (-1, 0)}[move]
    prev = rng.permutation(n * h * w).reshape(n, h, w)  # distinct codes: no accidental matches
    truth = rng.integers(10**6, 2 * 10**6, (n, h, w))  # entering content: never in prev
    for i in range(h):
        for j in range(w):
            if 0 <= i + dr < h and 0 <= j + dc < w:
                truth[:, i, j] = prev[:, i + dr, j + dc]
    return prev, truth


@pytest.mark.parametrize("move", [WEST, EAST, NORTH])
def test_a_perfect_shift_is_all_correct_and_copying_is_all_copy(move):
    prev, truth = _moved(np.random.default_rng(move), move)
    moves = np.full(len(prev), move)
    good = nfe.classify(truth, truth, prev, moves)
    assert good["correct"] == sum(good.values()) > 0
    copy = nfe.classify(prev, truth, prev, moves)
    assert copy["copy"] == sum(copy.values()) == good["correct"]
    # 7 x 8 sources inside the view, less the agent's cell and the cell whose source is the agent's.
    assert good["correct"] == len(prev) * (7 * 8 - 2)


def test_the_opposite_move_is_counted_as_opposite():
    prev, truth = _moved(np.random.default_rng(0), EAST)
    _, wrong = _moved(np.random.default_rng(0), WEST)  # the same prev, shifted the other way
    counts = nfe.classify(wrong, truth, prev, np.full(len(prev), EAST))
    # Columns 1..6 (less the agent's cell (4, 4) and (4, 3), whose source it is) hold the token one step
    # west: "opposite". Column 0's prediction is new content, in no previous frame: "other".
    assert counts == dict(
        correct=0, copy=0, opposite=3 * (8 * 6 - 2), perpendicular=0, elsewhere_in_previous=0, other=3 * 8
    )


def test_stay_frames_and_shape_errors():
    prev, truth = _moved(np.random.default_rng(1), EAST)
    assert sum(nfe.classify(truth, truth, prev, np.full(len(prev), STAY)).values()) == 0
    with pytest.raises(ValueError, match="pred, truth, prev"):
        nfe.classify(truth[0], truth, prev, np.zeros(len(prev)))


def test_code_usage():
    used, perplexity = nfe.code_usage(np.array([0, 0, 1, 1, 2, 2, 3, 3]), vocab=16)
    assert used == 4 and perplexity == pytest.approx(4.0)
