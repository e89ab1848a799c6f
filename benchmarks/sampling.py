"""Sampler cost on this machine (Latte-S/2, V = 1025, 16x16 tokens, F = 16, fp32, random weights).

    python -m benchmarks.sampling [--batches 1,2] [--horizons 1,2,5,10]

Reports ms per NFE (one forward), a 20-step MGM window and a 20-step FM window as a multiple of
20 forwards (bookkeeping overhead) and of a loop of 20 forwards compiled like the windows (timed in interleaved
rounds with them), each with the project's draws only where needed (the default) and with
`jax.random.categorical` at every position (`sampling.gathered_draw=False`), and whether both give the same
tokens; and chunk-wise rollouts
(m 2, s 14) at 1x/2x/5x/10x the window:
seconds per generated frame and the process's peak RSS after each length (flat = memory does not
grow with L). Then the draw alone on (B, F, H, W, V) random logits: `jax.random.bits` against the project's
`sampling.draw.threefry2x32`, `jax.random.categorical` against `draw.categorical_at` on every row, and the
samplers' bookkeeping per step (the window with a constant `logits_fn`, so no forward) with the reference
draw and with the default one.
"""

import argparse
import functools
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import timeit, write_json
from benchmarks.denoiser import config
from maskflow_jax.config_validation import token_grid
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.sampling import draw
from maskflow_jax.sampling import rollout as ro
from maskflow_jax.sampling.fm import fm_sample
from maskflow_jax.sampling.mgm import mgm_sample
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

    def forwards(p, tok, t):  # `steps` forwards in one loop, each feeding the next (not hoistable)
        return jax.lax.fori_loop(0, steps, lambda i, x: jnp.where(apply_fn(p, x, t)[..., 0] > 1e30, 0, x), tok)

    loop = jax.jit(forwards)
    fns = {"forwards": lambda: loop(params, window, t)}
    for name in ("mgm", "fm"):
        for gathered, suffix in ((False, "_full_draw"), (True, "")):  # same tokens for the key either way
            cfg.sampling.sampler, cfg.sampling.steps, cfg.sampling.gathered_draw = name, steps, gathered
            chunk = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, vocab - 1), apply_fn, params=params)
            fns[name + suffix] = lambda c=chunk: c(jax.random.key(0), window, ctx)[0]
    secs = interleaved(fns, repeats)
    row[f"{steps}_forwards_loop_s"] = secs["forwards"]
    for name in ("mgm", "fm"):
        for suffix in ("_full_draw", ""):
            row[f"{name}{suffix}_window_s"] = secs[name + suffix]
            row[f"{name}{suffix}_vs_20_forwards"] = secs[name + suffix] / (steps * nfe_s)
            row[f"{name}{suffix}_vs_forwards_loop"] = secs[name + suffix] / secs["forwards"]
        same = np.array_equal(np.asarray(fns[name]()), np.asarray(fns[name + "_full_draw"]()))
        row[f"{name}_same_tokens"] = bool(same)
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


