"""Action conditioning (docs/method.md §12, beyond the paper): model, training, rollout windows, Run, errors."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from factories import tiny_config
from flax import linen as nn

from maskflow_jax import inference
from maskflow_jax.data import heldout, maze
from maskflow_jax.eval import prediction
from maskflow_jax.models.latte import make_denoiser
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.sampling import rollout as ro
from maskflow_jax.train.setup import build_trainer

V, MASK = 9, 8


def action_is_token(tokens, t, actions):
    """A fake action-conditioned model: every token of frame f is actions[:, f] (a one-hot logit)."""
    target = jnp.broadcast_to(actions[:, :, None, None], tokens.shape)
    return jnp.where(jnp.arange(V) == target[..., None], 20.0, 0.0)


def _chunk_fn(logits_fn):
    cfg = tiny_config()
    cfg.sampling.steps = 3
    return ro.make_chunk_fn(ro.make_sampler(cfg.sampling, MASK), logits_fn)


@pytest.mark.parametrize("length,window,context,stride", [(11, 4, 1, 3), (9, 4, 2, 2), (3, 4, 0, 4)])
def test_every_chunk_gets_the_actions_of_its_window(length, window, context, stride):
    rng = np.random.default_rng(length)
    actions = rng.integers(0, MASK, size=(2, length))
    ctx = rng.integers(0, MASK, size=(2, context, 2, 2)).astype(np.int32) if context else None
    out, info = ro.rollout(
        jax.random.key(0),
        _chunk_fn(action_is_token),
        ctx,
        length=length,
        window=window,
        context=context,
        stride=stride,
        mask_id=MASK,
        grid=(2, 2),
        batch=2,
        actions=actions,
    )
    assert out.shape == (2, length, 2, 2)
    np.testing.assert_array_equal(
        out[:, context:], np.broadcast_to(actions[:, context:, None, None], (2, length - context, 2, 2))
    )
    if context:
        np.testing.assert_array_equal(out[:, :context], ctx)
    assert info["nfe"] == 3 * info["chunks"]


def test_rollout_rejects_actions_of_the_wrong_shape():
    ctx = np.zeros((2, 1, 2, 2), np.int32)
    with pytest.raises(ValueError, match=r"expected integers \(B, L\) = \(2, 6\)"):
        ro.rollout(
            jax.random.key(0),
            _chunk_fn(action_is_token),
            ctx,
            length=6,
            window=4,
            context=1,
            stride=3,
            mask_id=MASK,
            actions=np.zeros((2, 5), np.int32),
        )


def _action_model():
    cfg = tiny_config(model__action_cond=True, data__use_actions=True)
    model = make_denoiser(cfg.model, cfg.tokenizer.n_embed + 1)
    b, f, g = 2, cfg.data.frames, 4
    tokens, t = jnp.zeros((b, f, g, g), jnp.int32), jnp.ones((b, f))
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), tokens, t, jnp.zeros((b, f), jnp.int32))["params"])
    # Zero-initialised adaLN gives zero logits for any input: perturb every parameter.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return cfg, model, params, tokens, t


def test_model_logits_depend_on_actions_and_require_them():
    cfg, model, params, tokens, t = _action_model()
    assert params["action_embed"]["embedding"].shape == (cfg.model.num_actions, cfg.model.hidden)
    a0 = jnp.zeros(t.shape, jnp.int32)
    a1 = a0.at[:, 1].set(2)
    apply = jax.jit(lambda a: model.apply({"params": params}, tokens, t, actions=a))
    l0, l1 = apply(a0), apply(a1)
    assert float(jnp.max(jnp.abs(l0 - l1))) > 1e-3
    with pytest.raises(ValueError, match="needs actions"):
        model.apply({"params": params}, tokens, t)
    with pytest.raises(ValueError, match=r"needs actions \(B, F\) = \(2, 4\); got \(2, 3\)"):
        model.apply({"params": params}, tokens, t, actions=a0[:, :3])


def _fake_run(cfg, model, params):
    tokenizer = types.SimpleNamespace(grid=(4, 4), decode=lambda x: x)
    return inference.Run(cfg=cfg, tokenizer=tokenizer, model=model, params=params, step=0)


def test_run_generate_requires_valid_actions_exactly_when_action_conditioned():
    cfg, model, params, _, _ = _action_model()
    cfg.sampling.steps, cfg.sampling.stride = 2, 2
    run = _fake_run(cfg, model, params)
    ctx = np.zeros((2, 1, 4, 4), np.int32)
    with pytest.raises(ValueError, match=r"action_cond=True\): pass actions"):
        run.generate(jax.random.key(0), context_tokens=ctx, num_frames=6, decode=False)
    with pytest.raises(ValueError, match=r"action ids must be in \[0, 3\)"):
        run.generate(jax.random.key(0), context_tokens=ctx, num_frames=6, decode=False, actions=np.full((2, 6), 3))
    actions = np.array([[0, 1, 2, 0, 1, 2], [2, 2, 2, 1, 1, 1]])
    tok, info = run.generate(jax.random.key(0), context_tokens=ctx, num_frames=6, decode=False, actions=actions)
    assert tok.shape == (2, 6, 4, 4) and info["chunks"] == 3
    plain = tiny_config()
    plain_model = make_denoiser(plain.model, plain.tokenizer.n_embed + 1)
    plain_params = nn.meta.unbox(
        jax.jit(plain_model.init)(jax.random.key(0), jnp.zeros((1, 4, 4, 4), jnp.int32), jnp.ones((1, 4)))["params"]
    )
    with pytest.raises(ValueError, match="not action-conditioned"):
        _fake_run(plain, plain_model, plain_params).generate(
            jax.random.key(0), context_tokens=ctx, num_frames=6, decode=False, actions=actions
        )


def test_next_frame_check_passes_actions_to_the_model():
    rng = np.random.default_rng(0)
    actions = rng.integers(0, MASK, size=(5, 4))
    clips = np.broadcast_to(actions[:, :, None, None], (5, 4, 2, 2)).astype(np.int32)
    res = prediction.next_frame_accuracy(action_is_token, clips, 2, mask_id=MASK, batch_size=2, actions=actions)
    assert res["accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"actions must be \(N, F\)"):
        prediction.next_frame_accuracy(action_is_token, clips, 2, mask_id=MASK, actions=actions[:, :3])


def test_training_learns_to_use_actions():
    """Clips whose token ids count up or down by one per frame, as the clip's action says. Given one
    frame (m = 1) the direction is known only from the action: with the true actions the trained model
    predicts frame 1 much better than with the opposite ones."""
    cfg = tiny_config(model__action_cond=True, data__use_actions=True, train__lr=1e-2, flow__reweigh="none")
    f, g, n = cfg.data.frames, 4, cfg.tokenizer.n_embed
    rng = np.random.default_rng(0)
    base = rng.integers(0, n, size=(32, 1, g, g))
    direction = rng.integers(0, 2, size=32)  # action 0 = count down, 1 = count up
    step = np.where(direction == 1, 1, -1)[:, None, None, None]
    clips = ((base + step * np.arange(f)[None, :, None, None]) % n).astype(np.int32)
    actions = np.repeat(direction[:, None], f, axis=1).astype(np.int32)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        for i in range(400):
            sel = np.arange(8 * i, 8 * i + 8) % 32
            batch = {"tokens": jnp.asarray(clips[sel]), "actions": jnp.asarray(actions[sel])}
            state, metrics = trainer.step(state, jax.device_put(batch, trainer.batch_sharding))
    assert np.isfinite(float(metrics["loss"]))
    apply = jax.jit(lambda x, t, a: trainer.model.apply({"params": state.params}, x, t, actions=a))
    true = prediction.next_frame_accuracy(apply, clips, 1, mask_id=n, actions=actions)
    flipped = prediction.next_frame_accuracy(apply, clips, 1, mask_id=n, actions=1 - actions)
    assert true["accuracy"] > 0.5 and flipped["accuracy"] < 0.25, (true, flipped)  # 0.62 and 0.125 when written


def test_heldout_actions_come_from_the_token_cache(smoke_run):
    cfg, workdir, _ = smoke_run
    assert heldout.actions(cfg, workdir, [0, 1], 10) is None  # not action-conditioned
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.model.action_cond, cfg.data.use_actions = True, True
    length = cfg.data.maze.length
    acts = heldout.actions(cfg, workdir, [0, 1], length)
    assert acts.shape == (2, length) and acts.dtype == np.int32
    assert set(np.unique(acts)) <= {maze.LEFT, maze.RIGHT, maze.FORWARD}
    assert len(np.unique(acts)) > 1  # a real trajectory, not padding
    tokens, _, with_tokens = heldout.load(cfg, workdir, 2, length)  # the same videos' tokens and actions
    np.testing.assert_array_equal(with_tokens, acts)
    assert tokens.shape[:2] == (2, length)
    with pytest.raises(ValueError, match="lower config.eval.horizons"):
        heldout.actions(cfg, workdir, [0], length + 1)


def test_action_align_cause_conditions_frame_f_on_the_move_into_it():
    """'cause': frame f sees actions[f - 1] (frame 0 a learnt no-action id); 'after' (default) actions[f].
    Pinned against an 'after' model with the same parameters fed the shifted actions."""
    cfg = tiny_config(model__action_cond=True, data__use_actions=True, model__action_align="cause")
    model = make_denoiser(cfg.model, cfg.tokenizer.n_embed + 1)
    b, f, g = 2, cfg.data.frames, 4
    tokens, t = jnp.zeros((b, f, g, g), jnp.int32), jnp.ones((b, f))
    params = nn.meta.unbox(model.init(jax.random.key(0), tokens, t, jnp.zeros((b, f), jnp.int32))["params"])
    assert params["action_embed"]["embedding"].shape == (cfg.model.num_actions + 1, cfg.model.hidden)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    apply = jax.jit(lambda a: model.apply({"params": params}, tokens, t, actions=a))
    a0 = jnp.zeros((b, f), jnp.int32)
    # the last frame's action is never used under 'cause' (it moves to a frame outside the clip)
    np.testing.assert_array_equal(apply(a0), apply(a0.at[:, f - 1].set(2)))
    assert float(jnp.max(jnp.abs(apply(a0) - apply(a0.at[:, 0].set(2))))) > 1e-3
    # equal to an 'after' model of the same parameters fed the shifted actions with the no-action id first
    after = make_denoiser(
        dict_replace(cfg.model, action_align="after", num_actions=cfg.model.num_actions + 1), cfg.tokenizer.n_embed + 1
    )
    a = jnp.asarray(np.random.default_rng(0).integers(0, cfg.model.num_actions, (b, f)), jnp.int32)
    shifted = jnp.concatenate([jnp.full((b, 1), cfg.model.num_actions, jnp.int32), a[:, :-1]], 1)
    np.testing.assert_allclose(apply(a), after.apply({"params": params}, tokens, t, actions=shifted), atol=1e-6)
    with pytest.raises(ValueError, match="config.model.action_align"):
        bad = make_denoiser(dict_replace(cfg.model, action_align="before"), cfg.tokenizer.n_embed + 1)
        bad.init(jax.random.key(0), tokens, t, a0)


def dict_replace(model_cfg, **kw):
    out = ml_collections.ConfigDict(model_cfg.to_dict())
    out.update(kw)
    return out


def test_action_align_both_adds_the_move_out_of_and_into_each_frame():
    """'both': frame f's conditioning is action_embed[actions[f]] + cause_embed[actions[f - 1]] (no-action id
    for frame 0). Pinned by zeroing one table: the model then equals the 'after' / 'cause' model."""
    cfg = tiny_config(model__action_cond=True, data__use_actions=True, model__action_align="both")
    model = make_denoiser(cfg.model, cfg.tokenizer.n_embed + 1)
    b, f, g, n = 2, cfg.data.frames, 4, cfg.model.num_actions
    tokens, t = jnp.zeros((b, f, g, g), jnp.int32), jnp.ones((b, f))
    params = nn.meta.unbox(model.init(jax.random.key(0), tokens, t, jnp.zeros((b, f), jnp.int32))["params"])
    assert params["action_embed"]["embedding"].shape == (n, cfg.model.hidden)
    assert params["cause_embed"]["embedding"].shape == (n + 1, cfg.model.hidden)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    a = jnp.asarray(np.random.default_rng(0).integers(0, n, (b, f)), jnp.int32)
    for kept, align in (("action_embed", "after"), ("cause_embed", "cause")):
        other = make_denoiser(dict_replace(cfg.model, action_align=align), cfg.tokenizer.n_embed + 1)
        sub = {k: v for k, v in params.items() if k not in ("action_embed", "cause_embed")}
        sub["action_embed"] = params[kept]
        zeroed = dict(params)
        drop = "cause_embed" if kept == "action_embed" else "action_embed"
        zeroed[drop] = jax.tree.map(jnp.zeros_like, params[drop])
        np.testing.assert_allclose(
            model.apply({"params": zeroed}, tokens, t, actions=a),
            other.apply({"params": sub}, tokens, t, actions=a),
            atol=1e-5,
        )
    # both tables matter
    shifted = a.at[:, 0].set((a[:, 0] + 1) % n)
    assert (
        float(
            jnp.max(
                jnp.abs(
                    model.apply({"params": params}, tokens, t, actions=a)
                    - model.apply({"params": params}, tokens, t, actions=shifted)
                )
            )
        )
        > 1e-3
    )
