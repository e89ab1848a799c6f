"""One forward (= 1 NFE) and one training step of the discrete Latte denoiser on this machine.

    python -m benchmarks.denoiser [--repeats 5] [--skip-dmlab] [--masked-head]

Latte-S/2 at V = 1025, a 16x16 token grid, F = 16, batch 1 and 2 (fp32): forward and
fwd+bwd+AdamW step; and one forward at the paper's DMLab shape (Latte-B/2, V = 16385, 32x32,
F = 36, batch 1). Prints median seconds, analytic GFLOP per call (train step = 3x forward),
GFLOP/s and the fraction of the fp32 matmul peak measured in the same run. `--masked-head` adds the training
step with `model.masked_head=True` (rows `train_step_mh`: the head only at masked positions).
"""

import argparse

import jax

from benchmarks.common import latte_forward_gflop, matmul_peak_gflops, timeit, train_stepper, write_json
from configs import base
from maskflow_jax.models.latte import resolve_size
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer


def config(size, vocab, grid, frames, batch, masked_head=False):
    cfg = base.get_base()
    cfg.model.masked_head = masked_head
    cfg.model.size = size
    cfg.tokenizer.n_embed = vocab - 1
    cfg.tokenizer.ch_mult = (1, 2)
    cfg.data.resize_to = grid * 2
    cfg.data.frames = frames
    cfg.data.batch_size = batch
    cfg.mesh.shape = (1, 1, 1)
    return cfg


def bench(size, vocab, grid, frames, batch, repeats, train=True, masked_head=False):
    cfg = config(size, vocab, grid, frames, batch, masked_head)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    spec = resolve_size(cfg.model)
    tokens = jax.random.randint(jax.random.key(1), (batch, frames, grid, grid), 0, vocab - 1)
    t = jax.random.uniform(jax.random.key(2), (batch, frames))
    rows = []
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        fwd = jax.jit(lambda p, x, s: trainer.model.apply({"params": p}, x, s))
        gflop = latte_forward_gflop(batch, frames, grid, spec.hidden, spec.depth, vocab)
        sec = timeit(fwd, state.params, tokens, t, repeats=repeats)
        shape = {"size": size, "V": vocab, "grid": grid, "F": frames, "B": batch}
        rows.append({"what": "forward", **shape, "seconds": sec, "gflop": gflop, "gflops": gflop / sec})
        if train:
            step = train_stepper(trainer, state, {"tokens": jax.device_put(tokens, trainer.batch_sharding)})
            sec = timeit(step, repeats=repeats)
            what = "train_step_mh" if masked_head else "train_step"
            rows.append({"what": what, **shape, "seconds": sec, "gflop": 3 * gflop, "gflops": 3 * gflop / sec})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-dmlab", action="store_true")
    parser.add_argument("--masked-head", action="store_true", help="also time the step with model.masked_head")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    rows = []
    for batch in (1, 2):
        rows += bench("S", 1025, 16, 16, batch, args.repeats)
        if args.masked_head:
            rows += [
                r for r in bench("S", 1025, 16, 16, batch, args.repeats, masked_head=True) if r["what"] != "forward"
            ]
    if not args.skip_dmlab:
        rows += bench("B", 16385, 32, 36, 1, max(2, args.repeats // 2), train=False)
    print(f"fp32 matmul peak (2048^3, measured now): {peak:.1f} GFLOP/s")
    print(
        f"{'what':>13} {'size':>4} {'V':>6} {'grid':>4} {'F':>3} {'B':>2} "
        f"{'seconds':>9} {'GFLOP':>8} {'GFLOP/s':>8} {'% peak':>7}"
    )
    for r in rows:
        r["fraction_of_peak"] = r["gflops"] / peak
        print(
            f"{r['what']:>13} {r['size']:>4} {r['V']:>6} {r['grid']:>4} {r['F']:>3} {r['B']:>2} {r['seconds']:9.3f} "
            f"{r['gflop']:8.1f} {r['gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%"
        )
    write_json("denoiser", {"peak_gflops": peak, "rows": rows, "device": jax.devices()[0].device_kind})


if __name__ == "__main__":
    main()
