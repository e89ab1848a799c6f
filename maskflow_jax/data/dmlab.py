"""DMLab trajectories (TECO's DMLab-40k layout, docs/data.md) with validation that names the file.

Layouts:
    <root>/{train|training}/**/<name>.npz     TECO: train/<worker>/<i>.npz (names repeat per worker)
    <root>/{test|validation}/**/<name>.npz
    <root>/<name>.npz                          a flat folder = one split (served for any split name)
Files are sorted by relative path. Each `.npz` holds `video` uint8 (T, H, W, 3) and optionally
integer `actions` (T,) (0 left, 1 right, 2 forward; taken after frame t); other keys are ignored.
Any bad file raises `DataError` naming the file, or, with `skip_corrupt`, is logged and counted.
"""

import io
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
from absl import logging

from maskflow_jax.errors import DataError

SPLIT_ALIASES = {
    "train": ("train", "training"),
    "training": ("training", "train"),
    "test": ("test", "validation"),
    "validation": ("validation", "test"),
}
EXPECTED = (
    "an .npz (np.savez[_compressed], no pickles) with 'video' uint8 (T, H, W, 3) and optional integer 'actions' (T,)"
)


def list_split(root, split):
    """Sorted `.npz` paths of `split` under `root` (see the module docstring for the layouts).

    Raises DataError if `root` is missing, the split is missing, or its folder holds no `.npz`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data root {str(root)!r} does not exist or is not a folder; set "
            "config.data.root to a folder with train/ and test/ (or .npz files)"
        )
    names = SPLIT_ALIASES.get(split, (split,))
    for name in names:
        folder = root / name
        if folder.is_dir():
            files = sorted((p for p in folder.rglob("*.npz") if p.is_file()), key=lambda p: p.relative_to(folder).parts)
            if not files:
                raise DataError(
                    f"split folder {str(folder)!r} contains no .npz files; expected "
                    f"{folder}/**/<name>.npz, each {EXPECTED}"
                )
            return files
    flat = sorted(p for p in root.glob("*.npz") if p.is_file())
    if flat:
        logging.warning(
            "%s has no %s/ folder: reading its %d .npz files as split %r (a flat "
            "folder is one split; train and eval read the same files)",
            root,
            "|".join(names),
            len(flat),
            split,
        )
        return flat
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise DataError(
        f"no split {split!r} under {str(root)!r} (looked for {list(names)}; found "
        f"folders {present}): expected {root}/{names[0]}/**/*.npz or .npz files "
        f"directly in {root}"
    )


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11 before 3.11.8 can fail when
# compile() runs in several threads at once ("SystemError: AST constructor recursion depth
# mismatch", python/cpython#106905). Files are read in threads, so members are decompressed in
# parallel (zlib releases the GIL) and only the header parse + copy is serialised.
_PARSE_LOCK = threading.Lock()


def _read_array(archive, name):
    raw = archive.read(name + ".npy")
    with _PARSE_LOCK:
        return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def load_video(path, *, min_length=1, image_size=None):
    """Loads and validates one trajectory.

    Args:
      path: the `.npz` file.
      min_length: minimum number of frames T (a clip needs frames × frame_skip).
      image_size: expected H = W, or None to accept any size.
    Returns:
      (video uint8 (T, H, W, 3), actions int32 (T,) or None).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise DataError(f"{path}: a bare .npy array, not an .npz archive; expected {EXPECTED}")
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            if "video" not in names:
                raise DataError(f"{path}: no 'video' array (keys: {sorted(names)}); expected {EXPECTED}")
            video = _read_array(archive, "video")  # decompressing checks the CRC
            actions = _read_array(archive, "actions") if "actions" in names else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(
            f"{path}: unreadable, truncated or corrupt ({type(err).__name__}: {err}); "
            f"expected {EXPECTED}. Re-create or delete the file, or set "
            "config.data.skip_corrupt=True to skip it"
        ) from err
    if video.dtype != np.uint8:
        raise DataError(
            f"{path}: 'video' has dtype {video.dtype}; expected uint8 pixels "
            "(convert with np.clip(v, 0, 255).astype(np.uint8))"
        )
    if video.ndim != 4 or video.shape[-1] != 3:
        raise DataError(f"{path}: 'video' has shape {video.shape}; expected (T, H, W, 3) RGB")
    if image_size is not None and video.shape[1:3] != (image_size, image_size):
        raise DataError(
            f"{path}: frames are {video.shape[1]}x{video.shape[2]}; expected "
            f"{image_size}x{image_size} (config.data.image_size)"
        )
    if video.shape[0] < min_length:
        raise DataError(
            f"{path}: {video.shape[0]} frames, shorter than the {min_length} a clip "
            "needs (config.data.frames x config.data.frame_skip)"
        )
    if actions is not None:
        if actions.shape != (video.shape[0],) or not np.issubdtype(actions.dtype, np.integer):
            raise DataError(
                f"{path}: 'actions' has shape {actions.shape} and dtype {actions.dtype}; "
                f"expected integers of shape ({video.shape[0]},), one per frame"
            )
        actions = actions.astype(np.int32)
    return video, actions


class DmlabSplit:
    """The validated trajectories of one split, in relative-path order.

    `len(split)` is the number of files; `split[i]` loads file i as {"video", "actions"} (actions
    may be None); iterating yields the same dicts, skipping (and counting in `skipped`) bad files
    when `skip_corrupt` is set, otherwise raising DataError at the first one.
    """

    def __init__(self, root, split, *, min_length=1, image_size=None, skip_corrupt=False):
        self.root, self.split = Path(root), split
        self.files = list_split(root, split)
        self.min_length, self.image_size = min_length, image_size
        self.skip_corrupt = skip_corrupt
        self.skipped = []  # (path, message) of files skipped while iterating

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        video, actions = load_video(self.files[i], min_length=self.min_length, image_size=self.image_size)
        return {"video": video, "actions": actions}

    def __iter__(self):
        for i, path in enumerate(self.files):
            try:
                yield self[i]
            except DataError as err:
                if not self.skip_corrupt:
                    raise
                self.skipped.append((str(path), str(err)))
                logging.warning("skipping bad file (%d so far): %s", len(self.skipped), err)


def has_split(root, split):
    """True if `list_split(root, split)` would find files (no exception, no warning for folders)."""
    root = Path(root)
    if any((root / n).is_dir() for n in SPLIT_ALIASES.get(split, (split,))):
        return True
    return root.is_dir() and any(root.glob("*.npz"))
