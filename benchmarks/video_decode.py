"""Video decoding (FFS): frames/s and 16-frame clips/s at 256² from mp4, against the denoiser step.

    python -m benchmarks.video_decode [--frames 300] [--clips 32] [--skip-train-step]

Writes a synthetic H.264 mp4 (256², 30 fps, crf 18, moving smooth texture with mild noise) and a
640x480 one, then times on this CPU:
  * decode_video: every frame decoded to RGB (PyAV, FFmpeg threads), 256² (no resize) and
    640x480 -> centre crop -> Lanczos 256² (the raw-video path of `maskflow_jax.data.video_folder`);
  * 16-frame clips straight from the mp4: seek to a random start, decode 16 frames;
  * 16-frame clips through the training pipeline from prepared records (what training reads);
  * one denoiser training step at the FFS shape, measured here at Latte-S/2 (not XL/2, which does
    not fit a CPU run), 32x32 tokens, F = 16, batch 1, V = 16385, fp32.
Prints a table and writes benchmarks/results/video_decode.json with the load average (other
processes on the cores lower every number).
"""

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from configs import base
from maskflow_jax.data import loader, records, video_folder

CLIP = 16


def write_mp4(path, frames, height, width, fps=30, crf=18, seed=0):
    """A smooth moving texture with mild noise (compresses like real footage, not like flat colour)."""
    av = video_folder.import_av()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width, s.pix_fmt = height, width, "yuv420p"
        s.options = {"crf": str(crf)}
        for t in range(frames):
            base_ = 128 + 60 * np.sin((xx + 3 * t) / 23.0)[..., None] * np.cos((yy - 2 * t) / 31.0)[..., None]
            img = base_ + np.array([0, 30, -30]) * np.sin(t / 20.0) + rng.normal(0, 6, (height, width, 1))
            frame = np.clip(img, 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def keyframe_interval(path):
    av = video_folder.import_av()
    with av.open(str(path)) as c:
        keys = [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.is_keyframe]
    return float(np.mean(np.diff(keys))) if len(keys) > 1 else float("inf")


def random_clip(path, total, rng):
    """uint8 (16, H, W, 3): seek to the keyframe before a random start, decode up to it, keep 16."""
    av = video_folder.import_av()
    start = rng.randrange(0, total - CLIP + 1)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        target = int(start / float(s.average_rate) / s.time_base)
        c.seek(target, stream=s, backward=True)
        out = []
        for frame in c.decode(s):
            if frame.pts is not None and frame.pts < target:
                continue
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == CLIP:
                break
    return np.stack(out)


def bench_decode(tmp, frames, clips, repeats=2):
    out = {}
    small, large = Path(tmp) / "v256" / "a.mp4", Path(tmp) / "v640" / "a.mp4"
    small.parent.mkdir()
    large.parent.mkdir()
    write_mp4(small, frames, 256, 256)
    write_mp4(large, frames, 480, 640)
    out["mp4_bytes_per_frame_256"] = small.stat().st_size / frames
    out["keyframe_interval"] = keyframe_interval(small)
    for key, path in (("decode_fps_256", small), ("decode_crop_lanczos_fps_640x480_to_256", large)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            v = video_folder.decode_video(str(path), 256)
            best = min(best, time.perf_counter() - start)
        assert v.shape == (frames, 256, 256, 3)
        out[key] = frames / best
    rng = random.Random(0)
    random_clip(small, frames, rng)  # warm-up
    start = time.perf_counter()
    for _ in range(clips):
        clip = random_clip(small, frames, rng)
        assert clip.shape == (CLIP, 256, 256, 3)
    out["random_clips_per_s_from_mp4"] = clips / (time.perf_counter() - start)

    # The training path: videos -> records once (prepare), then clips through grain.
    d = base.get_base().data
    d.name, d.root, d.prepared_dir = "ffs", str(small.parent), str(Path(tmp) / "prepared")
    d.frames, d.image_size, d.resize_to, d.batch_size, d.num_threads, d.prefetch = CLIP, 256, 256, 1, 2, 4
    start = time.perf_counter()
    split = video_folder.VideoFolderSplit(small.parent, "train", min_length=CLIP, size=256)
    meta = records.prepare_split(split, d.prepared_dir, "train", force=True)
    out["prepare_frames_per_s"] = sum(meta["lengths"]) / (time.perf_counter() - start)
    it = loader.make_train_iterator(d, seed=0)
    next(it)
    start = time.perf_counter()
    for _ in range(clips):
        batch = next(it)
    out["pipeline_clips_per_s_from_records"] = clips / (time.perf_counter() - start)
    assert batch["video"].shape == (1, CLIP, 256, 256, 3)
    return out


def bench_train_step(repeats):
    """Seconds of one Latte-S/2 training step at 32x32 tokens, F = 16, batch 1, V = 16385."""
    from benchmarks.denoiser import bench  # noqa: PLC0415

    rows = bench("S", 16385, 32, CLIP, 1, repeats)
    return {r["what"] + "_seconds": r["seconds"] for r in rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per synthetic video")
    parser.add_argument("--clips", type=int, default=32, help="clips to time per clip measurement")
    parser.add_argument("--train-repeats", type=int, default=2, help="timed denoiser steps")
    parser.add_argument("--skip-train-step", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "video_decode.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results = {"decode": bench_decode(tmp, args.frames, args.clips)}
    if not args.skip_train_step:
        results["denoiser"] = bench_train_step(args.train_repeats)
    results["setup"] = {
        "frames": args.frames,
        "clip_frames": CLIP,
        "cpus": os.cpu_count(),
        "load_avg_1min_before": load,
        "load_avg_1min_after": os.getloadavg()[0],
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pyav": video_folder.import_av().__version__,
    }

    dec = results["decode"]
    rows = [
        ("mp4 256² decode -> RGB (frames/s)", dec["decode_fps_256"]),
        ("mp4 640x480 decode + crop + Lanczos 256² (frames/s)", dec["decode_crop_lanczos_fps_640x480_to_256"]),
        ("16-frame 256² clips, random seek in mp4 (clips/s)", dec["random_clips_per_s_from_mp4"]),
        ("prepare mp4 -> records (frames/s)", dec["prepare_frames_per_s"]),
        ("16-frame 256² clips via pipeline from records (clips/s)", dec["pipeline_clips_per_s_from_records"]),
    ]
    if "denoiser" in results:
        step = results["denoiser"]["train_step_seconds"]
        rows += [
            ("denoiser train step, Latte-S/2, 32x32x16 tokens, B 1 (s)", step),
            ("  clips/s the step consumes (B / step time)", 1 / step),
        ]
    print(f"{'measure':<60}{'value':>10}")
    for name, value in rows:
        print(f"{name:<60}{value:>10.2f}")
    print(
        f"(synthetic mp4: {dec['mp4_bytes_per_frame_256'] / 1e3:.1f} kB/frame at 256², keyframe every "
        f"{dec['keyframe_interval']:.0f} frames; load average before {load:.2f}, after "
        f"{results['setup']['load_avg_1min_after']:.2f} on {os.cpu_count()} cores)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
