"""Ordered read-ahead: results come back in order, at most 2 x workers loads run ahead, errors surface."""

import threading
import time

import pytest

from maskflow_jax.data.prefetch import read_ahead


def test_read_ahead_keeps_order_and_bounds_the_loads_in_flight():
    started, lock = [], threading.Lock()

    def load(i):
        with lock:
            started.append(i)
        time.sleep(0.002 * (5 - i % 5))  # later items often finish first
        return i * i

    seen = []
    for item, value in read_ahead(range(20), load, workers=2):
        assert value == item * item
        with lock:
            assert len(started) <= item + 1 + 4  # never more than 2 x workers beyond the one consumed
        seen.append(item)
    assert seen == list(range(20))


def test_read_ahead_raises_the_load_error_at_its_item():
    def load(i):
        if i == 3:
            raise ValueError("bad file 3")
        return i

    got = []
    with pytest.raises(ValueError, match="bad file 3"):
        for item, _ in read_ahead(range(6), load, workers=1):
            got.append(item)
    assert got == [0, 1, 2]
