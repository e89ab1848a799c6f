"""Square face crops from FaceForensics v1 for the FFS loader (one-off preprocessing, docs/data.md).

    python scripts/preprocess_ffs.py --src /data/FaceForensics_compressed --out /data/ffs \
        [--splits train] [--size 256] [--stable] [--margin 1.0] [--workers 2]

Input, the official FaceForensics v1 layout (access needs the dataset's terms form; nothing is
downloaded here):
    <src>/{train,val,test}/original/<name>.{avi,mp4}   the original videos (704 / 150 / 150)
    <src>/{train,val,test}/mask/<name>.{avi,mp4}       Face2Face mask videos (face region non-black)
Output, the video-per-clip layout that `--config=configs/ffs.py` reads:
    <out>/<split>/<name>.mp4                           H.264, size x size, the original frame rate

Per frame, the face box is the bounding box of the mask pixels brighter than --threshold, made
square (side = margin x its longer side, centred, shifted to stay inside the frame; at most the
frame's shorter side). A frame with an empty mask reuses the nearest frame's box. --stable uses one
box per video instead: the square covering every frame's box (no jitter, looser crops). Crops are
resized with PIL's Lanczos filter. Existing outputs are kept (the script resumes); a video that
cannot be read is reported by name and counted, and the script exits non-zero at the end.
"""

import argparse
import concurrent.futures
import os
import sys
from pathlib import Path

import numpy as np

EXTENSIONS = (".avi", ".mp4", ".mkv")
EXPECTED = {"train": 704, "val": 150, "test": 150}  # the official FaceForensics v1 split


def _av():
    try:
        import av  # noqa: PLC0415
    except ImportError:
        sys.exit("this script needs PyAV: pip install -e '.[video]' (or pip install av)")
    return av


