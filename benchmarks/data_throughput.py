"""Data throughput: maze generation frames/s and pipeline clips/s (F = 16, 64² and 64 -> 256).

    python -m benchmarks.data_throughput [--videos 64] [--frames 64] [--clips 256]

Prints a table and writes benchmarks/results/data_throughput.json. The pipeline numbers are for
one host with data.num_threads threads; compare them with the model's step time (clips per step =
global batch). The machine's load average is recorded: other processes on the cores lower every
number.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from configs import base
from maskflow_jax.data import dmlab, loader, maze, records


def _best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_maze(videos, frames, repeats):
    """Frames/s of agent + renderer (generate_trajectories), of the renderer alone, of writing .npz."""
    secs = _best_of(lambda: maze.generate_trajectories(0, videos, frames), repeats)
    worlds, rngs = maze.make_worlds(0, range(videos))
    poses = [maze.simulate_agent(worlds.walls[n], rngs[n], frames) for n in range(videos)]
    pos = np.concatenate([p for p, _, _ in poses])
    heading = np.concatenate([h for _, h, _ in poses])
    wid = np.repeat(np.arange(videos), frames)

    def render_all():
        for lo in range(0, len(pos), 128):
            maze.render(worlds, wid[lo : lo + 128], pos[lo : lo + 128], heading[lo : lo + 128])

    render_secs = _best_of(render_all, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        maze.write_split(tmp, "train", videos, frames, seed=0)
        write_secs = time.perf_counter() - start
    n = videos * frames
    return {
        "maze_frames_per_s": n / secs,
        "render_frames_per_s": n / render_secs,
        "write_split_frames_per_s": n / write_secs,
    }


def bench_pipeline(workdir, videos, frames, clips, threads):
    """Clips/s through make_train_iterator, F = 16 at 64² and resized to 256²; raw record reads/s."""
    raw, prepared = Path(workdir) / "raw", Path(workdir) / "prepared"
    if not maze.split_marker(raw, "train").is_file():
        maze.write_split(raw, "train", videos, frames, seed=0)
    start = time.perf_counter()
    records.prepare_split(dmlab.DmlabSplit(raw, "train"), prepared, "train", force=True)
    out = {"prepare_videos_per_s": videos / (time.perf_counter() - start)}
    src = records.RecordSource(prepared, "train")
    out["record_reads_per_s"] = len(src) / _best_of(lambda: [src[i] for i in range(len(src))], 2)
    for name, size in (("clips_per_s_64", 64), ("clips_per_s_64to256", 256)):
        d = base.get_base().data
        d.prepared_dir, d.frames, d.resize_to, d.batch_size = str(prepared), 16, size, 8
        d.num_threads, d.prefetch = threads, 4
        it = loader.make_train_iterator(d, seed=0)
        next(it)  # warm-up: threads, file handles
        steps = max(1, clips // d.batch_size)
        start = time.perf_counter()
        for _ in range(steps):
            batch = next(it)
        out[name] = steps * d.batch_size / (time.perf_counter() - start)
        assert batch["video"].shape == (8, 16, size, size, 3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=64, help="maze trajectories to generate")
    parser.add_argument("--frames", type=int, default=64, help="frames per trajectory")
    parser.add_argument("--clips", type=int, default=256, help="clips to time per pipeline setting")
    parser.add_argument("--threads", type=int, default=2, help="grain read threads (data.num_threads)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_throughput.json"))
    args = parser.parse_args()

    load = os.getloadavg()[0]
    results = {"maze": bench_maze(min(args.videos, 16), args.frames, repeats=3)}
    with tempfile.TemporaryDirectory() as tmp:
        results["pipeline"] = bench_pipeline(tmp, args.videos, args.frames, args.clips, args.threads)
    results["setup"] = {
        "videos": args.videos,
        "frames": args.frames,
        "clip_frames": 16,
        "batch": 8,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_avg_1min_before": load,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }

    print(f"{'measure':<34}{'value':>12}")
    for group in ("maze", "pipeline"):
        for key, value in results[group].items():
            print(f"{group + '.' + key:<34}{value:>12.1f}")
    print(f"(load average before: {load:.2f} on {os.cpu_count()} cores)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
