"""Prepared videos in ArrayRecord files: one record per video, a thin self-describing format.

A record is `MAGIC | uint32 header length | JSON header | 16-byte aligned raw arrays`, the header
listing each array's name, dtype, shape and offset; decoding is `np.frombuffer` (no TFDS feature
decoding). Arrays share a leading time axis: `video` of any dtype/shape — uint8
pixels (T, H, W, 3) or int32 tokens (T, h, w) — and optional `actions` int32 (T,).

A split is `<out_dir>/<split>-<k:05d>.array_record` shards plus `<out_dir>/<split>.json`
(count, per-key dtype and shape, lengths, files). Shards are written under temporary names and
renamed, and the JSON is written last (atomically): a killed prepare leaves no JSON, so
`is_prepared` is False and the split is rebuilt.
"""

import json
import os
import socket
import struct
from pathlib import Path

import numpy as np
from absl import logging

from maskflow_jax import files
from maskflow_jax.data import dmlab
from maskflow_jax.data.prefetch import read_ahead
from maskflow_jax.errors import DataError

MAGIC = b"MFR1"
FORMAT = "maskflow-records/1"
DEFAULT_OPTIONS = "group_size:1,zstd:1"  # group_size:1 = fast random access; zstd:1 = cheap decode
SHARD_BYTES = 1 << 30  # start a new shard after ~1 GiB of records


def _pad16(n):
    return -n % 16


def encode(example):
    """Serialises a dict of numpy arrays (None values are dropped) to bytes."""
    arrays = {k: np.ascontiguousarray(v) for k, v in sorted(example.items()) if v is not None}
    entries, offset = [], 0
    for name, arr in arrays.items():
        entries.append([name, arr.dtype.str, list(arr.shape), offset])
        offset += arr.nbytes + _pad16(arr.nbytes)
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * _pad16(len(MAGIC) + 4 + len(header))
    parts = [MAGIC, struct.pack("<I", len(header)), header]
    for arr in arrays.values():
        parts += [arr.tobytes(), b"\0" * _pad16(arr.nbytes)]
    return b"".join(parts)


def decode(data):
    """Inverse of `encode`: dict of read-only numpy arrays viewing `data` (no copy)."""
    if data[:4] != MAGIC:
        raise DataError(
            f"record does not start with {MAGIC!r}: not written by "
            "maskflow_jax.data.records (delete the prepared folder to rebuild)"
        )
    (size,) = struct.unpack_from("<I", data, 4)
    base = 8 + size
    out = {}
    for name, dtype, shape, offset in json.loads(data[8:base]):
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        out[name] = np.frombuffer(data, dt, count, base + offset).reshape(shape)
    return out


def metadata_path(out_dir, split):
    return Path(out_dir) / f"{split}.json"


def read_metadata(out_dir, split):
    """The split's metadata dict; DataError naming the file and the fix if it is missing."""
    path = metadata_path(out_dir, split)
    if not path.is_file():
        raise DataError(
            f"{path}: missing, so split {split!r} is not prepared (or its prepare "
            "was interrupted); run `ensure_prepared(...)` / --mode=prepare_data, or "
            "point config.data.prepared_dir at a prepared folder"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(
            f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}; delete {Path(out_dir)} to prepare it again"
        )
    return meta


def is_prepared(out_dir, split, fingerprint=None):
    """True if the split's metadata exists, its shards have the recorded sizes and, if given,
    `fingerprint` equals the recorded one."""
    try:
        meta = read_metadata(out_dir, split)
    except (DataError, ValueError):
        return False
    if fingerprint is not None and meta.get("fingerprint") != _jsonable(fingerprint):
        return False
    for name, size in zip(meta["files"], meta["file_bytes"]):
        path = Path(out_dir) / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def _jsonable(x):
    return json.loads(json.dumps(x, sort_keys=True))


class _Spec:
    """Checks that every record has the same keys, dtypes and trailing shapes as the first."""

    def __init__(self):
        self.keys = None
        self.lengths = []

    def check(self, example, where):
        spec = {k: (v.dtype.str, tuple(v.shape)) for k, v in example.items() if v is not None}
        lengths = {v[1][0] if v[1] else None for v in spec.values()}
        if len(lengths) != 1 or None in lengths:
            raise DataError(f"{where}: arrays {spec} must share a leading time axis T")
        if self.keys is None:
            self.keys = {k: [d, [None, *s[1:]]] for k, (d, s) in spec.items()}
        elif set(spec) != set(self.keys) or any([d, [None, *s[1:]]] != self.keys[k] for k, (d, s) in spec.items()):
            raise DataError(
                f"{where}: arrays {spec} differ from the first record's "
                f"{self.keys} (same keys, dtypes and frame shapes needed)"
            )
        self.lengths.append(int(lengths.pop()))


def _as_example(item):
    if isinstance(item, dict):
        return {"video": item["video"], "actions": item.get("actions")}
    if isinstance(item, tuple):
        return {"video": item[0], "actions": item[1] if len(item) > 1 else None}
    return {"video": item, "actions": None}


