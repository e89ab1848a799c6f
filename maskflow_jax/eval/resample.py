"""How stable is an FVD / KVD comparison made with a few videos? Resamples the saved I3D features.

    python -m maskflow_jax.eval.resample runs/maze [--size 10] [--count 100] [--seed 0]

The pipeline's eval stage saves the I3D features of every set it compares in
`<workdir>/samples/eval_features.npz` (save_features): for every horizon h, the real clips
("reference") and each method's clips, (N, D) float32, the rows paired by video (generated video i
continues the context of real video i). For `count` random subsets of `size` of the N videos (the
same videos in every set), this counts how often MaskFlow scores below each other method under FVD
and under KVD, and prints per horizon the full-set FVD and KVD and the spread Tr(Σ) of each set's
features: with N ≪ D, FVD favours sets with little spread (eval/fvd.py). Writes the table as JSON
to `<workdir>/samples/eval_resample.json`.
Shapes: N videos, D feature size (400 for I3D).
"""

import argparse
import json
import os
import zipfile

import numpy as np

from maskflow_jax import files
from maskflow_jax.eval.fvd import fvd, kernel_distance

FEATURES_FILE = "eval_features.npz"
REFERENCE = "reference"
MODEL = "MaskFlow"
METRICS = {"FVD": fvd, "KVD": kernel_distance}


def save_features(path, features):
    """Writes {(method, horizon): (N, D) array} as float32 .npz (atomically: temporary name, then rename)."""
    arrays = {f"{method}|{horizon}": np.asarray(x, np.float32) for (method, horizon), x in features.items()}
    with files.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_features(path):
    """{(method, horizon): (N, D) float64} from save_features' file; a missing, unreadable or
    malformed file is a FileNotFoundError / ValueError that says how to rebuild it."""
    rebuild = "rerun the pipeline's eval stage (delete <workdir>/stages/eval.json, then run the same command)"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: run the pipeline's eval stage first (it saves the features)")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable feature file ({err}): {rebuild}") from err
    out = {}
    for key, x in arrays.items():
        method, _, horizon = key.rpartition("|")
        if not method or not horizon.isdigit() or x.ndim != 2:
            raise ValueError(
                f"{path}: entry {key!r} of shape {x.shape} is not '<method>|<horizon>' features (N, D): {rebuild}"
            )
        out[(method, int(horizon))] = x.astype(np.float64)
    if not any(method == REFERENCE for method, _ in out):
        raise ValueError(f"{path} holds no {REFERENCE!r} (real-clip) features: {rebuild}")
    return out


def subset_win_rate(real, a, b, *, size, count=100, seed=0, metric=fvd):
    """Fraction of `count` random `size`-subsets of the N paired videos in which metric(real, a) <
    metric(real, b). real, a, b: (N, D) features, row i of each from video i."""
    n = len(real)
    if not (len(a) == len(b) == n):
        raise ValueError(f"the three sets must hold the same N paired videos; got {n}, {len(a)}, {len(b)}")
    if not 2 <= size <= n:
        raise ValueError(f"size={size}: a subset needs 2 <= size <= N = {n} videos")
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(count):
        s = rng.choice(n, size, replace=False)
        wins += metric(real[s], a[s]) < metric(real[s], b[s])
    return wins / count


def summarize(features, *, size=10, count=100, seed=0):
    """One row per (horizon, method): full-set FVD, KVD, Tr(Σ), and for every method but MaskFlow the
    percentage of subsets in which MaskFlow is below it under each metric."""
    rows = []
    for h in sorted({h for m, h in features if m == REFERENCE}):
        real = features[(REFERENCE, h)]
        model = features.get((MODEL, h))
        for (method, hh), x in features.items():
            if hh != h or method == REFERENCE:
                continue
            row = {
                "horizon": h,
                "method": method,
                "num_videos": len(x),
                "trace_cov": float(np.trace(np.cov(x, rowvar=False))),
                **{name: fn(real, x) for name, fn in METRICS.items()},
            }
            if model is not None and method != MODEL:
                for name, fn in METRICS.items():
                    row[f"{MODEL} below, {name} %"] = 100 * subset_win_rate(
                        real, model, x, size=size, count=count, seed=seed, metric=fn
                    )
            rows.append(row)
    return rows


def format_rows(rows, size, count):
    head = (
        f"| horizon | method | FVD | KVD | Tr(Σ) | {MODEL} below it, FVD | {MODEL} below it, KVD |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [
        f"Full sets ({rows[0]['num_videos']} videos) and the share of {count} random {size}-video subsets "
        f"in which {MODEL} scores below each method:",
        "",
        head,
    ]
    for r in rows:
        wins = [r.get(f"{MODEL} below, {m} %") for m in METRICS]
        lines.append(
            f"| {r['horizon']} | {r['method']} | {r['FVD']:.1f} | {r['KVD']:.1f} | {r['trace_cov']:.0f} | "
            + " | ".join("" if w is None else f"{w:.0f}%" for w in wins)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--size", type=int, default=10, help="videos per subset")
    parser.add_argument("--count", type=int, default=100, help="random subsets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    samples = os.path.join(args.workdir, "samples")
    rows = summarize(
        load_features(os.path.join(samples, FEATURES_FILE)), size=args.size, count=args.count, seed=args.seed
    )
    print(format_rows(rows, args.size, args.count))
    out = os.path.join(samples, "eval_resample.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"size": args.size, "count": args.count, "seed": args.seed, "rows": rows}, f, indent=1)
    print(f"results: {out}")
    return rows


if __name__ == "__main__":
    main()
