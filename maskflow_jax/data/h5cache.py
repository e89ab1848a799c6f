"""Reader and importer of the authors' HDF5 token caches (docs/data.md), validated up front.

Layout: `video` int (ΣT, h, w) tokens or uint8 (ΣT, 3, H, W) pixels, and `start_index_list` int
(N, 2) with the [start, end) rows of each video. Videos come back as int32 tokens (T, h, w) or uint8
pixels (T, H, W, 3), ready for `records.prepare_split`.

Train on the authors' tokens: import each split as this project's token cache, then point
`data.token_cache` at it (the tokenizer must be the one that made them, e.g. vq-f8 with 16384 codes):

    python -m maskflow_jax.data.h5cache --h5 train=dmlab_train.h5 --h5 test=dmlab_test.h5 \
        --out runs/dmlab/tokens --n-embed 16384
    python -m maskflow_jax.main --config=configs/dmlab.py --workdir=runs/dmlab --mode=train \
        --config.data.token_cache=runs/dmlab/tokens
"""

import argparse
import os

import numpy as np

from maskflow_jax.data import records
from maskflow_jax.errors import DataError

EXPECTED = (
    "an HDF5 file with 'video' int (ΣT, h, w) tokens or uint8 (ΣT, 3, H, W) pixels and "
    "'start_index_list' int (N, 2) of [start, end) rows"
)


class H5Cache:
    """Random access to the videos of one HDF5 cache: `len(cache)`, `cache[i]`, iteration."""

    def __init__(self, path, *, min_length=1):
        import h5py  # noqa: PLC0415  (optional dependency, only for these caches)

        self.path = str(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(f"{self.path}: not a readable HDF5 file ({err}); expected {EXPECTED}") from err
        for key in ("video", "start_index_list"):
            if key not in self._file:
                raise DataError(f"{self.path}: missing dataset {key!r} (has {sorted(self._file)}); expected {EXPECTED}")
        self._video = self._file["video"]
        index = np.asarray(self._file["start_index_list"])
        if index.ndim != 2 or index.shape[1] != 2 or not np.issubdtype(index.dtype, np.integer):
            raise DataError(f"{self.path}: 'start_index_list' is {index.dtype} {index.shape}; expected int (N, 2)")
        v = self._video
        tokens = v.ndim == 3 and np.issubdtype(v.dtype, np.integer)
        pixels = v.ndim == 4 and v.dtype == np.uint8 and v.shape[1] == 3
        if not (tokens or pixels):
            raise DataError(f"{self.path}: 'video' is {v.dtype} {v.shape}; expected {EXPECTED}")
        self.is_tokens = tokens
        bad = ~((0 <= index[:, 0]) & (index[:, 0] < index[:, 1]) & (index[:, 1] <= v.shape[0]))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{self.path}: video {i} has rows {index[i].tolist()} outside "
                f"[0, {v.shape[0]}) or empty; 'start_index_list' must hold [start, end)"
            )
        short = (index[:, 1] - index[:, 0]) < min_length
        if short.any():
            i = int(np.argmax(short))
            raise DataError(
                f"{self.path}: video {i} has {int(index[i, 1] - index[i, 0])} frames, "
                f"shorter than the {min_length} a clip needs (config.data.frames)"
            )
        self.index = index

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        """Video i: int32 tokens (T, h, w) or uint8 pixels (T, H, W, 3)."""
        start, end = (int(x) for x in self.index[i])
        arr = np.asarray(self._video[start:end])
        return arr.astype(np.int32) if self.is_tokens else arr.transpose(0, 2, 3, 1)

    def __iter__(self):
        for i in range(len(self)):
            yield {"video": self[i], "actions": None}

    def close(self):
        self._file.close()


def import_token_cache(h5_path, out_dir, split, *, n_embed, min_length=1):
    """Writes the token videos of an HDF5 cache as token records `<out_dir>/<split>-*.array_record`
    (`video` int32 (T, h, w), what `--mode=train` reads from `data.token_cache`); returns their metadata.

    Every id must lie in [0, n_embed) (the codebook; MASK = n_embed is never a data token): a video with
    another id raises DataError naming the file, the video and the fix. A pixel cache is refused (prepare
    it as pixels instead)."""
    cache = H5Cache(h5_path, min_length=min_length)
    try:
        if not cache.is_tokens:
            raise DataError(f"{cache.path}: holds pixels, not tokens; import token caches only")

        def videos():
            for i in range(len(cache)):
                video = cache[i]
                lo, hi = int(video.min()), int(video.max())
                if lo < 0 or hi >= n_embed:
                    raise DataError(
                        f"{cache.path}: video {i} has token ids in [{lo}, {hi}], outside the codebook [0, {n_embed}); "
                        "pass the tokenizer's codebook size as --n-embed (config.tokenizer.n_embed)"
                    )
                yield {"video": video, "actions": None}

        fingerprint = {"h5": os.path.abspath(cache.path), "n_embed": int(n_embed)}
        return records.prepare_split(videos(), out_dir, split, fingerprint=fingerprint, force=True)
    finally:
        cache.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Import the authors' HDF5 token caches as a token cache.")
    parser.add_argument("--h5", action="append", required=True, help="SPLIT=PATH, once per split")
    parser.add_argument("--out", required=True, help="token cache folder (config.data.token_cache)")
    parser.add_argument("--n-embed", type=int, required=True, help="codebook size (config.tokenizer.n_embed)")
    parser.add_argument("--min-length", type=int, default=1, help="shortest video kept (config.data.frames)")
    args = parser.parse_args(argv)
    for spec in args.h5:
        split, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--h5 {spec!r}: expected SPLIT=PATH")
        meta = import_token_cache(path, args.out, split, n_embed=args.n_embed, min_length=args.min_length)
        print(f"{split}: {meta['count']} videos from {path} -> {args.out}")


if __name__ == "__main__":
    main()
