"""What the built-in procedural worlds share: byte-stable .npz files, split writing, markers, a CLI.

A world module (`maze.py`, `topdown.py`) provides `NAME`, `FORMAT_VERSION` and
`generate_trajectories(seed, num, length, *, start=0) -> (video uint8 (N, T, 64, 64, 3), actions int32 (N, T))`,
where trajectory i depends only on (seed, i). Splits are written in the TECO/DMLab layout
`DIR/<split>/<shard:04d>/<j:04d>.npz` (keys `video`, `actions`), so the DMLab reader reads them.
"""

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from maskflow_jax import files


def save_npz(path, **arrays):
    """`np.savez_compressed` with fixed zip timestamps: equal arrays give byte-identical files.

    Written to a temporary name and renamed, so a killed writer never leaves a truncated .npz.
    """
    with (
        files.atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf,
    ):
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compresslevel=6)


def split_marker(out_dir, split, world):
    """Path of the JSON that `write_split` writes last (its presence means the split is complete)."""
    return Path(out_dir) / split / f"{world.NAME}.json"


def marker_contents(world, num, frames, seed, shard_size, **options):
    """The parameters recorded in a split's marker (compared to decide whether to regenerate)."""
    return dict(num=num, frames=frames, seed=seed, shard_size=shard_size, version=world.FORMAT_VERSION, **options)


def world_options(world, world_cfg):
    """The generator options of `world` (its OPTIONS, e.g. topdown's moves) from config.data.<world>."""
    return {k: world_cfg[k] for k in getattr(world, "OPTIONS", ())}


def write_split(world, out_dir, split, num, frames, seed, shard_size=100, **options):
    """Writes `num` trajectories of `frames` frames of `world` to `out_dir/<split>/<shard>/<j>.npz`.

    Trajectory i goes to shard i // shard_size as file i % shard_size; `options` go to the world's
    generate_trajectories. The marker (`split_marker`) is written last. Returns the list of written paths.
    """
    if num < 1 or frames < 1 or shard_size < 1:
        raise ValueError(
            f"{world.NAME}.write_split: need num, frames, shard_size >= 1; got {num}, {frames}, {shard_size}"
        )
    root = Path(out_dir) / split
    paths = []
    for lo in range(0, num, shard_size):
        count = min(shard_size, num - lo)
        video, actions = world.generate_trajectories(seed, count, frames, start=lo, **options)
        shard_dir = root / f"{lo // shard_size:04d}"
        shard_dir.mkdir(parents=True, exist_ok=True)
        for j in range(count):
            path = shard_dir / f"{j:04d}.npz"
            save_npz(path, video=video[j], actions=actions[j])
            paths.append(path)
    marker = split_marker(out_dir, split, world)
    files.write_text(
        marker, json.dumps(marker_contents(world, num, frames, seed, shard_size, **options), sort_keys=True)
    )
    return paths


def save_strip(path, videos, every=4, count=12):
    """Saves frames 0, every, 2 * every, ... of videos (N, T, H, W, 3) as a PNG, one row per video."""
    from PIL import Image  # noqa: PLC0415  (only this helper needs Pillow)

    rows = [np.concatenate(list(v[::every][:count]), axis=1) for v in videos]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(world, argv=None, description=None, options=None):
    """`python -m maskflow_jax.data.<world> --out DIR --split S --num N --frames T --seed S [--<option> V]`;
    options: {name: (default, choices)} of the world's generator options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="output root; files go to OUT/<split>/...")
    parser.add_argument("--split", default="train", help="split folder name (train, test, ...)")
    parser.add_argument("--num", type=int, required=True, help="number of trajectories")
    parser.add_argument("--frames", type=int, default=300, help="frames per trajectory")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--shard-size", type=int, default=100, help="trajectories per shard folder")
    parser.add_argument("--strip", default=None, help="also save a PNG strip of (up to) 3 trajectories")
    for name, (default, choices) in (options or {}).items():
        parser.add_argument(f"--{name}", default=default, choices=choices, help=f"generator option (default {default})")
    args = parser.parse_args(argv)
    chosen = {name: getattr(args, name) for name in (options or {})}
    paths = write_split(world, args.out, args.split, args.num, args.frames, args.seed, args.shard_size, **chosen)
    if args.strip:
        save_strip(args.strip, [dict(np.load(p, allow_pickle=False))["video"] for p in paths[:3]])
    print(f"wrote {len(paths)} trajectories of {args.frames} frames to {Path(args.out) / args.split}")
