"""Ordered read-ahead: load items in worker threads, a bounded number ahead, and yield them in order.

Used by the readers that decode whole files (DMLab .npz, video files) while the consumer writes records.
"""

import collections
import concurrent.futures


def read_ahead(items, load, workers):
    """Yields (item, load(item)) in the order of `items`, with up to 2 x workers loads in flight in
    `workers` threads (>= 1). An exception raised by `load` propagates when its item is reached."""
    workers = max(1, int(workers))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(load, item)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield item, future.result()
