"""VQ tokenizer encode and decode throughput on this machine.

    python -m benchmarks.tokenizer [--repeats 3] [--chunk 8] [--skip-vqf8]

Two tokenizers, randomly initialised (speed does not depend on the weights), fp32:
  maze: configs/maze.py at its data.resize_to (32x32 -> 8x8 tokens, 512 codes), and the same
        model at the native 64x64 (16x16 tokens);
  vq-f8: the paper's LDM tokenizer (256x256 -> 32x32 tokens, 16384 codes; 67.7M parameters).
Times the jitted encode (frames -> token ids) and decode (ids -> frames) of one chunk of
`--chunk` frames, as `Tokenizer.encode/decode` run them. FLOPs come from XLA's cost analysis of
the compiled function; the fraction is of the fp32 matmul peak measured in the same run.
Prints a table and writes benchmarks/results/tokenizer.json.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import matmul_peak_gflops, timeit, write_json
from configs import base, maze
from maskflow_jax.tokenizer.api import Tokenizer
from maskflow_jax.tokenizer.model import make_vq_model


def compiled_gflop(fn, *args):
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) / 1e9


def bench(name, tok_cfg, resolution, chunk, repeats):
    model = make_vq_model(tok_cfg)
    params = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))["params"])()
    tok = Tokenizer(tok_cfg, params, resolution, chunk=chunk)
    frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (chunk, resolution, resolution, 3), np.uint8))
    ids = tok._enc(params, frames)
    rows = []
    for what, fn, x in (("encode", tok._enc, frames), ("decode", tok._dec, ids)):
        sec = timeit(fn, params, x, repeats=repeats)
        gflop = compiled_gflop(fn, params, x)
        rows.append(
            {
                "tokenizer": name,
                "what": what,
                "resolution": resolution,
                "grid": tok.grid[0],
                "frames": chunk,
                "seconds": sec,
                "frames_per_s": chunk / sec,
                "gflop": gflop,
                "gflops": gflop / sec,
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--skip-vqf8", action="store_true")
    args = ap.parse_args()
    peak = matmul_peak_gflops()
    mz = maze.get_config()
    rows = bench("maze", mz.tokenizer, mz.data.resize_to, args.chunk, args.repeats)
    rows += bench("maze@64", mz.tokenizer, 64, args.chunk, args.repeats)  # the same model at the native size
    if not args.skip_vqf8:
        cfg = base.get_base()
        base.set_vqf8_tokenizer(cfg)
        rows += bench("vq-f8", cfg.tokenizer, 256, args.chunk, args.repeats)
    print(f"fp32 matmul peak (2048^3): {peak:.1f} GFLOP/s; {jax.device_count()} device(s) {jax.devices()[0].platform}")
    print(
        f"{'tokenizer':9} {'op':7} {'res':>4} {'grid':>4} {'frames':>6} {'s/chunk':>8} {'frames/s':>9} "
        f"{'GFLOP':>8} {'GFLOP/s':>8} {'% peak':>7}"
    )
    for r in rows:
        r["fraction_of_peak"] = r["gflops"] / peak
        print(
            f"{r['tokenizer']:9} {r['what']:7} {r['resolution']:4d} {r['grid']:4d} {r['frames']:6d} "
            f"{r['seconds']:8.3f} {r['frames_per_s']:9.1f} {r['gflop']:8.1f} {r['gflops']:8.1f} "
            f"{100 * r['fraction_of_peak']:6.1f}%"
        )
    write_json("tokenizer", {"peak_gflops": peak, "rows": rows})


if __name__ == "__main__":
    main()
