"""Sharding presets: every large parameter is sharded under FSDP, and dp / fsdp / fsdp_tp / 1 device
give the same loss and updates; checkpoints move between presets."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import structured_tokens, tiny_config, token_iterator

from configs import base
from maskflow_jax import checkpoint
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train import loop
from maskflow_jax.train.setup import build_trainer


def _cfg(preset, shape=None, **kw):
    cfg = tiny_config(**kw)
    base.set_mesh_preset(cfg, preset)
    if shape is not None:
        cfg.mesh.shape = shape
    return cfg


def _one_device_mesh(cfg):
    return make_mesh(cfg.mesh, devices=jax.devices()[:1])


@pytest.mark.parametrize("preset,scan", [("fsdp", False), ("fsdp_tp", False), ("fsdp_tp", True)])
def test_every_large_parameter_is_sharded(preset, scan):
    cfg = _cfg(preset, model__scan_blocks=scan)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh))
    flat = jax.tree_util.tree_flatten_with_path(trainer.state_shardings.params)[0]
    shapes = jax.tree.leaves(trainer.abstract_state.params)
    replicated = [
        jax.tree_util.keystr(path) for (path, sh), a in zip(flat, shapes) if a.size >= 1024 and sh.is_fully_replicated
    ]
    assert not replicated, f"large parameters left replicated under {preset}: {replicated}"
    # Adam moments follow the parameters.
    mu = [s for s in jax.tree.leaves(trainer.state_shardings.opt_state) if not s.is_fully_replicated]
    assert mu


def test_dp_keeps_parameters_replicated():
    cfg = _cfg("dp")
    trainer = build_trainer(cfg, make_mesh(cfg.mesh))
    assert all(s.is_fully_replicated for s in jax.tree.leaves(trainer.state_shardings.params))


def _two_steps(cfg, mesh, data):
    trainer = build_trainer(cfg, mesh)
    losses = []
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
        state = trainer.init(jax.random.key(0))
        for i in range(2):
            batch = {"tokens": jax.device_put(jnp.asarray(data[8 * i : 8 * i + 8]), trainer.batch_sharding)}
            state, metrics = trainer.step(state, batch)
            losses.append(float(metrics["loss"]))
    return losses, [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_presets_match_single_device():
    data = structured_tokens(16, 4, 4, 16)
    ref_cfg = _cfg("dp")
    ref_losses, ref_params = _two_steps(ref_cfg, _one_device_mesh(ref_cfg), data)
    for preset, shape in [("dp", (8, 1, 1)), ("fsdp", (1, 8, 1)), ("fsdp_tp", (2, 2, 2))]:
        cfg = _cfg(preset, shape)
        losses, params = _two_steps(cfg, make_mesh(cfg.mesh), data)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, err_msg=preset)
        for a, b in zip(params, ref_params):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=preset)


def test_scanned_blocks_under_fsdp_tp_match_single_device():
    data = structured_tokens(16, 4, 4, 16)
    ref_cfg = _cfg("dp", model__scan_blocks=True, model__depth=4)
    ref_losses, ref_params = _two_steps(ref_cfg, _one_device_mesh(ref_cfg), data)
    cfg = _cfg("fsdp_tp", (2, 2, 2), model__scan_blocks=True, model__depth=4)
    losses, params = _two_steps(cfg, make_mesh(cfg.mesh), data)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(params, ref_params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_checkpoint_moves_between_presets(tmp_path):
    data = structured_tokens(16, 4, 4, 16)
    cfg = _cfg("fsdp", train__steps=3, train__ckpt_every=3)
    saved = loop.train_denoiser(cfg, str(tmp_path), batches=token_iterator(data, 8), mesh=make_mesh(cfg.mesh))
    other = _cfg("fsdp_tp", (2, 2, 2))
    trainer = build_trainer(other, make_mesh(other.mesh))
    manager = checkpoint.make_manager(os.path.join(tmp_path, "checkpoints"))
    step, state, _ = checkpoint.restore_latest(
        manager, checkpoint.abstract_target(trainer.abstract_state, trainer.state_shardings)
    )
    manager.close()
    assert step == 3
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(saved.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    kernel = state.params["head"]["kernel"]
    assert kernel.sharding.spec == trainer.state_shardings.params["head"]["kernel"].spec
