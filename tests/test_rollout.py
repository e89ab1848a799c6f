"""Chunk-wise rollout: exact lengths, pinned NFE of the presets, context kept, one compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import tiny_config

from maskflow_jax.sampling import rollout as ro

V, MASK = 9, 8


def copy_last_context(tokens, t):
    """A fake model predicting frame f as (last fully known frame + (f - its index)) mod 8: a counter."""
    known = tokens != MASK
    frames_known = jnp.all(known, axis=(2, 3))
    last = jnp.max(jnp.where(frames_known, jnp.arange(tokens.shape[1]), -1), axis=1)
    ref = jnp.take_along_axis(tokens, jnp.maximum(last, 0)[:, None, None, None], axis=1)
    offset = (jnp.arange(tokens.shape[1])[None, :] - last[:, None])[:, :, None, None]
    target = (ref + offset) % 8
    return jnp.where(jnp.arange(V) == target[..., None], 20.0, 0.0)


@pytest.mark.parametrize(
    "window,context,stride,lengths,nfe",
    [
        (16, 2, 14, (32, 80, 160), (60, 120, 240)),
        (16, 15, 1, (32, 80, 160), (340, 1300, 2900)),
        (36, 35, 1, (72, 180), (740, 2900)),
    ],
)
def test_preset_nfe_pinned(window, context, stride, lengths, nfe):
    for length, expected in zip(lengths, nfe):
        plan = ro.rollout_plan(length, window, context, stride)
        assert 20 * len(plan) == expected
        assert context + sum(c.keep for c in plan) == length


def test_presets_table():
    assert ro.PRESETS["ffs_chunk"] == {"window": 16, "context": 2, "stride": 14, "steps": 20}
    assert ro.PRESETS["dmlab_ar"]["context"] == 35


def test_plan_errors_name_the_field():
    with pytest.raises(ValueError, match="config.sampling.stride"):
        ro.rollout_plan(40, 16, 2, 15)
    with pytest.raises(ValueError, match="config.sampling.context"):
        ro.rollout_plan(40, 16, 16, 1)
    with pytest.raises(ValueError, match="config.sampling.context >= 1"):
        ro.rollout_plan(40, 16, 0, 16)


def _chunk_fn():
    cfg = tiny_config()
    cfg.sampling.steps = 4
    sampler = ro.make_sampler(cfg.sampling, MASK)
    return ro.make_chunk_fn(sampler, copy_last_context)


def test_rollout_returns_exactly_L_frames_with_one_compilation():
    window, m, s = 4, 1, 2
    chunk_fn = _chunk_fn()
    context = np.random.default_rng(0).integers(0, 8, size=(2, m, 2, 2)).astype(np.int32)
    for length in (window, window + 1, 2 * window, 10 * window):
        streamed = []
        tokens, info = ro.rollout(
            jax.random.key(0),
            chunk_fn,
            context,
            length=length,
            window=window,
            context=m,
            stride=s,
            mask_id=MASK,
            callback=lambda i, new: streamed.append(new),
        )
        assert tokens.shape == (2, length, 2, 2) and not (tokens == MASK).any()
        np.testing.assert_array_equal(tokens[:, :m], context)
        assert info["chunks"] == len(ro.rollout_plan(length, window, m, s)) and info["nfe"] == 4 * info["chunks"]
        assert 0 < info["seconds"] < 60  # wall-clock of this rollout
        np.testing.assert_array_equal(np.concatenate(streamed, axis=1), tokens[:, m:])
        # The fake model continues the sequence: frame k = context + k (mod 8).
        expected = (context[:, :1] + np.arange(length)[None, :, None, None]) % 8
        np.testing.assert_array_equal(tokens, expected)
    assert chunk_fn._cache_size() == 1


def test_full_sequence_from_nothing():
    chunk_fn = _chunk_fn()
    tokens, info = ro.rollout(
        jax.random.key(0), chunk_fn, None, length=4, window=4, context=0, stride=4, mask_id=MASK, grid=(2, 2), batch=3
    )
    assert tokens.shape == (3, 4, 2, 2) and info["chunks"] == 1 and not (tokens == MASK).any()
    with pytest.raises(ValueError, match="context_tokens"):
        ro.rollout(
            jax.random.key(0),
            chunk_fn,
            np.zeros((3, 2, 2, 2), np.int32),
            length=8,
            window=4,
            context=1,
            stride=1,
            mask_id=MASK,
        )


def test_fm_sampler_through_config():
    cfg = tiny_config()
    cfg.sampling.sampler, cfg.sampling.steps = "fm", 5
    chunk_fn = ro.make_chunk_fn(ro.make_sampler(cfg.sampling, MASK), copy_last_context)
    context = np.zeros((1, 1, 2, 2), np.int32)
    tokens, info = ro.rollout(
        jax.random.key(0), chunk_fn, context, length=6, window=4, context=1, stride=3, mask_id=MASK
    )
    assert tokens.shape == (1, 6, 2, 2) and info["nfe"] == 5 * 2
    np.testing.assert_array_equal(tokens[0, :, 0, 0], np.arange(6) % 8)


def test_run_sampler_takes_parameters_as_arguments():
    """inference.Run passes the parameters to the jitted chunk step as an argument. Closed over as
    constants, an all-zero ("untrained") model at these sizes made XLA:CPU fold the sampler into one
    repeated token; uniform logits must give tokens spread over the whole codebook."""
    import types  # noqa: PLC0415

    from maskflow_jax import inference  # noqa: PLC0415
    from maskflow_jax.models.latte import make_denoiser  # noqa: PLC0415

    frames, grid, n_embed = 16, 8, 128
    cfg = tiny_config(frames=frames, grid=grid, n_embed=n_embed)
    cfg.model.hidden, cfg.model.patch = 128, 1
    cfg.sampling.context, cfg.sampling.stride, cfg.sampling.steps = 2, 14, 8
    model = make_denoiser(cfg.model, n_embed + 1)
    params = model.init(jax.random.key(0), jnp.zeros((1, frames, grid, grid), jnp.int32), jnp.ones((1, frames)))[
        "params"
    ]
    run = inference.Run(
        cfg=cfg,
        tokenizer=types.SimpleNamespace(grid=(grid, grid)),
        model=model,
        params=jax.tree.map(jnp.zeros_like, params),
        step=0,
    )
    ctx = np.random.default_rng(0).integers(0, n_embed, (4, 2, grid, grid)).astype(np.int32)
    tokens, info = run.generate(jax.random.key(0), context_tokens=ctx, num_frames=frames, decode=False)
    new = tokens[:, 2:]
    assert tokens.shape == (4, frames, grid, grid) and info["nfe"] == 8
    assert new.max() < n_embed  # no MASK left
    assert len(np.unique(new)) > 0.9 * n_embed, len(np.unique(new))
    assert all(len(np.unique(new[b, f])) > 16 for b in range(4) for f in range(frames - 2))
    assert run.chunk_fn()._cache_size() == 1


def test_run_generates_with_a_window_shorter_than_the_clip():
    """config.sampling.window = m + s: every chunk runs the model on m + s frames only (one compilation),
    and the frames continue the context as with the full window."""
    import types  # noqa: PLC0415

    from maskflow_jax import inference  # noqa: PLC0415

    seen = []

    class CounterRun(inference.Run):
        def apply_fn(self):
            def apply(params, tokens, t, actions=None):
                seen.append(tokens.shape)  # at trace time
                return copy_last_context(tokens, t) + params

            return apply

    cfg = tiny_config(frames=8, grid=2, n_embed=MASK)
    cfg.sampling.steps, cfg.sampling.context, cfg.sampling.stride = 3, 2, 1
    run = CounterRun(
        cfg=cfg,
        tokenizer=types.SimpleNamespace(grid=(2, 2)),
        model=types.SimpleNamespace(vocab_size=V),
        params=jnp.zeros(()),
        step=0,
    )
    ctx = np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype(np.int32)[None]  # frames 0, 1
    expected = np.broadcast_to(np.arange(20)[None, :, None, None] % 8, (1, 20, 2, 2))
    for window in (3, None):  # None: config.sampling.window = 0, i.e. data.frames
        cfg.sampling.window = window or 0
        seen.clear()
        run._chunk_fns.clear()
        tokens, info = run.generate(jax.random.key(0), context_tokens=ctx, num_frames=20, decode=False)
        np.testing.assert_array_equal(tokens, expected)
        assert info["chunks"] == 18 and {s[1] for s in seen} == {window or 8}
    with pytest.raises(ValueError, match="config.sampling.window"):
        run.generate(jax.random.key(0), context_tokens=ctx, num_frames=20, decode=False, window=9)


def test_untrained_run_is_the_zero_initialised_network_without_its_cost():
    """inference.untrained_run (the report's untrained baseline) gives exactly the logits of the
    initialised and of the zeroed network (adaLN-Zero: a zero head), so the same tokens from the same
    key, spread over the codebook (no XLA:CPU constant folding) and with one compilation."""
    import types  # noqa: PLC0415

    from maskflow_jax import inference  # noqa: PLC0415
    from maskflow_jax.models.latte import make_denoiser  # noqa: PLC0415

    frames, grid, n_embed = 8, 4, 32
    cfg = tiny_config(frames=frames, grid=grid, n_embed=n_embed)
    cfg.sampling.context, cfg.sampling.stride, cfg.sampling.steps = 2, 6, 4
    model = make_denoiser(cfg.model, n_embed + 1)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, n_embed + 1, (4, frames, grid, grid)), jnp.int32)
    t = jnp.asarray(rng.uniform(size=(4, frames)), jnp.float32)
    init = model.init(jax.random.key(1), tokens, t)["params"]
    tok = types.SimpleNamespace(grid=(grid, grid))
    trained_like = inference.Run(cfg=cfg, tokenizer=tok, model=model, params=init, step=0)
    untrained = inference.untrained_run(trained_like)
    want = np.asarray(untrained.apply_fn()(untrained.params, tokens, t))
    assert want.shape == (4, frames, grid, grid, n_embed + 1) and not want.any()
    for params in (init, jax.tree.map(jnp.zeros_like, init)):
        np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, tokens, t)), want)
    ctx = np.asarray(tokens[:, :2]) % n_embed
    zeroed = inference.Run(cfg=cfg, tokenizer=tok, model=model, params=jax.tree.map(jnp.zeros_like, init), step=0)
    a, info = untrained.generate(jax.random.key(3), context_tokens=ctx, num_frames=14, decode=False)
    b, _ = zeroed.generate(jax.random.key(3), context_tokens=ctx, num_frames=14, decode=False)
    np.testing.assert_array_equal(a, b)
    assert info["nfe"] == 4 * 2 and a.max() < n_embed
    assert len(np.unique(a[:, 2:])) == n_embed  # uniform logits: every code appears among 4 x 12 x 16 tokens
    assert untrained.chunk_fn()._cache_size() == 1
