"""model.masked_head: the output head at masked positions only gives the full head's loss, gradients and
metrics (1e-5), for any mask (chunks), patch 1 and 2, sharded or not, and never builds the (B, F, H, W, V)
logits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import run_steps, structured_tokens, tiny_config
from jax.sharding import AxisType

from maskflow_jax.config_validation import ConfigError, validate
from maskflow_jax.flow import losses
from maskflow_jax.models.latte import make_denoiser
from maskflow_jax.train.setup import build_trainer
from maskflow_jax.train.step import make_loss_fn

B, F, G, V = 2, 3, 4, 17


def _model_and_params(patch):
    cfg = tiny_config()
    cfg.model.patch = patch
    model = make_denoiser(cfg.model, V)
    tokens = jax.random.randint(jax.random.key(0), (B, F, G, G), 0, V - 1)
    t = jax.random.uniform(jax.random.key(1), (B, F))
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), tokens, t)["params"])
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))  # adaLN-Zero and the head start at 0: perturb them
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return model, params, tokens, t


@pytest.mark.parametrize(
    "patch,fraction,p_mask",
    [
        (2, 0.25, 0.5),  # K = 3 of 12 positions per (clip, sub-patch): several chunks
        (1, 0.3, 0.9),  # patch 1: one sub-position, K = 15 of 48
        (2, 1.0, 0.3),  # one chunk holds every position
        (2, 0.1, 1.0),  # everything masked: the most chunks
        (2, 0.2, 0.0),  # nothing masked: loss 0, zero gradients, no chunk runs
    ],
)
def test_masked_head_equals_full_head(patch, fraction, p_mask):
    model, params, tokens, t = _model_and_params(patch)
    mask = jax.random.bernoulli(jax.random.key(5), p_mask, tokens.shape)
    weights = jax.random.uniform(jax.random.key(7), (B, F)) + 0.5
    x_t = jnp.where(mask, V - 1, tokens)
    chunk = losses.masked_head_chunk(fraction, F * G * G // patch**2)

    def full(p):
        return losses.masked_cross_entropy(model.apply({"params": p}, x_t, t), tokens, mask, weights)

    def masked(p):
        feats = model.apply({"params": p}, x_t, t, features_only=True)
        return losses.masked_head_cross_entropy(
            feats, p["head"]["kernel"], p["head"]["bias"], tokens, mask, weights, patch=patch, vocab_size=V, chunk=chunk
        )

    (loss, metrics), grads = jax.jit(jax.value_and_grad(full, has_aux=True))(params)
    (loss_m, metrics_m), grads_m = jax.jit(jax.value_and_grad(masked, has_aux=True))(params)
    np.testing.assert_allclose(loss_m, loss, rtol=1e-5, atol=1e-6)
    for k in metrics:
        np.testing.assert_allclose(metrics_m[k], metrics[k], rtol=1e-5, atol=1e-6)
    for g, r in zip(jax.tree.leaves(grads_m), jax.tree.leaves(grads)):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    biggest = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
    assert (biggest > 1e-3) == (p_mask > 0)  # a real gradient to compare (and none without masked tokens)
    if p_mask > 0:  # the forward alone (no gradient: the custom VJP's primal loop) gives the same loss
        np.testing.assert_allclose(jax.jit(masked)(params)[0], loss, rtol=1e-5, atol=1e-6)


def test_patch_layout_matches_the_head_channel_layout():
    """to_patch_layout puts token (f, gy*p+py, gx*p+px) at [s = py*p+px, f*N + gy*gw + gx], the channel
    block the unpatchify of models/latte.py reads its logits from."""
    p, h, w = 2, 4, 6
    ids = np.arange(2 * 3 * h * w).reshape(2, 3, h, w)
    out = np.asarray(losses.to_patch_layout(jnp.asarray(ids), p))
    assert out.shape == (2, 4, 3 * (h // p) * (w // p))
    n = (h // p) * (w // p)
    for f, y, x in [(0, 0, 0), (1, 3, 5), (2, 2, 1)]:
        gy, py, gx, px = y // p, y % p, x // p, x % p
        assert out[1, py * p + px, f * n + gy * (w // p) + gx] == ids[1, f, y, x]


def _mesh(shape):
    return jax.make_mesh(
        shape, ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3, devices=jax.devices()[: int(np.prod(shape))]
    )


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 2)])
def test_train_steps_with_masked_head_equal_full_head(shape):
    data = structured_tokens(16, 4, 4, 16)
    results = []
    for masked in (False, True):
        cfg = tiny_config(model__masked_head=masked, model__head_init_std=0.05)
        trainer = build_trainer(cfg, _mesh(shape))
        with jax.set_mesh(trainer.mesh):
            state = trainer.init(jax.random.key(0))
        state, metrics = run_steps(trainer, state, data, 2)
        rows = [[float(m[k]) for k in ("loss", "accuracy", "grad_norm", "masked_fraction")] for m in metrics]
        results.append((np.array(rows), [np.asarray(x) for x in jax.tree.leaves(state.params)]))
    (rows, params), (rows_m, params_m) = results
    np.testing.assert_allclose(rows_m, rows, rtol=1e-5, atol=1e-6)
    # AdamW divides by sqrt(v): a near-zero gradient's rounding moves its parameter by up to ~lr; seen: 1.05e-5 on
    # one of 8192 parameters on one CPU type (2026-12-04), ~1e-6 on others
    for a, b in zip(params_m, params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5)


def _largest_intermediate(fn, *args):
    """The element count of the largest array any equation of fn's jaxpr (nested ones too) produces."""

    def walk(jaxpr):
        best = 0
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                best = max(best, int(np.prod(getattr(var.aval, "shape", ()))))
            for sub in _subjaxprs(eqn):
                best = max(best, walk(sub))
        return best

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
                yield item.jaxpr
            elif hasattr(item, "eqns"):
                yield item


def test_masked_head_never_builds_the_full_logits():
    cfg = tiny_config(frames=4, grid=8, n_embed=255, batch_size=2)
    vocab = 256
    sizes = {}
    for masked in (False, True):
        cfg.model.masked_head = masked
        model = make_denoiser(cfg.model, vocab)
        tokens = jnp.zeros((2, 4, 8, 8), jnp.int32)
        t = jnp.full((2, 4), 0.5)
        params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), tokens, t)["params"]))
        micro = {
            "tokens": tokens,
            "x_t": tokens,
            "t": t,
            "weights": jnp.ones((2, 4)),
            "mask": jax.random.bernoulli(jax.random.key(1), 0.5, tokens.shape),
        }
        grad = jax.grad(lambda p: make_loss_fn(model, cfg)(p, micro)[0])
        sizes[masked] = _largest_intermediate(grad, params)
    full_logits = 2 * 4 * 8 * 8 * vocab
    assert sizes[False] >= full_logits  # the full head does build them ...
    assert sizes[True] < full_logits // 2, sizes  # ... the masked head at most one chunk of them (1/4 here)


def test_masked_head_needs_the_masked_loss():
    cfg = tiny_config(model__masked_head=True, flow__mask_ce=False)
    with pytest.raises(ConfigError, match="config.model.masked_head"):
        validate(cfg)
    with pytest.raises(ValueError, match="config.model.masked_head"):
        make_loss_fn(make_denoiser(cfg.model, V), cfg)
    cfg = tiny_config(model__masked_head_chunk=0.0)
    with pytest.raises(ConfigError, match="config.model.masked_head_chunk"):
        validate(cfg)
