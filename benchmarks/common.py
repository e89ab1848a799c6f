"""Shared benchmark helpers: timing, the machine's fp32 matmul peak, analytic FLOPs, table + JSON."""

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp


def timeit(fn, *args, repeats=5, warmup=1):
    """Median seconds of fn(*args) (blocking on the result) after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(n=2048, repeats=5, dtype=jnp.float32):
    """Measured GFLOP/s of an n^3 matmul of `dtype` (fp32 by default) on the default device (the 'peak'
    we quote against on CPUs; on accelerators beside the vendor's figure)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    return 2 * n**3 / timeit(f, a, repeats=repeats) / 1e9


def latte_forward_gflop(batch, frames, grid, hidden, depth, vocab, patch=2, mlp_ratio=4.0, head_fraction=1.0):
    """Analytic GFLOP of one denoiser forward (matmuls and attention; 2 FLOPs per multiply-add), with the
    output head counted at `head_fraction` of the positions (model.masked_head: the masked share)."""
    n = (grid // patch) ** 2  # patches per frame
    tokens = batch * frames * n
    d = hidden
    v_pad = -(-vocab // 64) * 64
    per_block = tokens * (8 * d * d + 2 * 2 * mlp_ratio * d * d)  # q,k,v,o + MLP
    spatial_attn = batch * frames * 4 * n * n * d
    temporal_attn = batch * n * 4 * frames * frames * d
    blocks = (depth // 2) * (2 * per_block + spatial_attn + temporal_attn)
    embed = tokens * 2 * (patch * patch * d // 2) * d
    head = tokens * 2 * d * patch * patch * v_pad * head_fraction
    return (blocks + embed + head) / 1e9


def write_json(name, payload):
    os.makedirs("benchmarks/results", exist_ok=True)
    path = os.path.join("benchmarks", "results", f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path}")


def train_stepper(trainer, state, batch):
    """A closure running one `trainer.step` on `batch` from the state it holds (first `state`) and
    returning the loss; `.state()` gives the current state (the step may donate the previous one's
    buffers). Call it inside `jax.set_mesh(trainer.mesh)`."""
    holder = [state]

    def step():
        holder[0], metrics = trainer.step(holder[0], batch)
        return metrics["loss"]

    step.state = lambda: holder[0]
    return step


def compile_train_step(trainer, tokens_shape):
    """(compiled train step, compile seconds) of a `train.setup.build_trainer` trainer, lowered from
    abstract inputs (no state is allocated): tokens_shape is the global batch (B, F, H, W)."""
    batch = {"tokens": jax.ShapeDtypeStruct(tokens_shape, jnp.int32, sharding=trainer.batch_sharding)}
    state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), trainer.abstract_state, trainer.state_shardings
    )
    start = time.perf_counter()
    with jax.set_mesh(trainer.mesh):
        compiled = trainer.step.lower(state, batch).compile()
    return compiled, time.perf_counter() - start
