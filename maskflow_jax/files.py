"""Atomic file writes: a file is either its old content or its complete new content, never half written.

Every writer of a result, marker or cache file goes through `atomic_path` (temporary name next to the
target, then `os.replace`), so a run killed mid-write leaves nothing that a rerun would trust.
"""

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path next to `path` (ending in `suffix`, e.g. ".npz" for `np.savez`); renames it
    onto `path` when the block exits normally and removes it when the block raises. Creates the folder."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_json(path, obj, **dump_kw):
    """Writes `obj` as JSON (json.dump keyword arguments, e.g. indent) plus a newline to `path` atomically."""
    return write_text(path, json.dumps(obj, **dump_kw) + "\n")
