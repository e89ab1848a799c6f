"""Where the time of the denoiser's forward and training step goes, by XLA:CPU op kind.

    python -m benchmarks.profile_step [--batch 1] [--masked-head] [--calls 2]
    python -m benchmarks.profile_step --config topdown   # the main command's denoiser, its batch and actions

Latte-S/2, V = 1025, a 16x16 token grid, F = 16 (the shapes of benchmarks/denoiser.py): times the jitted
forward and training step, then traces `--calls` calls of each with `jax.profiler.trace` and sums the
executed ops by kind (the op name without its number: `ynn_fusion` = YNNPACK matmul fusions,
`transpose_copy_fusion`, `multiply_add_fusion`, ...), per call. With the matmul peak measured in the same run
this says how far the step is from 3x its forward (docs/performance.md §5). `--config topdown` profiles
configs/topdown.py's denoiser at its batch instead, with random moves, and counts FLOPs by XLA's cost analysis. Writes
benchmarks/results/profile_step.json; the raw traces stay in a temporary directory.
"""

import argparse
import collections
import glob
import gzip
import json
import tempfile

import jax

from benchmarks.common import latte_forward_gflop, matmul_peak_gflops, timeit, train_stepper, write_json
from benchmarks.denoiser import config
from configs import topdown
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer


def op_kinds(fn, calls):
    """{op kind: milliseconds per call} of `calls` traced calls of fn()."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(calls):
                jax.block_until_ready(fn())
        path = sorted(glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True))[-1]
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or "dur" not in e or name.startswith(("$", "end:")) or "." not in name:
            continue  # XLA ops are "<kind>.<number>"; Python frames start with "$"
        kind, num = name.rsplit(".", 1)
        if num.isdigit():
            total[kind] += e["dur"] / 1e3 / calls
    return dict(total)


def xla_gflop(compiled):
    """GFLOP of a compiled computation by XLA's cost analysis."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops", 0.0) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--masked-head", action="store_true", help="train with model.masked_head=True")
    parser.add_argument("--calls", type=int, default=2, help="traced calls of each function")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each function (median)")
    parser.add_argument("--config", default="latte_s2", choices=("latte_s2", "topdown"))
    args = parser.parse_args(argv)
    if args.config == "topdown":
        cfg = topdown.get_config()
        cfg.model.masked_head = args.masked_head
        b, f, grid, vocab, name = cfg.data.batch_size, cfg.data.frames, 8, cfg.tokenizer.n_embed + 1, "topdown"
    else:
        b, f, grid, vocab, name = args.batch, 16, 16, 1025, "Latte-S/2"
        cfg = config("S", vocab, grid, f, b, masked_head=args.masked_head)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    tokens = jax.random.randint(jax.random.key(1), (b, f, grid, grid), 0, vocab - 1)
    t = jax.random.uniform(jax.random.key(2), (b, f))
    actions = jax.random.randint(jax.random.key(3), (b, f), 0, cfg.model.num_actions) if cfg.model.action_cond else None
    peak = matmul_peak_gflops()
    with jax.set_mesh(trainer.mesh):
        fwd = jax.jit(lambda p, x, s, a: trainer.model.apply({"params": p}, x, s, a))
        batch = {"tokens": jax.device_put(tokens, trainer.batch_sharding)}
        if actions is not None:
            batch["actions"] = jax.device_put(actions, trainer.batch_sharding)
        step = train_stepper(trainer, trainer.init(jax.random.key(0)), batch)

        def forward():
            return fwd(step.state().params, tokens, t, actions)

        seconds = {"forward": timeit(forward, repeats=args.repeats), "train_step": timeit(step, repeats=args.repeats)}
        kinds = {"forward": op_kinds(forward, args.calls), "train_step": op_kinds(step, args.calls)}
        if args.config == "topdown":
            gflop = xla_gflop(fwd.lower(step.state().params, tokens, t, actions).compile())
            step_gflop = xla_gflop(trainer.step.lower(step.state(), batch).compile())
        else:
            gflop, step_gflop = latte_forward_gflop(b, f, grid, 384, 12, vocab), None
    print(
        f"{name}, V {vocab}, {grid}x{grid}, F {f}, batch {b}, masked_head={args.masked_head}; "
        f"fp32 matmul peak {peak:.1f} GFLOP/s; forward {gflop:.1f} GFLOP"
        + (
            f", train step {step_gflop:.1f} GFLOP ({step_gflop / seconds['train_step'] / peak:.0%} of peak)"
            if step_gflop
            else ""
        )
    )
    print(
        f"forward {seconds['forward']:.3f} s ({gflop / seconds['forward'] / peak:.0%} of peak), train step "
        f"{seconds['train_step']:.3f} s ({seconds['train_step'] / seconds['forward']:.2f}x the forward)"
    )
    names = sorted(set(kinds["forward"]) | set(kinds["train_step"]), key=lambda k: -kinds["train_step"].get(k, 0.0))
    print(f"{'op kind (ms per call)':>28} {'forward':>9} {'step':>9}")
    for k in names[:20]:
        print(f"{k:>28} {kinds['forward'].get(k, 0.0):>9.1f} {kinds['train_step'].get(k, 0.0):>9.1f}")
    for what in ("forward", "train_step"):
        print(f"{'all ops, ' + what:>28} {sum(kinds[what].values()):>9.1f}")
    write_json(
        "profile_step" if args.config == "latte_s2" else f"profile_step_{args.config}",
        {
            "config": args.config,
            "step_gflop": step_gflop,
            "batch": b,
            "masked_head": args.masked_head,
            "matmul_peak_gflops": peak,
            "forward_gflop": gflop,
            "seconds": seconds,
            "ms_per_call_by_op_kind": kinds,
        },
    )


if __name__ == "__main__":
    main()