def mask_boxes(mask_path, threshold):
    """Per-frame (x0, y0, x1, y1) boxes of the mask pixels > threshold (None if empty), and (W, H)."""
    av = _av()
    boxes, size = [], None
    with av.open(str(mask_path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            m = frame.to_ndarray(format="rgb24").max(axis=-1) > threshold
            size = (frame.width, frame.height)
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            boxes.append((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) if rows.size else None)
    return boxes, size


def square_box(box, width, height, margin):
    """(left, top, side): the centred square around `box`, scaled by margin, inside the frame."""
    x0, y0, x1, y1 = box
    side = int(round(max(x1 - x0, y1 - y0) * margin))
    side = max(1, min(side, width, height))
    left = int(round((x0 + x1 - side) / 2))
    top = int(round((y0 + y1 - side) / 2))
    return min(max(left, 0), width - side), min(max(top, 0), height - side), side


def fill_empty(boxes):
    """Replaces None entries by the nearest non-empty box (earlier one on ties)."""
    valid = [i for i, b in enumerate(boxes) if b is not None]
    if not valid:
        return None
    idx = np.asarray(valid)
    return [boxes[i] if boxes[i] is not None else boxes[idx[np.argmin(np.abs(idx - i))]] for i in range(len(boxes))]


def crop_boxes(boxes, width, height, margin, stable):
    """(left, top, side) per frame; with `stable` one square covering all boxes, for every frame."""
    if stable:
        arr = np.asarray(boxes)
        union = (arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max())
        return [square_box(union, width, height, margin)] * len(boxes)
    return [square_box(b, width, height, margin) for b in boxes]


def process_video(original, mask, out, *, size=256, margin=1.0, threshold=10, stable=False, crf=18):
    """Writes the face crops of one video to `out` (mp4); returns the number of frames written."""
    from PIL import Image  # noqa: PLC0415

    av = _av()
    raw_boxes, (width, height) = mask_boxes(mask, threshold)
    boxes = fill_empty(raw_boxes)
    if boxes is None:
        raise ValueError(
            f"{mask}: no mask pixel above --threshold={threshold} in any frame; check "
            "the mask video or lower --threshold"
        )
    crops = crop_boxes(boxes, width, height, margin, stable)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}.mp4")
    written = 0
    try:
        with av.open(str(original)) as src, av.open(str(tmp), "w") as dst:
            in_stream = src.streams.video[0]
            in_stream.thread_type = "AUTO"
            if (in_stream.width, in_stream.height) != (width, height):
                raise ValueError(
                    f"{original}: {in_stream.width}x{in_stream.height} frames but its mask {mask} is {width}x{height}"
                )
            stream = dst.add_stream("libx264", rate=in_stream.average_rate or 30)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for i, frame in enumerate(src.decode(in_stream)):
                left, top, side = crops[min(i, len(crops) - 1)]  # a mask a frame short reuses its last box
                image = frame.to_image().crop((left, top, left + side, top + side))
                image = image.resize((size, size), Image.Resampling.LANCZOS)
                for packet in stream.encode(av.VideoFrame.from_image(image)):
                    dst.mux(packet)
                written += 1
            for packet in stream.encode():
                dst.mux(packet)
        if written == 0:
            raise ValueError(f"{original}: no frames decoded")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if abs(written - len(raw_boxes)) > 1:
        print(f"warning: {original}: {written} frames, its mask has {len(raw_boxes)}", file=sys.stderr)
    return written


def find_pairs(src, split):
    """Sorted [(name, original path, mask path)] of a split; raises if the layout is not v1's."""
    folder = Path(src) / split
    originals = {p.stem: p for p in sorted((folder / "original").glob("*")) if p.suffix.lower() in EXTENSIONS}
    masks = {p.stem: p for p in sorted((folder / "mask").glob("*")) if p.suffix.lower() in EXTENSIONS}
    if not originals:
        raise SystemExit(
            f"no videos in {folder / 'original'}; expected the FaceForensics v1 layout "
            f"<src>/{split}/original/<name>.avi with <src>/{split}/mask/<name>.avi"
        )
    missing = sorted(set(originals) - set(masks))
    if missing:
        print(f"warning: {len(missing)} videos of {split} have no mask (skipped): {missing[:5]}...", file=sys.stderr)
    return [(n, originals[n], masks[n]) for n in sorted(originals) if n in masks]


def _job(args):
    name, original, mask, out, kw = args
    try:
        return name, process_video(original, mask, out, **kw), None
    except Exception as err:  # noqa: BLE001 - reported by name, counted, and the run continues
        return name, 0, f"{type(err).__name__}: {err}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", required=True, help="FaceForensics v1 root with train/ val/ test/")
    parser.add_argument("--out", required=True, help="output root; writes <out>/<split>/<name>.mp4")
    parser.add_argument("--splits", nargs="+", default=["train"], help="splits to convert (paper: train)")
    parser.add_argument("--size", type=int, default=256, help="output frame side (pixels)")
    parser.add_argument("--margin", type=float, default=1.0, help="box side / the mask box's longer side")
    parser.add_argument("--threshold", type=int, default=10, help="mask pixels brighter than this are face")
    parser.add_argument("--stable", action="store_true", help="one crop box per video (no jitter)")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality (lower = better, 0 = lossless)")
    parser.add_argument("--workers", type=int, default=1, help="videos processed in parallel (processes)")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N videos per split")
    args = parser.parse_args(argv)
    kw = dict(size=args.size, margin=args.margin, threshold=args.threshold, stable=args.stable, crf=args.crf)
    failed = 0
    for split in args.splits:
        pairs = find_pairs(args.src, split)[: args.limit]
        out_dir = Path(args.out) / split
        out_dir.mkdir(parents=True, exist_ok=True)
        todo = [(n, o, m, out_dir / f"{n}.mp4", kw) for n, o, m in pairs if not (out_dir / f"{n}.mp4").exists()]
        done = len(pairs) - len(todo)
        errors = []
        if args.workers > 1:
            with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
                results = list(pool.map(_job, todo))
        else:
            results = map(_job, todo)
        for name, frames, err in results:
            if err:
                errors.append(name)
                print(f"error: {split}/{name}: {err}", file=sys.stderr)
            else:
                done += 1
                print(f"{split}/{name}.mp4: {frames} frames", flush=True)
        failed += len(errors)
        expected = EXPECTED.get(split)
        note = f" (the official split has {expected})" if expected and expected != done else ""
        print(f"{split}: {done} videos in {out_dir}, {len(errors)} failed{note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