def interleaved(fns, repeats):
    """Median seconds of each zero-argument callable in `fns` (name -> fn), timed in `repeats` rounds that call
    every fn once in turn (after one warm-up call each), so that a drift of the host's load hits all alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def draw_costs(batch, repeats=3, steps=STEPS):
    """Milliseconds of the draw's pieces on (batch, F, GRID, GRID, V) random logits, and of each sampler's
    bookkeeping per step (a `steps`-step window whose logits_fn returns fixed logits), reference vs default."""
    shape = (batch, F, GRID, GRID, V)
    logits = 2.0 * jax.random.normal(jax.random.key(1), shape)
    key = jax.random.key(0)
    n = int(np.prod(shape[:-1]))
    rows = jnp.arange(n, dtype=jnp.int32)
    counter = jnp.arange(n * V, dtype=jnp.uint32).reshape(n, V)
    k1, k2 = jax.random.key_data(key)
    ms = lambda fn, *a: 1e3 * timeit(jax.jit(fn), *a, repeats=repeats)  # noqa: E731
    out = {
        "jax_random_bits_ms": ms(lambda: jax.random.bits(key, (n, V))),
        "threefry2x32_bits_ms": ms(lambda c: (lambda b: b[0] ^ b[1])(draw.threefry2x32(k1, k2, 0 * c, c)), counter),
        "jax_random_categorical_ms": ms(lambda x: jax.random.categorical(key, x), logits),
        "categorical_at_all_rows_ms": ms(lambda x: draw.categorical_at(key, x.reshape(n, V), rows), logits),
    }
    window = np.full(shape[:-1], V - 1, np.int32)
    window[:, :2] = 0
    ctx = np.zeros((batch, F), bool)
    ctx[:, :2] = True
    fixed = lambda tok, t: logits + (tok[..., None] < 0)  # noqa: E731  (depends on the tokens, costs ~nothing)
    for name, sampler in (("mgm", mgm_sample), ("fm", fm_sample)):
        for gathered, suffix in ((False, "_reference"), (True, "")):
            fn = lambda k, s=sampler, g=gathered: s(k, fixed, window, ctx, steps=steps, mask_id=V - 1, gathered=g)[0]  # noqa: E731
            out[f"{name}{suffix}_bookkeeping_ms_per_step"] = ms(fn, key) / steps
    return out


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
            f"B={batch}: {row['ms_per_nfe']:.1f} ms/NFE, {STEPS} forwards in a loop "
            f"{row[f'{STEPS}_forwards_loop_s']:.2f} s | MGM window {row['mgm_window_s']:.2f} s = "
            f"{row['mgm_vs_20_forwards']:.3f}x 20 NFE, {row['mgm_vs_forwards_loop']:.3f}x the loop | "
            f"FM window {row['fm_window_s']:.2f} s = {row['fm_vs_20_forwards']:.3f}x 20 NFE, "
            f"{row['fm_vs_forwards_loop']:.3f}x the loop",
            flush=True,
        )
        print(
            f"    jax.random.categorical at every position: MGM {row['mgm_full_draw_vs_20_forwards']:.3f}x 20 NFE, "
            f"{row['mgm_full_draw_vs_forwards_loop']:.3f}x the loop; FM {row['fm_full_draw_vs_20_forwards']:.3f}x, "
            f"{row['fm_full_draw_vs_forwards_loop']:.3f}x; same tokens: MGM {row['mgm_same_tokens']}, "
            f"FM {row['fm_same_tokens']}",
            flush=True,
        )
        for mult in horizons:
            print(
                f"    L = {mult:>2}x{F}: {row[f'rollout_{mult}x_s_per_frame']:.3f} s/frame, "
                f"{row[f'rollout_{mult}x_nfe']} NFE, peak RSS {row[f'rollout_{mult}x_peak_rss_mb']:.0f} MB",
                flush=True,
            )
    draws = draw_costs(1, args.repeats)
    print("\n| B 1, (1, 16, 16, 16, 1025) logits | reference (jax.random) | project (sampling/draw.py) |")
    print("| --- | --- | --- |")
    print(f"| random bits | {draws['jax_random_bits_ms']:.1f} ms | {draws['threefry2x32_bits_ms']:.1f} ms |")
    print(
        f"| categorical draw, every row | {draws['jax_random_categorical_ms']:.1f} ms | "
        f"{draws['categorical_at_all_rows_ms']:.1f} ms |"
    )
    for name in ("mgm", "fm"):
        print(
            f"| {name.upper()} bookkeeping per step | {draws[f'{name}_reference_bookkeeping_ms_per_step']:.1f} ms | "
            f"{draws[f'{name}_bookkeeping_ms_per_step']:.1f} ms |"
        )
    write_json("sampling", {"rows": rows, "draw_costs_b1": draws, "V": V, "grid": GRID, "F": F, "steps": STEPS})


if __name__ == "__main__":
    main()
