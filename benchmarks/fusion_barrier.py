"""The training step with `config.model.fusion_barrier` on and off, at a config's own shapes.

    python -m benchmarks.fusion_barrier [--configs maze,topdown,latte_s2] [--rounds 5] [--steps 10]
        [--override depth=12,hidden=384,heads=6]

The barrier (models/layers.py `fusion_barrier`) stops XLA:CPU from recomputing the residual stream in
every backward fusion; it computes the same function. Whether it pays depends on the shapes
(docs/performance.md §8), so this times both forms of one config's step in interleaved rounds
(`--steps` steps per round, median over `--rounds`). `latte_s2` is benchmarks/denoiser.py's Latte-S/2
shape at batch 1; `maze` / `topdown` are configs/<name>.py (their batch, clip and token grid);
`--override` sets integer config.model fields (depth, hidden, heads) for every config.
Prints a table; JSON to benchmarks/results/fusion_barrier.json.
"""

import argparse
import importlib
import statistics
import time

import jax

from benchmarks.common import train_stepper, write_json
from benchmarks.denoiser import config as denoiser_config
from maskflow_jax.config_validation import token_grid
from maskflow_jax.models.latte import resolve_size
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer


def load_config(name, overrides):
    cfg = (
        denoiser_config("S", 1025, 16, 16, 1)
        if name == "latte_s2"
        else importlib.import_module(f"configs.{name}").get_config()
    )
    cfg.mesh.shape = (1, 1, 1)
    for key, value in overrides.items():
        cfg.model[key] = value
    return cfg


def step_fn(cfg, barrier):
    """A closure running one training step of a fresh trainer for cfg with fusion_barrier=barrier."""
    cfg = cfg.copy_and_resolve_references()
    cfg.model.fusion_barrier = barrier
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    b, f = cfg.data.batch_size, cfg.data.frames
    batch = {"tokens": jax.random.randint(jax.random.key(1), (b, f, *token_grid(cfg)), 0, cfg.tokenizer.n_embed)}
    if cfg.model.action_cond:
        batch["actions"] = jax.random.randint(jax.random.key(2), (b, f), 0, cfg.model.num_actions)
    with jax.set_mesh(trainer.mesh):
        run = train_stepper(trainer, trainer.init(jax.random.key(0)), batch)

    def step():
        with jax.set_mesh(trainer.mesh):
            return jax.block_until_ready(run())

    step()  # compile
    return step


def bench(name, overrides, rounds, steps):
    cfg = load_config(name, overrides)
    fns = {True: step_fn(cfg, True), False: step_fn(cfg, False)}
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for barrier, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[barrier].append((time.perf_counter() - start) / steps)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    m, spec = cfg.model, resolve_size(cfg.model)
    return {
        "config": name,
        "shape": f"{m.size} depth {spec.depth} D {spec.hidden} B {cfg.data.batch_size} p {m.patch}",
        "with_barrier_s": on,
        "without_s": off,
        "ratio": on / off,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="maze,topdown,latte_s2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--override", default="", help="comma-separated integer config.model fields, k=v")
    args = parser.parse_args(argv)
    overrides = {k: int(v) for k, v in (kv.split("=") for kv in filter(None, args.override.split(",")))}
    rows = [bench(name, overrides, args.rounds, args.steps) for name in args.configs.split(",")]
    print(f"{'config':>10} {'shape':>28} {'barrier s':>10} {'without s':>10} {'on / off':>9}")
    for r in rows:
        print(
            f"{r['config']:>10} {r['shape']:>28} {r['with_barrier_s']:10.4f} {r['without_s']:10.4f} {r['ratio']:9.2f}"
        )
    write_json("fusion_barrier", {"overrides": overrides, "rows": rows})


if __name__ == "__main__":
    main()
