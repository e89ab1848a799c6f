"""Sampler cost on this machine (Latte-S/2, V = 1025, 16x16 tokens, F = 16, fp32, random weights).

    python benchmarks/sampling.py [--batches 1,2] [--horizons 1,2,5,10]

Reports ms per NFE (one forward), a 20-step MGM window and a 20-step FM window as a multiple of
20 forwards (bookkeeping overhead), and chunk-wise rollouts (m 2, s 14) at 1x/2x/5x/10x the window:
seconds per generated frame and the process's peak RSS after each length (flat = memory does not
grow with L).
"""
import argparse
import functools
import resource
import sys

import jax
import numpy as np

sys.path.insert(0, ".")
from benchmarks.common import timeit, write_json  # noqa: E402
from benchmarks.denoiser import config  # noqa: E402
from maskflow_jax.parallel.mesh import make_mesh  # noqa: E402
from maskflow_jax.sampling import rollout as ro  # noqa: E402
from maskflow_jax.train.setup import build_trainer  # noqa: E402

V, GRID, F, STEPS = 1025, 16, 16, 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--horizons", default="1,2,5,10")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for batch in map(int, args.batches.split(",")):
        cfg = config("S", V, GRID, F, batch)
        trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
        with jax.set_mesh(trainer.mesh):
            params = trainer.init(jax.random.key(0)).params
        # Perturb the zero-initialised head so samples are not degenerate.
        params = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(jax.random.key(3), x.shape), params)
        apply_fn = lambda p, tok, t: trainer.model.apply({"params": p}, tok, t)  # noqa: E731
        fwd = functools.partial(jax.jit(apply_fn), params)  # parameters as an argument, as inference.Run
        window = np.full((batch, F, GRID, GRID), V - 1, np.int32)
        window[:, :2] = 0
        ctx = np.zeros((batch, F), bool)
        ctx[:, :2] = True
        t = np.ones((batch, F), np.float32)
        nfe_s = timeit(fwd, window, t, repeats=args.repeats)
        row = {"B": batch, "ms_per_nfe": 1e3 * nfe_s}
        for name in ("mgm", "fm"):
            cfg.sampling.sampler, cfg.sampling.steps = name, STEPS
            chunk = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, V - 1), apply_fn, params=params)
            sec = timeit(lambda: chunk(jax.random.key(0), window, ctx)[0], repeats=args.repeats)
            row[f"{name}_window_s"] = sec
            row[f"{name}_vs_20_forwards"] = sec / (STEPS * nfe_s)
        cfg.sampling.sampler = "mgm"
        chunk = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, V - 1), apply_fn, params=params)
        context = np.zeros((batch, 2, GRID, GRID), np.int32)
        ro.rollout(jax.random.key(0), chunk, context, length=F, window=F, context=2, stride=14, mask_id=V - 1)  # compile
        for mult in map(int, args.horizons.split(",")):
            length = mult * F
            _, info = ro.rollout(jax.random.key(1), chunk, context, length=length, window=F, context=2, stride=14,
                                 mask_id=V - 1)
            row[f"rollout_{mult}x_s_per_frame"] = info["seconds"] / ((length - 2) * batch)
            row[f"rollout_{mult}x_nfe"] = info["nfe"]
            row[f"rollout_{mult}x_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
        print(f"B={batch}: {1e3 * nfe_s:.1f} ms/NFE | MGM window {row['mgm_window_s']:.2f} s = "
              f"{row['mgm_vs_20_forwards']:.3f}x 20 NFE | FM window {row['fm_window_s']:.2f} s = "
              f"{row['fm_vs_20_forwards']:.3f}x 20 NFE", flush=True)
        for mult in map(int, args.horizons.split(",")):
            print(f"    L = {mult:>2}x{F}: {row[f'rollout_{mult}x_s_per_frame']:.3f} s/frame, "
                  f"{row[f'rollout_{mult}x_nfe']} NFE, peak RSS {row[f'rollout_{mult}x_peak_rss_mb']:.0f} MB", flush=True)
    write_json("sampling", {"rows": rows, "V": V, "grid": GRID, "F": F, "steps": STEPS})


if __name__ == "__main__":
    main()
