"""Per-device memory of the MaskFlow train step for Latte-S/B/L/XL under dp / fsdp / fsdp_tp.

    python -m benchmarks.memory [--sizes S,B,L,XL] [--frames 16] [--out benchmarks/results/memory.json]

Compiles (does not run) the jitted train step on 8 fake CPU devices at the paper's token shapes
(V = 16385, 32x32 tokens, F frames, one clip per batch shard) and reads XLA's compiled memory
analysis per device: arguments (parameters, EMA, Adam moments, batch), temporaries (activations,
gradients) and outputs. Then projects to a v5e-256 slice (16 GiB HBM per chip) and an 8xH100 node
(80 GiB) from the measured parts: the sharded state divides by the FSDP size, activations scale
with the per-device batch (one clip per device, or `--remat` for rematerialised blocks).

`--masked-head both` compiles every row with the full output head and with `model.masked_head`
(the head at masked positions only, in chunks of `model.masked_head_chunk`) and prints the
per-device temporaries each needs and the difference: what the masked head saves.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
import argparse  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import compile_train_step  # noqa: E402
from configs import base  # noqa: E402
from maskflow_jax.parallel.mesh import make_mesh  # noqa: E402
from maskflow_jax.train.setup import build_trainer  # noqa: E402

GIB = 2**30
PRESET_SHAPES = {"dp": (8, 1, 1), "fsdp": (1, 8, 1), "fsdp_tp": (1, 4, 2)}
TARGETS = {"v5e-256": (256, 16), "8xH100": (8, 80)}  # devices, GiB per device


def config_for(size, preset, frames, remat, masked_head=False):
    cfg = base.get_base()
    cfg.model.size = size
    cfg.model.remat = remat
    cfg.model.masked_head = masked_head
    cfg.tokenizer.n_embed = 16384
    cfg.tokenizer.ch_mult = (1, 2, 2, 4)
    cfg.data.resize_to = 256
    cfg.data.frames = frames
    base.set_mesh_preset(cfg, preset)
    cfg.mesh.shape = PRESET_SHAPES[preset]
    shape = PRESET_SHAPES[preset]
    cfg.data.batch_size = shape[0] * shape[1]  # one clip per batch shard
    return cfg


def measure(size, preset, frames, remat, masked_head=False):
    cfg = config_for(size, preset, frames, remat, masked_head)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh))
    compiled, compile_s = compile_train_step(trainer, (cfg.data.batch_size, frames, 32, 32))
    mem = compiled.memory_analysis()
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainer.abstract_state.params))
    state_bytes = sum(
        int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(trainer.abstract_state) if hasattr(x, "shape")
    )
    return {
        "size": size,
        "preset": preset,
        "mesh": list(cfg.mesh.shape),
        "frames": frames,
        "remat": remat,
        "masked_head": masked_head,
        "masked_head_chunk": cfg.model.masked_head_chunk,
        "params_m": n_params / 1e6,
        "state_gib_total": state_bytes / GIB,
        "argument_gib": mem.argument_size_in_bytes / GIB,
        "temp_gib": mem.temp_size_in_bytes / GIB,
        "output_gib": mem.output_size_in_bytes / GIB,
        "alias_gib": mem.alias_size_in_bytes / GIB,
        "compile_s": compile_s,
    }


def project(row, devices):
    """GiB per device on `devices` chips with FSDP over all of them, one clip per chip."""
    state = row["state_gib_total"] / devices if row["preset"] != "dp" else row["state_gib_total"]
    return state + row["temp_gib"]  # activations/gradients measured at one clip per device


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="S,B,L,XL")
    parser.add_argument("--presets", default="dp,fsdp,fsdp_tp")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--remat", action="store_true")
    parser.add_argument(
        "--masked-head",
        choices=("off", "on", "both"),
        default="off",
        help="model.masked_head for every row; both: each row twice, and the saving",
    )
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    heads = {"off": (False,), "on": (True,), "both": (False, True)}[args.masked_head]
    rows = []
    header = (
        f"{'size':>4} {'preset':>8} {'mesh':>9} {'head':>6} {'params M':>9} {'args GiB':>9} {'temp GiB':>9} "
        f"{'v5e-256':>8} {'8xH100':>8} {'compile s':>9}"
    )
    print(header)
    for size in args.sizes.split(","):
        for preset in args.presets.split(","):
            for masked in heads:
                row = measure(size, preset, args.frames, args.remat, masked)
                for name, (devices, _) in TARGETS.items():
                    row[f"projected_gib_{name}"] = project(row, devices)
                rows.append(row)
                print(
                    f"{size:>4} {preset:>8} {'x'.join(map(str, row['mesh'])):>9} {'masked' if masked else 'full':>6} "
                    f"{row['params_m']:9.1f} {row['argument_gib']:9.3f} {row['temp_gib']:9.3f} "
                    f"{row['projected_gib_v5e-256']:8.2f} {row['projected_gib_8xH100']:8.2f} {row['compile_s']:9.1f}",
                    flush=True,
                )
    savings = []
    if args.masked_head == "both":
        print(
            f"\nmodel.masked_head saves (temporaries per device, F={args.frames}, V=16385, fp32, one clip per batch "
            f"shard, chunk {rows[0]['masked_head_chunk']} of the positions):"
        )
        print(f"{'size':>4} {'preset':>8} {'full GiB':>9} {'masked GiB':>10} {'saved GiB':>9} {'saved %':>8}")
        for full, masked in zip(rows[::2], rows[1::2]):
            saved = full["temp_gib"] - masked["temp_gib"]
            savings.append(
                {
                    "size": full["size"],
                    "preset": full["preset"],
                    "frames": args.frames,
                    "full_temp_gib": full["temp_gib"],
                    "masked_temp_gib": masked["temp_gib"],
                    "saved_gib": saved,
                }
            )
            print(
                f"{full['size']:>4} {full['preset']:>8} {full['temp_gib']:9.3f} {masked['temp_gib']:10.3f} "
                f"{saved:9.3f} {100 * saved / full['temp_gib']:7.1f}%",
                flush=True,
            )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "rows": rows,
                "masked_head_savings": savings,
                "targets_gib_per_device": {k: v[1] for k, v in TARGETS.items()},
                "backend": jax.default_backend(),
            },
            f,
            indent=1,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
