"""bf16 mixed precision (model.dtype) and the attention implementation (model.attention), on CPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import structured_tokens, tiny_config
from jax.sharding import AxisType

from configs import dmlab, ffs
from maskflow_jax.config_validation import ConfigError, validate
from maskflow_jax.models import layers
from maskflow_jax.models.latte import make_denoiser, resolve_dtype
from maskflow_jax.train.setup import build_trainer

V = 17


def _train(dtype, steps, **overrides):
    cfg = tiny_config(model__dtype=dtype, model__head_init_std=0.02, **overrides)
    mesh = jax.make_mesh(
        (1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3, devices=jax.devices()[:1]
    )
    trainer = build_trainer(cfg, mesh)
    data = structured_tokens(64, cfg.data.frames, 4, cfg.tokenizer.n_embed)
    losses = []
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        for i in range(steps):
            rows = data[(8 * i) % 64 : (8 * i) % 64 + 8]
            state, metrics = trainer.step(state, {"tokens": jax.device_put(jnp.asarray(rows), trainer.batch_sharding)})
            losses.append(float(metrics["loss"]))
    return trainer, state, np.array(losses)


def test_bf16_training_tracks_fp32_with_fp32_state():
    """50 tiny-model steps (unweighted masked CE, the same corruption draws): bf16 compute follows the fp32
    loss curve. Tolerance: the mean absolute per-step loss difference is under 0.5% of the mean fp32 loss
    and every step is within 2% (measured on this CPU: 0.006% and 0.05%), and both runs learn (the last
    10 steps' mean loss at least 0.03 nats under the first 5's; measured 0.074)."""
    _, state32, loss32 = _train("float32", 50, flow__reweigh="none")
    trainer, state16, loss16 = _train("bfloat16", 50, flow__reweigh="none")
    assert trainer.model.dtype == jnp.bfloat16
    assert np.all(np.isfinite(loss16))
    gap = np.abs(loss16 - loss32)
    assert gap.mean() < 0.005 * loss32.mean() and np.all(gap < 0.02 * loss32), (gap.mean(), gap.max(), loss32)
    for curve in (loss32, loss16):
        assert curve[-10:].mean() < curve[:5].mean() - 0.03, curve
    # fp32 parameters, EMA and Adam moments under bf16 compute.
    for tree in (state16.params, state16.ema_params, state16.opt_state):
        leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype")]
        dtypes = {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)}
        assert dtypes == {jnp.dtype(jnp.float32)}, dtypes
    assert not np.allclose(jax.tree.leaves(state16.params)[0], jax.tree.leaves(state32.params)[0])  # two runs


def test_bf16_matmuls_and_fp32_logits():
    cfg = tiny_config(model__dtype="bfloat16")
    model = make_denoiser(cfg.model, V)
    tokens = jnp.zeros((2, 3, 4, 4), jnp.int32)
    t = jnp.full((2, 3), 0.5)
    params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), tokens, t)["params"]))
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, tokens, t))(params)
    dots = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    assert len(dots) > 10
    assert all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars), "a matmul input is not bf16"
    head = [e for e in dots if e.outvars[0].aval.dtype == jnp.float32]
    assert len(head) == 1  # only the output head accumulates into float32 logits
    assert jaxpr.out_avals[0].dtype == jnp.float32 and jaxpr.out_avals[0].shape == (2, 3, 4, 4, V)


def _eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def test_auto_dtype_is_bf16_on_accelerators_and_fp32_on_cpu():
    assert resolve_dtype("auto", backend="cpu") == jnp.float32
    assert resolve_dtype("auto", backend="gpu") == jnp.bfloat16 and resolve_dtype("auto", backend="tpu") == jnp.bfloat16
    assert resolve_dtype("float32", backend="gpu") == jnp.float32
    for module in (dmlab, ffs):
        cfg = module.get_config()
        assert cfg.model.dtype == "auto"
        assert make_denoiser(cfg.model, 16385).dtype == jnp.float32  # the tests' backend is the CPU
    assert ffs.get_config("smoke").model.dtype == "float32"
    with pytest.raises(ValueError, match="config.model.dtype"):
        resolve_dtype("fp8")


def _qkv(dtype=jnp.float32, seed=0, shape=(3, 10, 2, 8)):
    keys = jax.random.split(jax.random.key(seed), 3)
    return [jax.random.normal(k, shape, dtype) for k in keys]


def test_xla_attention_equals_einsum_forward_and_gradients():
    """jax.nn.dot_product_attention (implementation="xla") and the explicit einsum path agree to 1e-5
    (fp32), outputs and gradients, alone and inside the whole denoiser."""
    q, k, v = _qkv()
    for impl in ("einsum", "xla"):
        assert layers.attention(q, k, v, impl).shape == q.shape
    np.testing.assert_allclose(
        layers.attention(q, k, v, "xla"), layers.attention(q, k, v, "einsum"), atol=1e-5, rtol=1e-5
    )
    loss = lambda impl: lambda q, k, v: jnp.sum(jnp.sin(layers.attention(q, k, v, impl)))  # noqa: E731
    g_xla = jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)
    g_ein = jax.grad(loss("einsum"), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_xla, g_ein):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
        assert float(jnp.max(jnp.abs(b))) > 1e-2

    tokens = jax.random.randint(jax.random.key(3), (2, 3, 4, 4), 0, V)
    t = jax.random.uniform(jax.random.key(4), (2, 3))
    models = {impl: make_denoiser(tiny_config(model__attention=impl).model, V) for impl in ("einsum", "xla")}
    assert models["xla"].attention == "xla" and models["einsum"].attention == "einsum"
    params = nn.meta.unbox(jax.jit(models["einsum"].init)(jax.random.key(0), tokens, t)["params"])
    leaves, tree = jax.tree.flatten(params)
    params = jax.tree.unflatten(
        tree, [x + 0.1 * jax.random.normal(jax.random.key(i), x.shape) for i, x in enumerate(leaves)]
    )

    def run(model):
        loss = lambda p: jnp.mean(jax.nn.log_softmax(model.apply({"params": p}, tokens, t))[..., 0])  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    (l_x, g_x), (l_e, g_e) = run(models["xla"]), run(models["einsum"])
    np.testing.assert_allclose(l_x, l_e, atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_x), jax.tree.leaves(g_e)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_attention_choice_and_impossible_forced_choices_are_named():
    assert make_denoiser(tiny_config().model, V).attention == "einsum"  # auto on CPU
    assert layers.resolve_attention("auto", jnp.bfloat16, 64, backend="tpu") == "xla"
    assert layers.resolve_attention("auto", jnp.float32, 64, backend="gpu") == "xla"  # fp32: no cuDNN kernel
    assert layers.resolve_attention("xla", jnp.float32, 64, backend="cpu") == "xla"
    cases = [(jnp.bfloat16, 64, "NVIDIA GPU"), (jnp.float32, 64, "bfloat16 or float16"), (jnp.bfloat16, 36, "head dim")]
    for dtype, head_dim, why in cases:
        with pytest.raises(ValueError, match=rf"config.model.attention='cudnn' cannot run: .*{why}"):
            layers.resolve_attention("cudnn", dtype, head_dim)
    assert "<= 256" in layers.cudnn_problem(jnp.bfloat16, 264, head_dim_max=256)
    with pytest.raises(ValueError, match="config.model.attention"):
        make_denoiser(tiny_config(model__attention="cudnn", model__dtype="bfloat16").model, V)
    for field, value in [("attention", "flash"), ("attention", "cudnn")]:
        cfg = tiny_config()
        cfg.model[field] = value
        with pytest.raises(ConfigError, match="config.model.attention"):
            validate(cfg)
    with pytest.raises(ValueError, match="config.model.attention"):
        layers.attention(*_qkv(), impl="flash")
