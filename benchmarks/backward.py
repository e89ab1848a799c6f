"""Where the denoiser's backward pass goes: forward vs `jax.grad` of each sub-module alone.

    python -m benchmarks.backward [--repeats 3] [--batch 1] [--parts block,attn,...]

Latte-S/2 shapes (D 384, 6 heads, V 1025, 16x16 tokens -> 8x8 patches, F 16, fp32). Each part is
jitted alone with random inputs and random (non-zero) parameters; "grad" is `jax.grad` of the mean
square of its output w.r.t. parameters and float inputs (the loss part: of the loss itself).
"*_plain" rows swap layers.fusion_barrier / bcast_mul for plain identity / multiply: the model
as it was before issue 21 (docs/performance.md), timed in the same process.
Prints seconds and grad / forward; JSON to benchmarks/results/backward.json.
"""

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.common import matmul_peak_gflops, timeit, write_json
from maskflow_jax.flow import losses
from maskflow_jax.models import layers
from maskflow_jax.models.latte import Latte
from maskflow_jax.models.layers import AdaLNBlock, Attention, Mlp

D, HEADS, V, GRID, F, P = 384, 6, 1025, 16, 16, 2


def randomise(params, scale=0.02):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def parts(batch):
    """name -> (module or function, example inputs, float-input argnums to differentiate)."""
    n = (GRID // P) ** 2
    key = jax.random.key(0)
    x_sp = jax.random.normal(key, (batch * F, n, D))
    x_tp = jax.random.normal(key, (batch, n, F, D))
    c_sp = jax.random.normal(key, (batch * F, 1, D))
    c_tp = jax.random.normal(key, (batch, 1, F, D))
    tokens = jax.random.randint(key, (batch, F, GRID, GRID), 0, V - 1)
    t = jax.random.uniform(key, (batch, F))
    model = Latte(vocab_size=V, hidden=D, depth=12, heads=HEADS)
    return {
        "attn_spatial": (Attention(HEADS), (x_sp,)),
        "attn_temporal": (Attention(HEADS), (x_tp,)),
        "mlp": (Mlp(), (x_sp,)),
        "block_spatial": (AdaLNBlock(HEADS), (x_sp, c_sp)),
        "block_temporal": (AdaLNBlock(HEADS), (x_tp, c_tp)),
        "model": (model, (tokens, t)),
        "model_plain": (model, (tokens, t)),  # the same with plain_layers() (before the fix)
    }


PLAIN = {"fusion_barrier": lambda x: x, "bcast_mul": lambda x, s: x * s}


def plain_layers():
    """Swaps the backward-pass workarounds of models/layers.py for their plain definitions (the
    implementation before issue 21); returns a function that restores them."""
    saved = {k: getattr(layers, k) for k in PLAIN}
    for k, v in PLAIN.items():
        setattr(layers, k, v)
    return lambda: [setattr(layers, k, v) for k, v in saved.items()]


def bench_module(module, inputs, repeats):
    params = randomise(nn.meta.unbox(module.init(jax.random.key(1), *inputs)["params"]))
    fwd = jax.jit(lambda p, *a: module.apply({"params": p}, *a))

    def loss(p, *a):
        out = module.apply({"params": p}, *a)
        return jnp.mean(jnp.square(out.astype(jnp.float32)))

    float_args = tuple(i + 1 for i, a in enumerate(inputs) if jnp.issubdtype(a.dtype, jnp.floating) and a.ndim > 2)
    grad = jax.jit(jax.grad(loss, argnums=(0,) + float_args))
    return timeit(fwd, params, *inputs, repeats=repeats), timeit(grad, params, *inputs, repeats=repeats)


def bench_loss(batch, repeats):
    """The (B, F, H, W, V) logits -> fp32 log-softmax -> masked CE, alone."""
    key = jax.random.key(2)
    logits = jax.random.normal(key, (batch, F, GRID, GRID, V))
    targets = jax.random.randint(key, logits.shape[:-1], 0, V - 1)
    mask = jax.random.bernoulli(key, 0.5, logits.shape[:-1])
    w = jnp.ones((batch, F))
    fn = lambda lg: losses.masked_cross_entropy(lg, targets, mask, w)[0]  # noqa: E731
    return timeit(jax.jit(fn), logits, repeats=repeats), timeit(jax.jit(jax.grad(fn)), logits, repeats=repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--parts", default="")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    rows = []
    todo = parts(args.batch)
    names = args.parts.split(",") if args.parts else list(todo) + ["loss"]
    for name in names:
        restore = plain_layers() if name.endswith("_plain") else (lambda: None)
        f_s, g_s = bench_loss(args.batch, args.repeats) if name == "loss" else bench_module(*todo[name], args.repeats)
        restore()
        rows.append({"part": name, "B": args.batch, "forward_s": f_s, "grad_s": g_s, "ratio": g_s / f_s})
        print(
            f"{name:>15}: forward {1e3 * f_s:8.1f} ms | grad {1e3 * g_s:8.1f} ms | grad/forward {g_s / f_s:5.2f}",
            flush=True,
        )
    print(f"fp32 matmul peak (2048^3, measured now): {peak:.1f} GFLOP/s")
    write_json(f"backward_b{args.batch}", {"peak_gflops": peak, "rows": rows, "device": jax.devices()[0].device_kind})


if __name__ == "__main__":
    main()
