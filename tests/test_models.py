"""The discrete Latte denoiser: docs/method.md §5 invariants, sizes and sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import tiny_config
from jax.sharding import AxisType

from configs import base
from maskflow_jax.models import layers
from maskflow_jax.models.latte import make_denoiser
from maskflow_jax.parallel import mesh as mesh_lib
from maskflow_jax.train.setup import rules_from_config

B, F, H, V = 2, 3, 4, 17


def _model(time_cond=True, **kw):
    cfg = tiny_config()
    cfg.model.time_cond = time_cond
    for k, v in kw.items():
        cfg.model[k] = v
    return make_denoiser(cfg.model, vocab_size=V)


def _inputs(seed=0):
    tokens = jax.random.randint(jax.random.key(seed), (B, F, H, H), 0, V)
    t = jax.random.uniform(jax.random.key(seed + 1), (B, F))
    return tokens, t


def _perturbed_params(model, tokens, t, scale=0.05):
    """Init params plus noise, so zero-initialised (adaLN-Zero) paths carry signal."""
    params = nn.meta.unbox(model.init(jax.random.key(0), tokens, t)["params"])
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def test_zero_logits_at_init_and_shape():
    model = _model()
    tokens, t = _inputs()
    params = model.init(jax.random.key(0), tokens, t)["params"]
    logits = model.apply({"params": params}, tokens, t)
    assert logits.shape == (B, F, H, H, V) and logits.dtype == jnp.float32
    assert float(jnp.abs(logits).max()) == 0.0


@pytest.mark.parametrize("size,expected_m", [("S", 61), ("B", 187), ("L", 534), ("XL", 761)])
def test_parameter_counts_match_spec(size, expected_m):
    cfg = base.get_base()
    cfg.model.size = size
    model = make_denoiser(cfg.model, vocab_size=16385)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 2, 32, 32), jnp.int32), jnp.ones((1, 2)))["params"]
    )
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(shapes)))
    assert abs(n / 1e6 - expected_m) / expected_m < 0.01, n


def test_time_conditioning_per_frame_and_off_switch():
    tokens, t = _inputs()
    model = _model(time_cond=True)
    params = _perturbed_params(model, tokens, t)
    out = model.apply({"params": params}, tokens, t)
    t2 = t.at[:, 1].set(1.0 - t[:, 1])
    out2 = model.apply({"params": params}, tokens, t2)
    assert float(jnp.abs(out2 - out).max()) > 1e-4  # a frame's own t matters
    off = _model(time_cond=False)
    a = off.apply({"params": params}, tokens, t)
    b = off.apply({"params": params}, tokens, t2)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_temporal_blocks_mix_frames_and_output_is_permutation_sensitive():
    tokens, t = _inputs()
    model = _model()
    params = _perturbed_params(model, tokens, t)
    out = model.apply({"params": params}, tokens, t)
    changed = tokens.at[:, 0].set((tokens[:, 0] + 1) % V)
    out2 = model.apply({"params": params}, changed, t)
    # Changing frame 0 changes the prediction of frame 2 (full bidirectional temporal attention).
    assert float(jnp.abs(out2[:, 2] - out[:, 2]).max()) > 1e-5
    # Clips of a batch are independent.
    only_b0 = tokens.at[0, 0].set((tokens[0, 0] + 1) % V)
    out3 = model.apply({"params": params}, only_b0, t)
    np.testing.assert_allclose(np.asarray(out3[1]), np.asarray(out[1]), atol=1e-6)


def test_positional_embedding_order():
    emb = layers.sincos_2d(8, 2, 3)  # rows 2, cols 3, N = 6 row-major
    assert emb.shape == (6, 8)
    # The first half encodes the column: patches in the same column share it.
    np.testing.assert_array_equal(emb[0, :4], emb[3, :4])
    np.testing.assert_array_equal(emb[0, 4:], emb[1, 4:])  # the second half encodes the row
    assert not np.allclose(emb[0, :4], emb[1, :4])
    feats = layers.timestep_features(jnp.array([0.0]), 8)
    np.testing.assert_allclose(feats[0], [1, 1, 1, 1, 0, 0, 0, 0])  # cos first


def test_bad_sizes_are_named():
    cfg = tiny_config()
    cfg.model.heads = 5
    with pytest.raises(ValueError, match="config.model.hidden"):
        make_denoiser(cfg.model, V)
    cfg = tiny_config()
    with pytest.raises(ValueError, match="config.model.patch"):
        make_denoiser(cfg.model, V, grid=(5, 5))


def test_forward_on_4x2_mesh_matches_one_device_and_params_are_sharded():
    cfg = tiny_config()
    model = make_denoiser(cfg.model, V)
    tokens, t = _inputs()
    tokens = jnp.concatenate([tokens] * 4)
    t = jnp.concatenate([t] * 4)
    params = _perturbed_params(model, tokens, t)
    ref = model.apply({"params": params}, tokens, t)
    mesh = jax.make_mesh((4, 2, 1), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    rules = rules_from_config(cfg.mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, t)["params"])
        shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
        sharded = jax.device_put(params, shardings)
        x = jax.device_put(tokens, mesh_lib.batch_sharding(mesh))
        out = jax.jit(lambda p, a, b: model.apply({"params": p}, a, b))(sharded, x, t)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
    assert not sharded["head"]["kernel"].sharding.is_fully_replicated


def test_mesh_from_config():
    cfg = tiny_config()
    cfg.mesh.shape = (-1, 2, 1)
    mesh = mesh_lib.make_mesh(cfg.mesh)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert mesh_lib.batch_shards(mesh) == 8
    cfg.mesh.shape = (3, -1, 1)
    with pytest.raises(ValueError, match="config.mesh.shape"):
        mesh_lib.make_mesh(cfg.mesh)


def test_scanned_blocks_compute_the_loop_function_with_stacked_params():
    loop, scanned = _model(depth=6), _model(depth=6, scan_blocks=True)
    tokens, t = _inputs()
    params = _perturbed_params(loop, tokens, t)
    stacked = {k: v for k, v in params.items() if not k.startswith("pair_")}
    stacked["pairs"] = jax.tree.map(lambda *xs: jnp.stack(xs), *(params[f"pair_{i}"] for i in range(3)))
    want = loop.apply({"params": params}, tokens, t)
    np.testing.assert_allclose(scanned.apply({"params": stacked}, tokens, t), want, atol=1e-5)
    boxed = jax.eval_shape(lambda: scanned.init(jax.random.key(0), tokens, t)["params"])
    assert jax.tree.map(lambda x: x.shape, nn.meta.unbox(boxed)) == jax.tree.map(lambda x: x.shape, stacked)
    spec = nn.get_partition_spec(boxed)["pairs"]["spatial"]["attn"]
    assert all(
        s[0] == "layers" for s in jax.tree.leaves(spec, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    )
    # Gradients agree too (scan + remat with the "dots" policy).
    remat = _model(depth=6, scan_blocks=True, remat=True, remat_policy="dots")
    loss = lambda m, p: jnp.sum(m.apply({"params": p}, tokens, t) ** 2)  # noqa: E731
    g_loop = jax.grad(lambda p: loss(loop, p))(params)
    g_scan = jax.grad(lambda p: loss(remat, p))(stacked)
    np.testing.assert_allclose(
        g_scan["pairs"]["temporal"]["mlp"]["fc1"]["kernel"][2],
        g_loop["pair_2"]["temporal"]["mlp"]["fc1"]["kernel"],
        rtol=1e-4,
        atol=1e-6,
    )


def test_unknown_remat_policy_is_named():
    model = _model(remat=True, remat_policy="everything")
    tokens, t = _inputs()
    with pytest.raises(ValueError, match="config.model.remat_policy"):
        model.init(jax.random.key(0), tokens, t)


def test_head_init_std_gives_a_random_head_and_body_gradients_at_step_0():
    tokens, t = _inputs()
    mask = jax.random.uniform(jax.random.key(5), tokens.shape) < 0.5

    def body_grad_norm(model):
        params = nn.meta.unbox(model.init(jax.random.key(0), tokens, t)["params"])

        def loss(p):
            logp = jax.nn.log_softmax(model.apply({"params": p}, jnp.where(mask, V - 1, tokens), t))
            return -jnp.sum(jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0] * mask) / mask.sum()

        g = jax.grad(loss)(params)
        body = {k: v for k, v in g.items() if k not in ("head", "final_adaLN")}
        return params, float(optax_norm(body))

    zero_params, zero_body = body_grad_norm(_model())
    assert float(jnp.abs(zero_params["head"]["kernel"]).max()) == 0.0 and zero_body == 0.0  # the release's saddle
    params, body = body_grad_norm(_model(head_init_std=0.02))
    kernel = np.asarray(params["head"]["kernel"])
    assert abs(kernel.std() - 0.02) < 0.002 and abs(kernel.mean()) < 0.002
    assert body > 1e-4


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


def _ce_logits_and_grads(model, params, tokens, t):
    """(logits, masked-CE gradients w.r.t. params) of model, jitted, with a fixed mask and frame weights."""
    from maskflow_jax.flow import losses

    mask = jax.random.bernoulli(jax.random.key(5), 0.5, tokens.shape)
    weights = jnp.linspace(0.5, 2.0, tokens.shape[0] * F).reshape(tokens.shape[0], F)

    def loss(p):
        logits = model.apply({"params": p}, tokens, t)
        return losses.masked_cross_entropy(logits, tokens, mask, weights)[0], logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return logits, grads


def _assert_same_logits_and_grads(got, ref):
    (logits, grads), (ref_logits, ref_grads) = got, ref
    assert float(jnp.max(jnp.abs(ref_logits))) > 0.1  # a non-trivial model
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref_grads)) > 1e-3


@pytest.mark.parametrize("batch", [1, 2])
def test_backward_workarounds_keep_logits_and_gradients(monkeypatch, batch):
    """layers.fusion_barrier / bcast_mul (XLA:CPU backward-pass workarounds, docs/performance.md)
    compute the plain model: logits and masked-CE gradients equal identity / x * s to 1e-5."""
    model = _model()
    tokens, t = _inputs()
    tokens, t = tokens[:batch], t[:batch]
    params = _perturbed_params(model, tokens, t, scale=0.2)
    got = _ce_logits_and_grads(model, params, tokens, t)
    monkeypatch.setattr(layers, "fusion_barrier", lambda x: x)
    monkeypatch.setattr(layers, "bcast_mul", lambda x, s: x * s)
    _assert_same_logits_and_grads(got, _ce_logits_and_grads(model, params, tokens, t))


def test_fusion_barrier_option_keeps_logits_and_gradients():
    """config.model.fusion_barrier=False (the built-in worlds' configs) reaches the model and computes the
    same function: logits and masked-CE gradients equal those with the barrier to 1e-5 (a different
    fusion rounds differently)."""
    on, off = _model(fusion_barrier=True), _model(fusion_barrier=False)
    assert on.fusion_barrier and not off.fusion_barrier
    tokens, t = _inputs()
    params = _perturbed_params(on, tokens, t, scale=0.2)
    _assert_same_logits_and_grads(
        _ce_logits_and_grads(on, params, tokens, t), _ce_logits_and_grads(off, params, tokens, t)
    )


def test_bcast_mul_gradient_sums_over_broadcast_axes():
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
    for shape in [(2, 3, 1, 4), (2, 1, 5, 4), (1, 1, 1, 4), (2, 3, 5, 4)]:
        s = jax.random.normal(jax.random.key(1), shape)
        got = jax.grad(lambda x, s: jnp.sum(jnp.sin(layers.bcast_mul(x, s))), argnums=(0, 1))(x, s)
        ref = jax.grad(lambda x, s: jnp.sum(jnp.sin(x * s)), argnums=(0, 1))(x, s)
        for a, b in zip(got, ref):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    s = jax.random.normal(jax.random.key(2), (4,))  # lower rank: broadcast by rank
    np.testing.assert_allclose(
        jax.grad(lambda s: jnp.sum(jnp.sin(layers.bcast_mul(x, s))))(s),
        jax.grad(lambda s: jnp.sum(jnp.sin(x * s)))(s),
        atol=1e-5,
        rtol=1e-5,
    )


def test_rope_scores_depend_on_the_offset_only_and_none_is_the_paper_model():
    dh = 8
    pos = layers.grid_positions(4, 4)
    tables = layers.rope_tables(dh, pos)
    assert tables[0].shape == (16, dh // 2)
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, dh))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, dh))
    # The same query and key at every position: the score of (i, j) is a function of pos_j - pos_i.
    qr = layers.apply_rope(jnp.broadcast_to(q, (1, 16, 1, dh)), tables)
    kr = layers.apply_rope(jnp.broadcast_to(k, (1, 16, 1, dh)), tables)
    s = np.asarray(jnp.einsum("mlhk,mjhk->lj", qr, kr))
    by_offset = {}
    for i in range(16):
        for j in range(16):
            by_offset.setdefault(tuple(pos[j] - pos[i]), []).append(s[i, j])
    assert len(by_offset) == 49
    assert max(np.ptp(v) for v in by_offset.values()) < 1e-5
    assert np.ptp([v[0] for v in by_offset.values()]) > 0.1  # ... and it does depend on the offset
    # Rotation keeps norms; a position-0 vector is unrotated.
    np.testing.assert_allclose(np.linalg.norm(qr, axis=-1), np.linalg.norm(q), rtol=1e-5)
    np.testing.assert_allclose(qr[0, 0], q[0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        layers.rope_tables(6, pos)

    tokens, t = _inputs()
    plain, rotary = _model(), _model(rope="spatiotemporal")
    params = _perturbed_params(plain, tokens, t)
    # Same parameters (rope adds none); "none" is the absolute-embedding model, rope changes the function.
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, nn.meta.unbox(rotary.init(jax.random.key(0), tokens, t)["params"])
    )
    a, b = plain.apply({"params": params}, tokens, t), rotary.apply({"params": params}, tokens, t)
    assert float(jnp.abs(a - b).max()) > 1e-3
    with pytest.raises(ValueError, match="config.model.rope"):
        _model(rope="rotary").init(jax.random.key(0), tokens, t)
