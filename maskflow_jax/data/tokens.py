"""The token cache (`--mode=tokenize`) and the iterator over token clips that training reads.

Every video of a prepared pixel split is resized to `data.resize_to`, tokenized frame by frame
and stored as `video` int32 (T, h, w) (+ `actions`) in `<token_dir>/<split>-*.array_record`, the
same record format as the pixels, so the grain pipeline reads token clips exactly like pixel clips.

Resumable: videos are tokenized in parts of `PART_VIDEOS`, each written atomically to
`<token_dir>/parts/<split>/<k>.npz`; a restarted run skips finished parts, so no video is
duplicated or missing. The records are assembled from the parts at the end.
"""

import os

import jax
import numpy as np
from absl import logging

from maskflow_jax.data import loader, records
from maskflow_jax.data.procedural import save_npz

PART_VIDEOS = 16


def token_dir(cfg, workdir):
    """Where the token cache lives: data.token_cache, else <workdir>/tokens."""
    return cfg.data.token_cache or os.path.join(workdir, "tokens")


def _part_path(out, split, k):
    return os.path.join(out, "parts", split, f"{k:05d}.npz")


def tokenize_split(cfg, workdir, split, encode_fn, progress=True):
    """Tokenizes one prepared split into the token cache; returns the token records' metadata.

    encode_fn: frames uint8 (N, H, W, 3) at data.resize_to -> tokens int32 (N, h, w).
    """
    out = token_dir(cfg, workdir)
    fingerprint = {
        "resize_to": cfg.data.resize_to,
        "n_embed": cfg.tokenizer.n_embed,
        "tokenizer": cfg.tokenizer.init_from or os.path.join(workdir, "tokenizer"),
    }
    if records.is_prepared(out, split, fingerprint):
        return records.read_metadata(out, split)
    source = records.RecordSource(loader.resolve_prepared_dir(cfg.data, workdir), split)
    n = len(source)
    parts = range(0, -(-n // PART_VIDEOS))
    mine = [k for k in parts if k % jax.process_count() == jax.process_index()]
    bar = None
    if progress and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(total=len(parts), desc=f"tokenize {split}", unit="part")
    for k in mine:
        path = _part_path(out, split, k)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            arrays = {}
            for i in range(k * PART_VIDEOS, min(n, (k + 1) * PART_VIDEOS)):
                item = source[i]
                video = loader.resize_video(np.asarray(item["video"]), cfg.data.resize_to)
                arrays[f"video_{i}"] = np.asarray(encode_fn(video), np.int32)
                if item.get("actions") is not None:
                    arrays[f"actions_{i}"] = np.asarray(item["actions"])
            save_npz(path, **arrays)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"tokenize {split} parts")

    def items():
        for k in parts:
            with np.load(_part_path(out, split, k), allow_pickle=False) as part:
                for i in range(k * PART_VIDEOS, min(n, (k + 1) * PART_VIDEOS)):
                    yield {
                        "video": part[f"video_{i}"],
                        "actions": part[f"actions_{i}"] if f"actions_{i}" in part.files else None,
                    }

    meta = None
    if jax.process_index() == 0:
        meta = records.prepare_split(items(), out, split, fingerprint=fingerprint, force=True)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"tokenize {split} records")
    return meta or records.read_metadata(out, split)


class TokenClips:
    """Wraps a grain iterator of {"video": tokens, ...} clips as {"tokens": (b, F, h, w), ["actions"]};
    exposes the grain iterator as `.wrapped` so its position is checkpointed."""

    def __init__(self, wrapped, use_actions):
        self.wrapped, self.use_actions = wrapped, use_actions

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.wrapped)
        out = {"tokens": np.asarray(batch["video"], np.int32)}
        if self.use_actions and "actions" in batch:
            out["actions"] = np.asarray(batch["actions"], np.int32)
        return out


def make_token_iterator(cfg, workdir, split=None):
    """The training iterator over token clips of the cache (see `loader.make_train_iterator`)."""
    out = token_dir(cfg, workdir)
    meta = records.read_metadata(out, split or cfg.data.train_split)
    logging.info("token clips from %s (%d videos)", out, meta["count"])
    # Token clips (T, h, w) are never resized: the pipeline resizes only (T, H, W, 3) pixels.
    inner = loader.make_train_iterator(cfg.data, split, seed=cfg.seed, prepared_dir=out)
    return TokenClips(inner, cfg.data.use_actions)


def tokenize_dataset(cfg, workdir, encode_fn):
    """Prepares the pixel splits if needed, then caches the tokens of the train and eval splits.

    encode_fn: the run's tokenizer's encode (trained, or imported via tokenizer.init_from), as in tokenize_split.
    """
    loader.prepare_data(cfg, workdir)
    metas = {
        split: tokenize_split(cfg, workdir, split, encode_fn) for split in (cfg.data.train_split, cfg.data.eval_split)
    }
    counts = {split: meta["count"] for split, meta in metas.items()}
    return {"summary": f"tokens of {counts} videos in {token_dir(cfg, workdir)}", "counts": counts}
