"""Folders of videos (FaceForensics, docs/data.md) with validation that names the file and the fix.

Layouts (under a folder, or inside a `.zip` whose member paths play the role of the folder):
    <root>/{train|training}/**/<clip>.{avi,mp4,mkv,webm}   one video per clip (the paper's FFS)
    <root>/{test|validation}/**/<clip>.{avi,mp4,mkv,webm}
    <root>/<split>/**/<clip>/<frame>.{jpg,jpeg,png}        frame folders (StyleGAN-V layout)
    <root>/**/...                                          no split folder: the whole root is one
                                                           split, served for any split name
Clips are sorted by relative path; the frames of a frame folder by name, numbers compared as
numbers ("2.png" before "10.png"; zero-padded names sort the same either way). Videos are decoded
with PyAV (FFmpeg). Every frame is centre-cropped to a square and resized to `size` with PIL's
Lanczos filter (antialiased when shrinking), so a clip is uint8 (F, size, size, 3) RGB.
An unreadable, truncated or too-short clip raises `DataError` naming the file, or, with
`skip_corrupt`, is logged and counted in `VideoFolderSplit.skipped`.
"""

import collections
import dataclasses
import io
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from absl import logging

from maskflow_jax.data.dmlab import SPLIT_ALIASES
from maskflow_jax.data.prefetch import read_ahead
from maskflow_jax.errors import DataError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FORMAT_VERSION = 1  # bump when the decoded/cropped pixels change (prepared records are rebuilt)
FIX = "re-encode or delete it, or set config.data.skip_corrupt=True to skip it (skipped files are logged and counted)"
LAYOUTS = (
    "<root>/<split>/**/<clip>.{avi,mp4,mkv,webm}, <root>/<split>/**/<clip>/<frame>.{jpg,png} "
    "or the same without the <split>/ level (a folder or a .zip)"
)
# A decoded video may fall short of the frame count its container declares by this much before
# it is called truncated (rounding of durations, a dropped leading B-frame).
TRUNCATION_TOLERANCE = 0.05


def import_av():
    """PyAV, imported on first use (only video folders need it)."""
    try:
        import av  # noqa: PLC0415
    except ImportError as err:
        raise ImportError("reading videos needs PyAV: pip install -e '.[video]' (or pip install av)") from err
    return av


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: a video file (one member) or a frame folder (its frames, in order)."""

    name: str  # path relative to the root, shown in messages and logs
    kind: str  # "video" | "frames"
    members: tuple  # relative paths of the file(s)
    nbytes: int  # total size on disk (part of the prepared records' fingerprint)


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class _Tree:
    """Read access to the files under a folder or inside a `.zip`, by relative POSIX path."""

    def __init__(self, root):
        self.root = Path(root)
        self.zip = None
        if self.root.is_file() and zipfile.is_zipfile(self.root):
            self.zip = zipfile.ZipFile(self.root)  # reads from several threads are safe (shared lock)
        elif not self.root.is_dir():
            raise DataError(
                f"data root {str(self.root)!r} is not a folder or a .zip file; set "
                f"config.data.root to a folder of videos ({LAYOUTS})"
            )

    def files(self):
        """{relative path: size in bytes} of the media files, skipping hidden and __MACOSX entries."""
        if self.zip is not None:
            found = {i.filename: i.file_size for i in self.zip.infolist() if not i.is_dir()}
        else:
            found = {p.relative_to(self.root).as_posix(): p.stat().st_size for p in self.root.rglob("*") if p.is_file()}
        return {
            rel: size
            for rel, size in found.items()
            if rel.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
            and not any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/"))
        }

    def where(self, rel):
        return f"{self.root}:{rel}" if self.zip is not None else str(self.root / rel)

    def open(self, rel):
        """A path (folder) or a seekable in-memory file (zip member) that PyAV and PIL can read."""
        if self.zip is not None:
            return io.BytesIO(self.zip.read(rel))
        return str(self.root / rel)


def list_split(root, split):
    """(tree, sorted clips) of `split` under `root` (see the module docstring for the layouts).

    Raises DataError if the root is missing, the split is missing while other split folders exist,
    or the split holds no videos or frames.
    """
    tree = _Tree(root)
    files = tree.files()
    tops = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    names = SPLIT_ALIASES.get(split, (split,))
    prefix = next((n + "/" for n in names if n in tops), None)
    if prefix is None:
        others = sorted(tops & set(SPLIT_ALIASES))
        if others:
            field = "eval_split" if names[0] in ("test", "validation") else "train_split"
            raise DataError(
                f"no split {split!r} under {str(root)!r} (looked for {list(names)}; found "
                f"{others}): add {names[0]}/, set config.data.{field} to one of {others} "
                "(FFS has only training videos; its FVD uses them as the reference), or "
                "point config.data.root at one split folder"
            )
        if files:
            logging.warning(
                "%s has no %s/ folder: reading all its clips as split %r (the whole root is "
                "one split; train and eval read the same clips)",
                root,
                "|".join(names),
                split,
            )
        prefix = ""
    chosen = {rel[len(prefix) :]: size for rel, size in files.items() if rel.startswith(prefix)}
    clips, folders = [], collections.defaultdict(list)
    for rel, size in chosen.items():
        if rel.lower().endswith(VIDEO_EXTENSIONS):
            clips.append(Clip(prefix + rel, "video", (prefix + rel,), size))
        else:
            folders[str(PurePosixPath(rel).parent)].append((rel, size))
    for folder, frames in folders.items():
        frames.sort(key=lambda fs: _natural_key(PurePosixPath(fs[0]).name))
        name = prefix + ("" if folder == "." else folder + "/")
        clips.append(Clip(name or "./", "frames", tuple(prefix + f for f, _ in frames), sum(s for _, s in frames)))
    if not clips:
        npz = (
            " (found .npz files: for DMLab-style trajectories set config.data.name='dmlab')"
            if any(Path(root).rglob("*.npz")) and Path(root).is_dir()
            else ""
        )
        raise DataError(
            f"split {split!r} under {str(root)!r} holds no videos or frame folders{npz}; expected {LAYOUTS}"
        )
    clips.sort(key=lambda c: PurePosixPath(c.name).parts)
    return tree, clips


def crop_resize(image, size):
    """PIL image (any size or mode) -> uint8 (size, size, 3): centre square crop, Lanczos resize."""
    from PIL import Image  # noqa: PLC0415

    w, h = image.size
    side = min(w, h)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if size is not None and side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, np.uint8)


def decode_video(file, size=None, *, name="video"):
    """Decodes every frame of a video file (path or file object) -> uint8 (F, size, size, 3).

    size None keeps the centre square at its native side. Raises DataError naming `name` if the
    file has no video stream, fails to decode, or decodes fewer frames than its container declares.
    """
    av = import_av()
    frames = []
    try:
        with av.open(file) as container:
            if not container.streams.video:
                raise DataError(f"{name}: no video stream (a truncated .mp4 loses its index); {FIX}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # FFmpeg frame/slice threads
            declared = stream.frames
            if not declared and container.duration and stream.average_rate:
                declared = round(container.duration / 1e6 * float(stream.average_rate))
            for frame in container.decode(stream):
                w, h = frame.width, frame.height
                if w == h and (size is None or size == w):
                    frames.append(frame.to_ndarray(format="rgb24"))  # already square at size: no PIL
                else:
                    frames.append(crop_resize(frame.to_image(), size))
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError) as err:
        raise DataError(f"{name}: unreadable or corrupt video ({type(err).__name__}: {err}); {FIX}") from err
    if not frames:
        raise DataError(f"{name}: the video stream decodes to no frames; {FIX}")
    if declared and len(frames) < declared * (1 - TRUNCATION_TOLERANCE) - 1:
        raise DataError(
            f"{name}: truncated: decoded {len(frames)} of the {declared} frames its container declares; {FIX}"
        )
    return np.stack(frames)


def read_frames(tree, clip, size=None):
    """The images of a frame folder, in order -> uint8 (F, size, size, 3)."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    out = []
    for rel in clip.members:
        try:
            with Image.open(tree.open(rel)) as image:
                image.load()  # decodes now: truncated files fail here, not later
                out.append(crop_resize(image, size))
        except (OSError, ValueError, UnidentifiedImageError, SyntaxError) as err:
            raise DataError(
                f"{tree.where(rel)}: unreadable or truncated image of clip "
                f"{clip.name!r} ({type(err).__name__}: {err}); {FIX}"
            ) from err
    return np.stack(out)


