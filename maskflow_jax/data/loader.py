"""The data loader: a grain input pipeline over prepared ArrayRecord videos, delivering global `jax.Array` batches.

Training (`make_train_iterator`):
    records --global shuffle (seeded, reshuffled per epoch)--> repeat --clip sampler--> host shard
    [process_index::process_count] --> batch (data.batch_size / process_count) --> threads/prefetch
The clip sampler is a grain `RandomMap`: its rng comes from (seed, position in the repeated
stream), i.e. from (seed, epoch, index), so every host and every resumed run sees the same clips.
The iterator is checkpointable (`get_state`/`set_state`, or `grain.checkpoint.CheckpointSave`
inside an orbax Composite); a restored iterator yields exactly the batches that would have come next.
Evaluation (`make_eval_iterator`): in order, not repeated, clips from frame 0, padded to whole
batches with `valid = False` so every host runs the same number of steps.
`ensure_prepared` / `ensure_procedural_data` build the raw data (maze) and the records if missing, from
`.npz` trajectories (dmlab.py) or folders of videos / frame folders (video_folder.py, data.name ffs).
Batches: {"video": uint8 (B, F, R, R, 3) or int32 tokens (B, F, h, w), "actions": int32 (B, F)
if data.use_actions, "index": int32 (B,) record ids, ["valid": bool (B,) in eval]}.
"""

import functools
import hashlib
import json
import math
import os
import shutil
import socket
from pathlib import Path

import grain
import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from maskflow_jax.data import dmlab, maze, procedural, records, topdown, video_folder
from maskflow_jax.errors import DataError
from maskflow_jax.parallel.mesh import BATCH_MESH_AXES

# data.name values whose data.root is a folder (or .zip) of videos or frame folders.
VIDEO_FOLDER_NAMES = ("ffs", "video_folder")


def clip_span(frames, frame_skip):
    """Frames of the source video covered by a clip of `frames` frames with stride `frame_skip`."""
    return (frames - 1) * frame_skip + 1


