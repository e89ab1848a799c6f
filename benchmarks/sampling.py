"""Sampler cost on this machine (Latte-S/2, V = 1025, 16x16 tokens, F = 16, fp32, random weights).

    python -m benchmarks.sampling [--batches 1,2] [--horizons 1,2,5,10]

Reports ms per NFE (one forward), a 20-step MGM window and a 20-step FM window as a multiple of
20 forwards (bookkeeping overhead), each with candidates drawn only where needed (the default) and at every
position (`sampling.gathered_draw=False`), and whether both give the same tokens; and chunk-wise rollouts
(m 2, s 14) at 1x/2x/5x/10x the window:
seconds per generated frame and the process's peak RSS after each length (flat = memory does not
grow with L).
"""

import argparse
import functools
import resource

import jax
import numpy as np

from benchmarks.common import timeit, write_json
from benchmarks.denoiser import config
from maskflow_jax.config_validation import token_grid
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.sampling import rollout as ro
from maskflow_jax.train.setup import build_trainer

V, GRID, F, STEPS = 1025, 16, 16, 20


def measure(cfg, batch, horizons=(1, 2, 5, 10), repeats=3, steps=STEPS):
    """One row for the denoiser of `cfg` (random weights, perturbed head) at `batch` videos: ms per NFE, the
    `steps`-step MGM and FM windows (and as multiples of `steps` forwards), and chunk-wise rollouts
    (m 2, s F - 2) to each multiple of F in `horizons`: seconds per generated frame, NFE, peak RSS."""
    vocab, grid, frames = cfg.tokenizer.n_embed + 1, token_grid(cfg)[0], cfg.data.frames
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    with jax.set_mesh(trainer.mesh):
        params = trainer.init(jax.random.key(0)).params
    # Perturb the zero-initialised head so samples are not degenerate.
    params = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(jax.random.key(3), x.shape), params)
    apply_fn = lambda p, tok, t: trainer.model.apply({"params": p}, tok, t)  # noqa: E731
    fwd = functools.partial(jax.jit(apply_fn), params)  # parameters as an argument, as inference.Run
    window = np.full((batch, frames, grid, grid), vocab - 1, np.int32)
    window[:, :2] = 0
    ctx = np.zeros((batch, frames), bool)
    ctx[:, :2] = True
    t = np.ones((batch, frames), np.float32)
    nfe_s = timeit(fwd, window, t, repeats=repeats)
    row = {"B": batch, "ms_per_nfe": 1e3 * nfe_s, "steps": steps}
    for name in ("mgm", "fm"):
        outs = {}
        for gathered, suffix in ((False, "_full_draw"), (True, "")):  # same tokens for the key either way
            cfg.sampling.sampler, cfg.sampling.steps, cfg.sampling.gathered_draw = name, steps, gathered
            chunk = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, vocab - 1), apply_fn, params=params)
            sec = timeit(lambda: chunk(jax.random.key(0), window, ctx)[0], repeats=repeats)
            outs[gathered] = np.asarray(chunk(jax.random.key(0), window, ctx)[0])
            row[f"{name}{suffix}_window_s"] = sec
            row[f"{name}{suffix}_vs_20_forwards"] = sec / (steps * nfe_s)
        row[f"{name}_same_tokens"] = bool(np.array_equal(outs[True], outs[False]))
    cfg.sampling.sampler = "mgm"
    chunk = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, vocab - 1), apply_fn, params=params)
    context = np.zeros((batch, 2, grid, grid), np.int32)
    plan = dict(window=frames, context=2, stride=frames - 2, mask_id=vocab - 1)
    ro.rollout(jax.random.key(0), chunk, context, length=frames, **plan)  # compile
    for mult in horizons:
        length = mult * frames
        _, info = ro.rollout(jax.random.key(1), chunk, context, length=length, **plan)
        row[f"rollout_{mult}x_s_per_frame"] = info["seconds"] / ((length - 2) * batch)
        row[f"rollout_{mult}x_nfe"] = info["nfe"]
        row[f"rollout_{mult}x_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--horizons", default="1,2,5,10")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    horizons = tuple(map(int, args.horizons.split(",")))
    rows = []
    for batch in map(int, args.batches.split(",")):
        row = measure(config("S", V, GRID, F, batch), batch, horizons, args.repeats)
        rows.append(row)
        print(
            f"B={batch}: {row['ms_per_nfe']:.1f} ms/NFE | MGM window {row['mgm_window_s']:.2f} s = "
            f"{row['mgm_vs_20_forwards']:.3f}x 20 NFE | FM window {row['fm_window_s']:.2f} s = "
            f"{row['fm_vs_20_forwards']:.3f}x 20 NFE",
            flush=True,
        )
        print(
            f"    full-vocabulary draws at every position: MGM {row['mgm_full_draw_vs_20_forwards']:.3f}x, "
            f"FM {row['fm_full_draw_vs_20_forwards']:.3f}x; same tokens: MGM {row['mgm_same_tokens']}, "
            f"FM {row['fm_same_tokens']}",
            flush=True,
        )
        for mult in horizons:
            print(
                f"    L = {mult:>2}x{F}: {row[f'rollout_{mult}x_s_per_frame']:.3f} s/frame, "
                f"{row[f'rollout_{mult}x_nfe']} NFE, peak RSS {row[f'rollout_{mult}x_peak_rss_mb']:.0f} MB",
                flush=True,
            )
    write_json("sampling", {"rows": rows, "V": V, "grid": GRID, "F": F, "steps": STEPS})


if __name__ == "__main__":
    main()
