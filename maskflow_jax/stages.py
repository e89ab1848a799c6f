"""Resumable stages: each stage writes a `<workdir>/stages/<name>.json` marker when it completes,
and is skipped (with its saved summary) when the marker exists. A killed run restarted with the
same command therefore continues at the first unfinished stage; each stage is itself resumable
(checkpoints, per-shard outputs) so work inside a stage is not repeated either.
"""

import json
import os
import time

from absl import logging

from maskflow_jax import files


def marker_path(workdir, name):
    return os.path.join(workdir, "stages", f"{name}.json")


def load_summary(workdir, name):
    """The saved summary dict of a finished stage, or None if it has not finished."""
    path = marker_path(workdir, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_stage(workdir, name, fn, *, is_main=True):
    """Runs `fn() -> dict` unless the stage already finished; returns its summary dict.

    The marker is written atomically (temp file + rename) after `fn` returns, so a stage killed
    halfway is rerun (and resumes from its own checkpoints).
    """
    done = load_summary(workdir, name)
    if done is not None:
        logging.info("[%s] already done: %s", name, done.get("summary", ""))
        return done
    start = time.perf_counter()
    result = dict(fn() or {})
    result["seconds"] = round(time.perf_counter() - start, 2)
    if is_main:
        files.write_json(marker_path(workdir, name), result, indent=1, sort_keys=True)
    logging.info("[%s] done in %.1f s: %s", name, result["seconds"], result.get("summary", ""))
    print(f"[{name}] done in {result['seconds']:.1f} s: {result.get('summary', '')}", flush=True)
    return result