def load_clip(tree, clip, *, size=None, min_length=1):
    """Loads and validates one clip -> uint8 (F, size, size, 3); DataError names the file."""
    if clip.kind == "video":
        video = decode_video(tree.open(clip.members[0]), size, name=tree.where(clip.name))
    else:
        video = read_frames(tree, clip, size)
    if len(video) < min_length:
        raise DataError(
            f"{tree.where(clip.name)}: {len(video)} frames, shorter than the {min_length} "
            "a clip needs (config.data.frames x config.data.frame_skip); lower them, or "
            f"delete the clip, or set config.data.skip_corrupt=True to skip short clips"
        )
    return video


class VideoFolderSplit:
    """The validated clips of one split, in relative-path order.

    `len(split)` is the number of clips; `split[i]` loads clip i as {"video": uint8 (F, S, S, 3),
    "actions": None}; iterating yields the same dicts (decoding up to 2 × `workers` clips ahead in
    threads), skipping (and recording in `skipped` as (name, message)) bad clips when
    `skip_corrupt` is set, otherwise raising DataError at the first one.
    """

    def __init__(self, root, split, *, min_length=1, size=None, skip_corrupt=False, workers=2):
        self.root, self.split = Path(root), split
        self.tree, self.clips = list_split(root, split)
        self.min_length, self.size = min_length, size
        self.skip_corrupt, self.workers = skip_corrupt, max(1, workers)
        self.skipped = []

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        video = load_clip(self.tree, self.clips[i], size=self.size, min_length=self.min_length)
        return {"video": video, "actions": None}

    def listing(self):
        """One line per clip, "<name> <bytes>" (a change of the source changes this text)."""
        return "\n".join(f"{c.name} {c.nbytes}" for c in self.clips)

    def _load(self, i):
        try:
            return self[i]
        except DataError as err:
            if not self.skip_corrupt:
                raise
            return err

    def __iter__(self):
        for i, result in read_ahead(range(len(self.clips)), self._load, self.workers):
            if isinstance(result, DataError):
                self.skipped.append((self.tree.where(self.clips[i].name), str(result)))
                logging.warning("skipping bad clip (%d so far): %s", len(self.skipped), result)
                continue
            yield result
