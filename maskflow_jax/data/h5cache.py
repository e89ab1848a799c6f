"""Reader of the authors' HDF5 token caches (docs/data.md), validated up front.

Layout: `video` int (ΣT, h, w) tokens or uint8 (ΣT, 3, H, W) pixels, and `start_index_list` int
(N, 2) with the [start, end) rows of each video. Videos come back as int32 tokens (T, h, w) or uint8
pixels (T, H, W, 3), ready for `records.prepare_split`.
"""

import numpy as np

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