def _load_files(paths, *, min_length, image_size, skip_corrupt, skipped, workers):
    """Yields (path, example) in order, decompressing up to 2 × workers files ahead in threads."""

    def load(path):
        try:
            video, actions = dmlab.load_video(path, min_length=min_length, image_size=image_size)
            return {"video": video, "actions": actions}
        except DataError as err:
            if not skip_corrupt:
                raise
            return err

    for path, result in read_ahead(paths, load, workers):
        if isinstance(result, DataError):
            skipped.append(str(path))
            logging.warning("skipping bad file (%d so far): %s", len(skipped), result)
            continue
        yield path, result


def prepare_split(
    source,
    out_dir,
    split,
    *,
    min_length=1,
    image_size=None,
    skip_corrupt=False,
    fingerprint=None,
    options=DEFAULT_OPTIONS,
    shard_bytes=SHARD_BYTES,
    workers=2,
    force=False,
):
    """Writes the videos of `source` to `<out_dir>/<split>-*.array_record` + `<split>.json`.

    Args:
      source: a `dmlab.DmlabSplit`, a list of `.npz` paths (loaded and validated in `workers`
        threads), or any iterable of dicts {"video": (T, ...), "actions": (T,) | None}, arrays
        (video only) or (video, actions) tuples, e.g. token caches (T, h, w) int32. An iterable
        with a `skipped` list (names or (name, message)) has those recorded as skipped.
      min_length, image_size, skip_corrupt: validation of `.npz` files (see `dmlab.load_video`).
      fingerprint: JSON-able description of the source; a prepared split with another
        fingerprint is rebuilt.
      options: ArrayRecord writer options (keep group_size:1 for random access).
    Returns:
      The metadata dict (also in `<out_dir>/<split>.json`).
    """
    from array_record.python.array_record_module import ArrayRecordWriter  # noqa: PLC0415

    out_dir = Path(out_dir)
    if not force and is_prepared(out_dir, split, fingerprint):
        logging.info("%s: split %r already prepared", out_dir, split)
        return read_metadata(out_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = []
    if isinstance(source, dmlab.DmlabSplit):
        min_length, image_size = source.min_length, source.image_size
        skip_corrupt, source = source.skip_corrupt, source.files
    if isinstance(source, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in source):
        items = _load_files(
            source,
            min_length=min_length,
            image_size=image_size,
            skip_corrupt=skip_corrupt,
            skipped=skipped,
            workers=workers,
        )
    else:
        items = ((f"item {i}", _as_example(x)) for i, x in enumerate(source))

    tag = f".tmp-{socket.gethostname()}-{os.getpid()}"  # unique per writer: hosts never clash
    spec, shards, writer, shard_size = _Spec(), [], None, 0
    try:
        for where, example in items:
            spec.check(example, where)
            if writer is None or shard_size >= shard_bytes:
                if writer is not None:
                    writer.close()
                shards.append(f"{split}-{len(shards):05d}.array_record")
                writer, shard_size = ArrayRecordWriter(str(out_dir / (shards[-1] + tag)), options), 0
            data = encode(example)
            writer.write(data)
            shard_size += len(data)
        if writer is not None:
            writer.close()
        # Readers that skip bad files themselves (e.g. video_folder.VideoFolderSplit) list them.
        skipped += [str(s[0] if isinstance(s, tuple) else s) for s in getattr(source, "skipped", ())]
    except BaseException:
        if writer is not None:
            writer.close()
        for name in shards:  # leave nothing half-written behind
            (out_dir / (name + tag)).unlink(missing_ok=True)
        raise
    if not shards:
        raise DataError(
            f"prepare_split({split!r}): the source yielded no valid videos "
            f"({len(skipped)} skipped); check config.data.root"
        )
    for name in shards:
        os.replace(out_dir / (name + tag), out_dir / name)
    meta = {
        "format": FORMAT,
        "split": split,
        "count": len(spec.lengths),
        "keys": spec.keys,
        "lengths": spec.lengths,
        "files": shards,
        "file_bytes": [(out_dir / n).stat().st_size for n in shards],
        "options": options,
        "skipped": skipped,
        "fingerprint": _jsonable(fingerprint),
    }
    files.write_text(metadata_path(out_dir, split), json.dumps(meta))
    if skipped:
        logging.warning("%s: prepared %d videos, skipped %d bad files", split, meta["count"], len(skipped))
    return meta


class RecordSource:
    """Random access to a prepared split (grain's RandomAccessDataSource protocol).

    `source[i]` is the decoded dict of record i, e.g. {"video": uint8 (T, H, W, 3),
    "actions": int32 (T,)}; `source.lengths[i]` is its T without reading it.
    """

    def __init__(self, out_dir, split):
        import grain  # noqa: PLC0415

        self.meta = read_metadata(out_dir, split)
        self.lengths = np.asarray(self.meta["lengths"], np.int64)
        self._src = grain.sources.ArrayRecordDataSource([str(Path(out_dir) / f) for f in self.meta["files"]])

    def __len__(self):
        return len(self._src)

    def __getitem__(self, i):
        return decode(self._src[i])

    def __getitems__(self, indices):
        return [decode(b) for b in self._src.__getitems__(indices)]

    def __repr__(self):
        return f"RecordSource({self.meta['split']!r}, count={self.meta['count']})"