@functools.lru_cache(maxsize=16)
def bilinear_matrix(size_in, size_out):
    """float32 (size_out, size_in) bilinear weights, half-pixel centres, edges clamped (no antialias)."""
    src = np.clip((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0, size_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = (src - lo).astype(np.float32)
    m = np.zeros((size_out, size_in), np.float32)
    np.add.at(m, (np.arange(size_out), lo), 1 - frac)
    np.add.at(m, (np.arange(size_out), hi), frac)
    return m


def resize_video(video, size):
    """Bilinear resize of uint8 frames (F, H, W, C) -> (F, size, size, C), rounded to uint8.

    Two large matrix products (rows, then columns) so BLAS does the work; for accelerators,
    resizing on device after `to_global_batch` moves 16x less data for 64 -> 256.
    """
    f, h, w, c = video.shape
    mh, mw = bilinear_matrix(h, size), bilinear_matrix(w, size)
    x = video.astype(np.float32).transpose(1, 0, 2, 3).reshape(h, f * w * c)  # (H, F·W·C)
    x = (mh @ x).reshape(size, f, w, c).transpose(2, 1, 0, 3).reshape(w, f * size * c)  # (W, F·S·C)
    x = (mw @ x).reshape(size, f, size, c)  # (S_w, F, S_h, C)
    # Convex weights keep values in [0, 255]: +0.5 and truncation round without a clip.
    return (x + 0.5).astype(np.uint8).transpose(1, 2, 0, 3)  # a strided view; batching copies it


class _IndexedSource:
    """Adds the record id to every element (lets tests and logs check sharding and order)."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, i):
        return {**self._source[i], "index": np.int32(i)}


class ClipSampler(grain.transforms.RandomMap):
    """Crops F frames with stride `frame_skip` from a random start, optionally resizes to `resize_to`.

    `random=False` (evaluation) always starts at frame 0.
    """

    def __init__(self, frames, frame_skip=1, resize_to=None, use_actions=False, random=True):
        self.frames, self.frame_skip = frames, frame_skip
        self.resize_to, self.use_actions, self.random = resize_to, use_actions, random

    def __call__(self, element):
        return self.random_map(element, None)

    def random_map(self, element, rng):
        video = element["video"]
        span = clip_span(self.frames, self.frame_skip)
        if len(video) < span:
            raise DataError(
                f"record {int(element['index'])}: {len(video)} frames < {span} "
                "needed by data.frames x data.frame_skip; prepare again with a "
                "matching min_length"
            )
        start = int(rng.integers(0, len(video) - span + 1)) if self.random else 0
        sl = slice(start, start + span, self.frame_skip)
        clip = video[sl]
        if self.resize_to and clip.ndim == 4 and clip.shape[1] != self.resize_to:
            clip = resize_video(clip, self.resize_to)
        out = {"video": clip, "index": element["index"]}
        if self.use_actions:
            out["actions"] = np.asarray(element["actions"][sl], np.int32)
        return out


def _process(process_index, process_count):
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if not 0 <= pi < pc:
        raise ValueError(f"process_index={pi} must be in [0, process_count={pc})")
    return pi, pc


def _per_host_batch(global_batch, pc, field="data.batch_size"):
    if global_batch % pc:
        raise ValueError(f"{field}={global_batch} is not divisible by the {pc} processes; use a multiple of {pc}")
    return global_batch // pc


def _seeds(seed, shuffle_seed):
    """Two 32-bit seeds (shuffle, clip crops) derived from the run seed and data.shuffle_seed."""
    a, b = np.random.SeedSequence([int(seed), int(shuffle_seed)]).generate_state(2)
    return int(a), int(b)


def _resolve(value, workdir, default, field):
    if value:
        return Path(value)
    if workdir is None:
        raise ValueError(f"config.{field} is None and no workdir was given; set {field} or pass workdir=")
    return Path(workdir) / "data" / default


def resolve_raw_dir(data_cfg, workdir=None):
    """Raw videos: data.root, else <workdir>/data/raw."""
    return _resolve(data_cfg.root, workdir, "raw", "data.root")


def resolve_prepared_dir(data_cfg, workdir=None):
    """Prepared records: data.prepared_dir, else <workdir>/data/prepared."""
    return _resolve(data_cfg.prepared_dir, workdir, "prepared", "data.prepared_dir")


def _open_source(data_cfg, split, prepared, workdir, span):
    prepared = Path(prepared) if prepared else resolve_prepared_dir(data_cfg, workdir)
    src = records.RecordSource(prepared, split)
    if src.lengths.size and src.lengths.min() < span:
        raise DataError(
            f"{prepared}/{split}: shortest video has {src.lengths.min()} frames, "
            f"a clip needs {span} (data.frames x data.frame_skip); lower them or "
            "prepare longer videos"
        )
    if data_cfg.use_actions and "actions" not in src.meta["keys"]:
        raise DataError(
            f"{prepared}/{split}: data.use_actions=True but the prepared videos "
            "have no 'actions'; set data.use_actions=False"
        )
    return src


def _read_options(data_cfg):
    return grain.ReadOptions(num_threads=data_cfg.num_threads, prefetch_buffer_size=data_cfg.prefetch)


def make_train_dataset(
    data_cfg,
    split=None,
    *,
    seed,
    process_index=None,
    process_count=None,
    prepared_dir=None,
    workdir=None,
    num_epochs=None,
):
    """The training `grain.IterDataset` (see the module docstring); iterate it with `iter()`."""
    pi, pc = _process(process_index, process_count)
    split = split or data_cfg.train_split
    span = clip_span(data_cfg.frames, data_cfg.frame_skip)
    src = _open_source(data_cfg, split, prepared_dir, workdir, span)
    shuffle_seed, clip_seed = _seeds(seed, data_cfg.shuffle_seed)
    sampler = ClipSampler(data_cfg.frames, data_cfg.frame_skip, data_cfg.resize_to, data_cfg.use_actions)
    ds = (
        grain.MapDataset.source(_IndexedSource(src))
        .shuffle(seed=shuffle_seed)
        .repeat(num_epochs)
        .random_map(sampler, seed=clip_seed)
    )
    ds = ds[pi::pc].batch(_per_host_batch(data_cfg.batch_size, pc), drop_remainder=True)
    return ds.to_iter_dataset(_read_options(data_cfg))


def make_train_iterator(
    data_cfg,
    split=None,
    *,
    seed,
    process_index=None,
    process_count=None,
    prepared_dir=None,
    workdir=None,
    num_epochs=None,
):
    """Checkpointable iterator over this host's training batches (infinite if num_epochs is None).

    Args:
      data_cfg: config.data (frames, frame_skip, resize_to, batch_size, shuffle_seed, use_actions,
        num_threads, prefetch, prepared_dir).
      split: prepared split name (default data.train_split).
      seed: run seed; with data.shuffle_seed it seeds the shuffle and the clip crops.
      process_index, process_count: this host and the host count (default: from jax).
      prepared_dir, workdir: where the records are (default data.prepared_dir, else
        <workdir>/data/prepared).
    Returns:
      A grain DatasetIterator of dicts with per-host arrays (B = data.batch_size / process_count).
    """
    return iter(
        make_train_dataset(
            data_cfg,
            split,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            prepared_dir=prepared_dir,
            workdir=workdir,
            num_epochs=num_epochs,
        )
    )


def make_eval_iterator(
    data_cfg,
    split=None,
    *,
    frames=None,
    batch_size=None,
    num_videos=None,
    process_index=None,
    process_count=None,
    prepared_dir=None,
    workdir=None,
):
    """Iterator over this host's evaluation batches: videos in order, clips from frame 0.

    Host p gets videos p, p + P, ...; every host yields the same number of batches, the last ones
    padded with copies of video 0 marked `valid = False`.

    Args:
      frames: clip length (default data.frames), e.g. the rollout horizon.
      batch_size: global batch (default data.batch_size).
      num_videos: use the first num_videos videos (default all).
    """
    pi, pc = _process(process_index, process_count)
    split = split or data_cfg.eval_split
    frames = frames or data_cfg.frames
    src = _open_source(data_cfg, split, prepared_dir, workdir, clip_span(frames, data_cfg.frame_skip))
    total = min(len(src), num_videos or len(src))
    per_host = _per_host_batch(batch_size or data_cfg.batch_size, pc, "batch_size" if batch_size else "data.batch_size")
    steps = math.ceil(math.ceil(total / pc) / per_host)
    sampler = ClipSampler(frames, data_cfg.frame_skip, data_cfg.resize_to, data_cfg.use_actions, random=False)
    indexed = _IndexedSource(src)

    def load(k):
        i = pi + k * pc
        out = sampler(indexed[i if i < total else 0])
        out["valid"] = np.bool_(i < total)
        return out

    ds = grain.MapDataset.range(steps * per_host).map(load).batch(per_host)
    return iter(ds.to_iter_dataset(_read_options(data_cfg)))


def to_global_batch(batch, mesh, batch_axes=BATCH_MESH_AXES):
    """Per-host numpy batch -> global `jax.Array`s sharded along dim 0 over `batch_axes`.

    Axes missing from `mesh` are ignored (a 1-axis "data" mesh works). The global batch is the
    concatenation of the hosts' batches in process order.
    """
    axes = tuple(a for a in batch_axes if a in mesh.axis_names)
    shards = math.prod(mesh.shape[a] for a in axes)
    sharding = NamedSharding(mesh, PartitionSpec(axes))

    def put(x):
        x = np.asarray(x)
        if (x.shape[0] * jax.process_count()) % shards:
            raise ValueError(
                f"global batch {x.shape[0] * jax.process_count()} is not divisible by "
                f"the {shards} devices of mesh axes {axes}; set data.batch_size to a "
                f"multiple of {shards}"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)


def _tag():
    return f".tmp-{socket.gethostname()}-{os.getpid()}"


def _marker_matches(marker, want):
    return marker.is_file() and json.loads(marker.read_text()) == want


PROCEDURAL_WORLDS = {"maze": maze, "topdown": topdown}  # data.name -> generator module (built-in data)


def ensure_procedural_data(data_cfg, workdir):
    """Generates the splits of a built-in world (data.name in PROCEDURAL_WORLDS) if missing and
    prepares their records (if missing).

    Raw: data.root or <workdir>/data/raw (train: data.<name>.num_train videos with seed
    data.<name>.seed; eval: data.<name>.num_test with seed + 1). Returns a dict of paths and counts.
    """
    world = PROCEDURAL_WORLDS[data_cfg.name]
    raw = resolve_raw_dir(data_cfg, workdir)
    m = data_cfg[data_cfg.name]
    for split, num, seed in (
        (data_cfg.train_split, m.num_train, m.seed),
        (data_cfg.eval_split, m.num_test, m.seed + 1),
    ):
        options = procedural.world_options(world, m)
        want = procedural.marker_contents(world, num, m.length, seed, shard_size=100, **options)
        marker, folder = procedural.split_marker(raw, split, world), raw / split
        done = functools.partial(_marker_matches, marker, want)
        if done():
            continue
        if folder.exists() and not marker.is_file():
            raise DataError(
                f"{folder} exists but was not written by the {world.NAME} generator (no "
                f"{marker.name}); delete it or set config.data.root elsewhere"
            )
        tmp = raw / (split + _tag())  # generate aside, then rename: readers never see half a split
        logging.info("generating %d %s trajectories of %d frames into %s", num, world.NAME, m.length, folder)
        procedural.write_split(world, tmp, split, num, m.length, seed, shard_size=100, **options)
        if not done():  # another host may have finished first (shared filesystem)
            if folder.exists():
                shutil.rmtree(folder)  # ours, generated with other parameters
            try:
                os.replace(tmp / split, folder)
            except OSError:
                if not done():
                    raise
        shutil.rmtree(tmp, ignore_errors=True)
    return ensure_prepared(data_cfg, workdir)


def ensure_prepared(data_cfg, workdir=None):
    """Prepares the train and eval splits of data.root into records unless already prepared.

    data.name in VIDEO_FOLDER_NAMES reads a folder (or .zip) of videos or frame folders
    (`video_folder.py`), centre-cropped and resized to data.image_size; other names read `.npz`
    trajectories (`dmlab.py`). The fingerprint (root, file names and sizes, the maze parameters,
    min length, image size) makes a changed source or clip length trigger a rebuild.
    """
    raw, prepared = resolve_raw_dir(data_cfg, workdir), resolve_prepared_dir(data_cfg, workdir)
    span = clip_span(data_cfg.frames, data_cfg.frame_skip)
    out = {"raw": str(raw), "prepared": str(prepared)}
    for split in (data_cfg.train_split, data_cfg.eval_split):
        if data_cfg.name in VIDEO_FOLDER_NAMES:
            reader = video_folder.VideoFolderSplit(
                raw, split, min_length=span, size=data_cfg.image_size, skip_corrupt=data_cfg.skip_corrupt
            )
            listing, count = reader.listing(), len(reader)
        else:
            reader = dmlab.DmlabSplit(
                raw, split, min_length=span, image_size=data_cfg.image_size, skip_corrupt=data_cfg.skip_corrupt
            )
            listing = "\n".join(f"{p.relative_to(raw)} {p.stat().st_size}" for p in reader.files)
            count = len(reader.files)
        world = PROCEDURAL_WORLDS.get(data_cfg.name, maze)
        marker = procedural.split_marker(raw, split, world)
        fingerprint = {
            "root": str(raw.resolve()),
            "files": count,
            "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
            world.NAME: json.loads(marker.read_text()) if marker.is_file() else None,
            "min_length": span,
            "image_size": data_cfg.image_size,
        }
        if data_cfg.name in VIDEO_FOLDER_NAMES:
            fingerprint["video_folder"] = video_folder.FORMAT_VERSION
        meta = records.prepare_split(reader, prepared, split, fingerprint=fingerprint)
        out[split] = {"count": meta["count"], "skipped": len(meta["skipped"])}
    return out


def prepare_data(config, workdir):
    """The data of a run (`--mode=prepare_data`, the pipeline's data stage): generation of a built-in world
    (data.name in PROCEDURAL_WORLDS) and record preparation (from .npz trajectories, or from videos for
    data.name in VIDEO_FOLDER_NAMES)."""
    if config.data.name in PROCEDURAL_WORLDS:
        return ensure_procedural_data(config.data, workdir)
    return ensure_prepared(config.data, workdir)
