"""Training: overfitting, sharded == single-device, kill/resume == uninterrupted, checkpoint portability."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import KillAt, run_steps, structured_tokens, tiny_config, token_iterator
from jax.sharding import AxisType

from maskflow_jax import checkpoint
from maskflow_jax.train import loop
from maskflow_jax.train.setup import build_trainer


def _mesh(shape, axes=("data", "fsdp", "tensor")):
    n = int(np.prod(shape))
    return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(shape), devices=jax.devices()[:n])


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def data():
    cfg = tiny_config()
    return structured_tokens(32, cfg.data.frames, 4, cfg.tokenizer.n_embed)


def test_overfits_a_fixed_batch(data):
    cfg = tiny_config(train__lr=1e-2, flow__reweigh="none")
    trainer = build_trainer(cfg, _mesh((1, 1, 1)))
    # One clip repeated: fully memorisable, so even fully masked frames become predictable.
    batch = {"tokens": jax.device_put(jnp.asarray(np.repeat(data[:1], 8, axis=0)), trainer.batch_sharding)}
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        losses = []
        for _ in range(100):
            state, metrics = trainer.step(state, batch)
            losses.append(float(metrics["loss"]))
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert np.all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(cfg.tokenizer.n_embed + 1), rel=1e-3)  # zero-init logits: uniform
    assert last < 0.2 * first, (first, last)
    assert int(state.step) == 100


def test_sharded_step_matches_single_device(data):
    cfg = tiny_config()
    results = []
    for shape in [(1, 1, 1), (4, 2, 1), (2, 2, 2)]:
        trainer = build_trainer(cfg, _mesh(shape))
        with jax.set_mesh(trainer.mesh):
            state = trainer.init(jax.random.key(0))
        state, metrics = run_steps(trainer, state, data, 2)
        losses = [float(m["loss"]) for m in metrics]
        results.append((losses, _leaves(state.params), state))
    (ref_losses, ref_params, _), *others = results
    for losses, params, state in others:
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
        for a, b in zip(params, ref_params):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Parameters are really sharded on the multi-device meshes (not all replicated).
    sharded = [x for x in jax.tree.leaves(results[1][2].params) if not x.sharding.is_fully_replicated]
    assert sharded, "no parameter is sharded on the 4x2 mesh"


def test_kill_and_resume_matches_uninterrupted(tmp_path, data):
    cfg = tiny_config(train__steps=8, train__ckpt_every=100)
    mesh = _mesh((2, 1, 1))
    full = loop.train_denoiser(cfg, str(tmp_path / "full"), batches=token_iterator(data, 8), mesh=mesh)

    workdir = str(tmp_path / "killed")
    killed = loop.train_denoiser(cfg, workdir, batches=KillAt(token_iterator(data, 8), at=3), mesh=mesh)
    assert int(killed.step) == 3, "SIGTERM should stop the run right after the step in flight"
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"))
    assert manager.latest_step() == 3
    manager.close()
    resumed = loop.train_denoiser(cfg, workdir, batches=token_iterator(data, 8), mesh=mesh)
    assert int(resumed.step) == 8
    for a, b in zip(_leaves(resumed.params), _leaves(full.params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(resumed.ema_params), _leaves(full.ema_params)):
        np.testing.assert_array_equal(a, b)
    lines = open(os.path.join(workdir, "train_metrics.jsonl")).read().splitlines()
    assert lines and all("loss" in ln and "tokens_per_sec" in ln for ln in lines)


def test_checkpoint_from_8_devices_restores_on_1_and_damaged_latest_falls_back(tmp_path, data):
    cfg = tiny_config(train__steps=6, train__ckpt_every=3)
    workdir = str(tmp_path / "run")
    trained = loop.train_denoiser(cfg, workdir, batches=token_iterator(data, 8), mesh=_mesh((4, 2, 1)))
    one = build_trainer(cfg, _mesh((1, 1, 1)))
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"))
    assert sorted(manager.all_steps()) == [3, 6]
    target = checkpoint.abstract_target(one.abstract_state, one.state_shardings)
    step, state, meta = checkpoint.restore_latest(manager, target)
    assert step == 6 and meta["config"]["data"]["frames"] == cfg.data.frames
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(state.params))
    for a, b in zip(_leaves(state.params), _leaves(trained.params)):
        np.testing.assert_array_equal(a, b)
    step3, state3, _ = checkpoint.restore_latest(manager, target, step=3)  # an older step on request
    assert step3 == 3 and int(state3.step) == 3
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint step 4 .*saved steps: \[3, 6\]"):
        checkpoint.restore_latest(manager, target, step=4)
    # Damage the newest checkpoint: restore falls back to step 3 (with a warning).
    state_dir = os.path.join(workdir, "checkpoints", "6", "state")
    shutil.rmtree(state_dir)
    os.makedirs(state_dir)
    step, _, _ = checkpoint.restore_latest(manager, target)
    assert step == 3
    manager.close()


def test_inference_restores_only_the_parameter_items_without_an_optimizer(tmp_path, data, monkeypatch):
    """params and EMA are checkpoint items of their own; load_denoiser reads one of them and never builds
    an optimizer (make_optimizer raises here), and a damaged EMA item falls back to the previous step."""
    from maskflow_jax import inference  # noqa: PLC0415
    from maskflow_jax.train import setup  # noqa: PLC0415

    cfg = tiny_config(train__steps=4, train__ckpt_every=2, train__ema_decay=0.5)
    workdir = str(tmp_path / "run")
    trained = loop.train_denoiser(cfg, workdir, batches=token_iterator(data, 8), mesh=_mesh((2, 1, 1)))
    items = set(os.listdir(os.path.join(workdir, "checkpoints", "4")))
    assert {"state", "params", "ema", "meta", "data"} <= items, items
    assert not np.allclose(_leaves(trained.ema_params)[0], _leaves(trained.params)[0])

    def no_optimizer(*args, **kwargs):
        raise AssertionError("inference built an optimizer")

    monkeypatch.setattr(setup, "make_optimizer", no_optimizer)
    for use_ema, want in [(True, trained.ema_params), (False, trained.params)]:
        _, params, step = inference.load_denoiser(cfg, workdir, use_ema=use_ema)
        assert step == 4
        assert jax.tree.structure(params) == jax.tree.structure(want)
        for a, b in zip(_leaves(params), _leaves(want)):
            np.testing.assert_array_equal(a, b)
    ema_dir = os.path.join(workdir, "checkpoints", "4", "ema")
    shutil.rmtree(ema_dir)
    os.makedirs(ema_dir)
    _, _, step = inference.load_denoiser(cfg, workdir)
    assert step == 2
    # A checkpoint of another layout (state version 1: the parameters inside `state`) is named by its version.
    old = checkpoint.make_manager(str(tmp_path / "v1"))
    checkpoint.save(old, 1, {"params": {"w": np.zeros(2, np.float32)}}, {"config": {}}, version=1)
    old.wait_until_finished()
    with pytest.raises(checkpoint.CheckpointError, match="has state_version 1 but this code writes 2"):
        checkpoint.restore_params(old, {"w": jax.ShapeDtypeStruct((2,), np.float32)}, version=2)
    old.close()
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"))
    with pytest.raises(ValueError, match="parameter items are"):
        checkpoint.restore_params(manager, {}, item="opt")
    manager.close()


def test_non_finite_loss_stops_with_step_and_checkpoint(tmp_path, data):
    cfg = tiny_config(train__steps=6, train__ckpt_every=2, train__log_every=1, train__lr=1e38)
    with pytest.raises(
        loop.NonFiniteLossError,
        match=r"at step \d+; (the last good checkpoint is step \d+|no checkpoint was written yet)",
    ):
        loop.train_denoiser(cfg, str(tmp_path / "nan"), batches=token_iterator(data, 8), mesh=_mesh((1, 1, 1)))


def test_gradient_accumulation_equals_full_batch(data):
    results = []
    for accum in (1, 4):
        cfg = tiny_config(train__grad_accum=accum)
        trainer = build_trainer(cfg, _mesh((2, 1, 1)))
        with jax.set_mesh(trainer.mesh):
            state = trainer.init(jax.random.key(0))
            batch = {"tokens": jax.device_put(jnp.asarray(data[:8]), trainer.batch_sharding)}
            state, metrics = trainer.step(state, batch)
        results.append((float(metrics["loss"]), float(metrics["accuracy"]), _leaves(state.params)))
    (l1, a1, p1), (l4, a4, p4) = results
    assert l4 == pytest.approx(l1, rel=1e-5) and a4 == pytest.approx(a1, abs=1e-6)
    for a, b in zip(p1, p4):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ema_warmup_decay_values_and_first_step(data):
    from maskflow_jax.train.state import ema_decay_at  # noqa: PLC0415

    assert float(ema_decay_at(0, 0.9999, warmup=False)) == pytest.approx(0.9999)
    assert float(ema_decay_at(0, 0.9999, warmup=True)) == pytest.approx(0.1)
    assert float(ema_decay_at(90, 0.9999, warmup=True)) == pytest.approx(0.91)
    assert float(ema_decay_at(10_000, 0.995, warmup=True)) == pytest.approx(0.995)  # capped at ema_decay
    # One optimizer step: with warm-up the EMA is 0.1 * init + 0.9 * params; without, 0.9 * init + 0.1 * params.
    for warmup, w_init in [(True, 0.1), (False, 0.9)]:
        cfg = tiny_config(train__ema_decay=0.9, train__ema_warmup=warmup, train__lr=1e-2)
        trainer = build_trainer(cfg, _mesh((1, 1, 1)))
        batch = {"tokens": jax.device_put(jnp.asarray(data[:8]), trainer.batch_sharding)}
        with jax.set_mesh(trainer.mesh):
            init = trainer.init(jax.random.key(0))
            init_params = _leaves(init.params)  # the step donates its input state
            state, _ = trainer.step(init, batch)
        moved = False
        for e, p0, p1 in zip(_leaves(state.ema_params), init_params, _leaves(state.params)):
            np.testing.assert_allclose(e, w_init * p0 + (1 - w_init) * p1, rtol=1e-5, atol=1e-6)
            moved |= not np.allclose(p0, p1)
        assert moved


def test_learning_rate_schedules():
    from maskflow_jax.train.optimizer import learning_rate_schedule  # noqa: PLC0415

    const = learning_rate_schedule(
        tiny_config(train__lr=1e-3, train__warmup_steps=10, train__steps=100, train__lr_schedule="constant").train
    )
    cos = learning_rate_schedule(
        tiny_config(train__lr=1e-3, train__warmup_steps=10, train__steps=100, train__lr_schedule="cosine").train
    )
    for s in (0, 5, 10):  # the same linear warm-up
        assert float(cos(s)) == pytest.approx(float(const(s)), abs=1e-9)
    assert float(const(5)) == pytest.approx(5e-4)
    assert float(const(99)) == pytest.approx(1e-3)
    assert float(cos(55)) == pytest.approx(5e-4, rel=1e-4)  # half-way through the decay
    assert float(cos(100)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate_schedule(tiny_config(train__lr_schedule="linear").train)
    for kind in ("constant", "cosine"):  # train.warmup_init: the warm-up starts at a fraction of lr
        warm = learning_rate_schedule(
            tiny_config(
                train__lr=1e-3,
                train__warmup_steps=10,
                train__steps=100,
                train__lr_schedule=kind,
                train__warmup_init=0.1,
            ).train
        )
        assert float(warm(0)) == pytest.approx(1e-4) and float(warm(5)) == pytest.approx(5.5e-4)
        assert float(warm(10)) == pytest.approx(1e-3)
