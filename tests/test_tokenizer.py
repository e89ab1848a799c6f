"""VQ tokenizer: architecture (vq-f8 sizes), quantizer invariants, video API, training, checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import KillAt, tiny_config
from flax import traverse_util

from configs import dmlab
from maskflow_jax.data import loader, maze
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.tokenizer import train as tok_train
from maskflow_jax.tokenizer.api import Tokenizer, to_uint8
from maskflow_jax.tokenizer.model import make_vq_model
from maskflow_jax.tokenizer.quantizer import VectorQuantizer, code_usage, restart_dead_codes


def small_tok_cfg(res=16):
    cfg = tiny_config()
    cfg.data.resize_to = res
    t = cfg.tokenizer
    t.ch, t.ch_mult, t.num_res_blocks, t.z_channels, t.embed_dim, t.n_embed = 32, (1, 2), 1, 8, 8, 64
    t.train.lr, t.train.batch_size, t.train.log_every = 2e-3, 16, 1000
    return cfg


def test_vqf8_architecture_matches_the_checkpoint_sizes():
    model = make_vq_model(dmlab.get_config().tokenizer)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3))))["params"]
    count = lambda t: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(t))  # noqa: E731
    assert count(params["encoder"]) == 27_397_764 and count(params["decoder"]) == 40_253_955
    assert count(params) == 67_717_295  # vq-f8's parameter count (docs/vqf8.md)
    assert params["quantize"]["embedding"].shape == (16384, 4)
    assert "down_3_attn_1" in params["encoder"] and "up_3_attn_2" in params["decoder"]
    assert "down_3_downsample" not in params["encoder"] and "up_0_upsample" not in params["decoder"]


def test_vqf8_parameters_do_not_depend_on_the_input_size():
    """Laid out for 256x256 by tokenizer.resolution: 64x64 frames need the very same parameter tree
    (attention at the 32x32 level only) and give 8x8 tokens."""
    model = make_vq_model(dmlab.get_config().tokenizer)
    trees, ids = {}, {}
    for size in (64, 256):
        x = jnp.zeros((1, size, size, 3))
        trees[size] = jax.eval_shape(lambda x=x: model.init(jax.random.key(0), x))["params"]
        ids[size] = jax.eval_shape(lambda p, x=x: model.apply({"params": p}, x, method=model.encode), trees[size])
    flat = {k: traverse_util.flatten_dict(v) for k, v in trees.items()}
    assert {k: v.shape for k, v in flat[64].items()} == {k: v.shape for k, v in flat[256].items()}
    attn = sorted({k[1] for k in flat[64] if "attn" in k[1]})
    assert attn == ["down_3_attn_0", "down_3_attn_1", "mid_attn_1", "up_3_attn_0", "up_3_attn_1", "up_3_attn_2"]
    assert ids[64].shape == (1, 8, 8) and ids[256].shape == (1, 32, 32)


def test_sizes_the_tokenizer_cannot_take_name_resize_to_and_the_valid_sizes():
    cfg = dmlab.get_config()
    model = make_vq_model(cfg.tokenizer)
    with pytest.raises(
        ValueError,
        match=r"config.data.resize_to=60 .*multiples of the downsampling factor 8 "
        r"\(8, 16, 24, ...\); the nearest to 60 are 56 and 64",
    ):
        Tokenizer(cfg.tokenizer, {}, 60)
    with pytest.raises(ValueError, match=r"config.data.resize_to=4 .*the nearest to 4 is 8"):
        Tokenizer(cfg.tokenizer, {}, 4)
    with pytest.raises(ValueError, match=r"60x64 pixels .*config.data.resize_to .*56 and 64"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 60, 64, 3))))
    for size in (8, 64, 72, 256):  # any multiple of 8 builds
        assert Tokenizer(cfg.tokenizer, {}, size).grid == (size // 8, size // 8)
    bad = cfg.tokenizer.copy_and_resolve_references()
    bad.resolution = 100
    with pytest.raises(ValueError, match="config.tokenizer.resolution=100"):
        make_vq_model(bad)
    bad.resolution, bad.attn_resolutions = 256, (24,)
    with pytest.raises(ValueError, match=r"config.tokenizer.attn_resolutions \[24\] match no level"):
        make_vq_model(bad)
    bad.resolution = None
    with pytest.raises(ValueError, match="needs config.tokenizer.resolution"):
        make_vq_model(bad)


def test_uint8_rules_round_and_trunc_exact_values():
    """round((x + 1) * 127.5) (maze) against the release's trunc((x + 1) * 0.5 * 255), after clamping."""
    v = np.array([100.3, 100.7, 200.51, 0.6, 254.4, 254.6], np.float64)  # (x + 1) * 127.5, off the boundaries
    x = np.concatenate([np.array([-2.0, -1.0, -0.999, 0.0, 0.5, 1.0 - 2.0**-20, 1.0, 1.5]), v / 127.5 - 1.0])
    x = jnp.asarray(x, jnp.float32)
    assert to_uint8(x, "round").tolist() == [0, 0, 0, 128, 191, 255, 255, 255, 100, 101, 201, 1, 254, 255]
    assert to_uint8(x, "trunc").tolist() == [0, 0, 0, 127, 191, 254, 255, 255, 100, 100, 200, 0, 254, 254]
    assert to_uint8(x).tolist() == to_uint8(x, "round").tolist()  # the default rule
    assert to_uint8(x, "round").dtype == jnp.uint8 and to_uint8(x, "trunc").dtype == jnp.uint8
    with pytest.raises(ValueError, match="config.tokenizer.decode_uint8='floor'"):
        to_uint8(x, "floor")


def test_tokenizer_decodes_with_its_configured_uint8_rule():
    cfg = small_tok_cfg()
    model = make_vq_model(cfg.tokenizer)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    ids = np.random.default_rng(3).integers(0, 64, (2, 8, 8)).astype(np.int32)
    images = model.apply({"params": params}, jnp.asarray(ids), method=model.decode)
    out = {}
    for rule in ("round", "trunc"):
        cfg.tokenizer.decode_uint8 = rule
        tok = Tokenizer(cfg.tokenizer, params, 16, chunk=2)
        assert tok.decode_uint8 == rule
        out[rule] = tok.decode(ids)
        np.testing.assert_array_equal(out[rule], np.asarray(to_uint8(images, rule)))
    diff = out["round"].astype(int) - out["trunc"]
    assert diff.min() >= 0 and diff.max() <= 1 and 0.2 < diff.mean() < 0.8  # about half the pixels move by one
    assert Tokenizer(cfg.tokenizer, params, 16, decode_uint8="round").decode_uint8 == "round"  # argument wins
    with pytest.raises(ValueError, match="config.tokenizer.decode_uint8"):
        Tokenizer(cfg.tokenizer, params, 16, decode_uint8="nearest")


def test_quantizer_invariants():
    q = VectorQuantizer(n_embed=5, embed_dim=2, beta=0.25)
    z = jax.random.normal(jax.random.key(0), (3, 4, 2))
    variables = q.init(jax.random.key(1), z)
    z_st, ids, losses = q.apply(variables, z)
    e = np.asarray(variables["params"]["embedding"])
    d = ((np.asarray(z)[..., None, :] - e) ** 2).sum(-1)
    np.testing.assert_array_equal(ids, d.argmin(-1))
    assert ids.min() >= 0 and ids.max() < 5
    np.testing.assert_allclose(z_st, e[np.asarray(ids)], atol=1e-6)
    expected = np.mean((e[np.asarray(ids)] - np.asarray(z)) ** 2)
    assert float(losses["commit_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(losses["codebook_loss"]) == pytest.approx(0.25 * expected, rel=1e-5)
    # Straight-through: the gradient of the output reaches the input unchanged.
    g = jax.grad(lambda x: jnp.sum(q.apply(variables, x)[0] * 3.0))(z)
    np.testing.assert_allclose(g, 3.0 * np.ones_like(z))


def test_dead_code_restart_and_usage():
    emb = jnp.zeros((4, 2))
    usage = jnp.array([5.0, 0.0, 3.0, 0.0])
    latents = jnp.arange(12.0).reshape(6, 2) + 1
    new, n = restart_dead_codes(emb, usage, latents, jax.random.key(0))
    assert int(n) == 2
    np.testing.assert_array_equal(new[0], emb[0])
    assert float(jnp.abs(new[1]).min()) > 0.5 and float(jnp.abs(new[3]).min()) > 0.5
    counts, used, perplexity = code_usage(jnp.array([0, 0, 1, 1]), 4)
    assert counts.tolist() == [2, 2, 0, 0] and float(used) == 0.5 and float(perplexity) == pytest.approx(2.0)


def test_video_api_shapes_ranges_and_errors():
    cfg = small_tok_cfg()
    model = make_vq_model(cfg.tokenizer)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    tok = Tokenizer(cfg.tokenizer, params, 16, chunk=4)
    video = np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16, 3)).astype(np.uint8)
    ids = tok.encode(video)
    assert ids.shape == (2, 3, 8, 8) and ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < 64
    frames = tok.decode(ids)
    assert frames.shape == video.shape and frames.dtype == np.uint8
    with_mask = ids.copy()
    with_mask[0, 0, 0, 0] = 64  # MASK decodes as code 0
    zero = ids.copy()
    zero[0, 0, 0, 0] = 0
    np.testing.assert_array_equal(tok.decode(with_mask), tok.decode(zero))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 64\]"):
        tok.decode(ids + 65)
    with pytest.raises(ValueError, match="config.data.resize_to"):
        tok.encode(np.zeros((1, 1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(video.astype(np.float32))


def test_training_reaches_psnr_and_beats_untrained():
    cfg = small_tok_cfg()
    video, _ = maze.generate_trajectories(5, 4, 24)
    frames = loader.resize_video(video.reshape(-1, 64, 64, 3), 16)
    held_out = loader.resize_video(maze.generate_trajectories(6, 1, 16)[0][0], 16)
    _, init, step = tok_train.make_tokenizer_trainer(cfg.tokenizer, 16)
    step = jax.jit(step)
    state = jax.jit(init)(jax.random.key(0))

    def heldout_psnr(params):
        tok = Tokenizer(cfg.tokenizer, params, 16)
        recon = tok.decode(tok.encode(held_out))
        return 10 * np.log10(1.0 / np.mean(((recon.astype(float) - held_out) / 255.0) ** 2))

    untrained = heldout_psnr(state.ema_params)
    rng = np.random.default_rng(0)
    for _ in range(120):
        state, metrics = step(state, jnp.asarray(frames[rng.integers(0, len(frames), 16)]))
    trained = heldout_psnr(state.ema_params)
    assert untrained < 14.0, untrained
    assert trained > 18.0 and trained > untrained + 5, (untrained, trained)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["code_usage"]) > 0.1


def test_discriminator_runs_only_when_the_gan_is_on():
    """disc_start = -1 never runs the PatchGAN (its parameters stay put, adversarial terms are 0);
    disc_start = 1 leaves step 0 untouched and trains the discriminator from step 1."""
    frames = jnp.asarray(loader.resize_video(maze.generate_trajectories(5, 1, 4)[0][0], 16))
    moved = {}
    for start in (-1, 1):
        cfg = small_tok_cfg()
        cfg.tokenizer.train.disc_start = start
        _, init, step = tok_train.make_tokenizer_trainer(cfg.tokenizer, 16)
        step = jax.jit(step)
        s0 = init(jax.random.key(0))
        s1, m1 = step(s0, frames)
        s2, m2 = step(s1, frames)

        def delta(a, b):
            return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

        moved[start] = (delta(s0.disc_params, s1.disc_params), delta(s1.disc_params, s2.disc_params))
        if start < 0:
            assert float(m1["disc_loss"]) == 0.0 and float(m2["gen_adv"]) == 0.0
        else:
            assert float(m2["disc_loss"]) > 0.0
    assert moved[-1] == (0.0, 0.0), moved
    assert moved[1][0] == 0.0 and moved[1][1] > 0.0, moved


@pytest.mark.slow
def test_train_tokenizer_mode_end_to_end(tmp_path):
    cfg = small_tok_cfg(32)
    cfg.tokenizer.train.steps, cfg.tokenizer.train.ckpt_every, cfg.tokenizer.train.image_every = 20, 10, 10
    cfg.data.maze.num_train, cfg.data.maze.num_test, cfg.data.maze.length = 8, 2, 8
    loader.prepare_data(cfg, str(tmp_path))
    cfg.mesh.shape = (2, 1, 1)
    summary = tok_train.train_tokenizer(cfg, str(tmp_path), mesh=make_mesh(cfg.mesh, devices=jax.devices()[:2]))
    assert summary["heldout_psnr"] > 5 and 0 < summary["code_usage"] <= 1
    tok = tok_train.load_tokenizer(cfg, str(tmp_path))
    assert tok.encode(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 16, 16)
    assert (tmp_path / "tokenizer" / "recon_000010.png").exists()


def test_tokenizer_training_stops_on_sigterm_and_resumes_exactly(tmp_path, monkeypatch):
    """The tokenizer runs the denoiser's loop (train/loop.fit): SIGTERM checkpoints and stops, a rerun
    resumes the state and the data position, and ends equal to an uninterrupted run."""
    cfg = small_tok_cfg(16)
    cfg.tokenizer.train.steps, cfg.tokenizer.train.ckpt_every, cfg.tokenizer.train.batch_size = 5, 100, 4
    cfg.tokenizer.train.image_every = 1000
    cfg.data.maze.num_train, cfg.data.maze.num_test, cfg.data.maze.length = 4, 1, 4
    mesh = make_mesh(cfg.mesh, devices=jax.devices()[:1])
    params = {}
    for name, kill_at in [("full", None), ("killed", 3)]:
        workdir = str(tmp_path / name)
        loader.prepare_data(cfg, workdir)
        if kill_at is not None:
            make = tok_train._frame_iterator
            monkeypatch.setattr(tok_train, "_frame_iterator", lambda *a, **k: KillAt(make(*a, **k), kill_at))
            tok_train.train_tokenizer(cfg, workdir, mesh=mesh)
            manager = tok_train.checkpoint.make_manager(str(tmp_path / name / "tokenizer" / "checkpoints"))
            assert manager.latest_step() == 3, "SIGTERM should stop right after the step in flight"
            manager.close()
            monkeypatch.setattr(tok_train, "_frame_iterator", make)
        tok_train.train_tokenizer(cfg, workdir, mesh=mesh)
        params[name] = jax.tree.leaves(tok_train.load_tokenizer(cfg, workdir).params)
        log = (tmp_path / name / "tokenizer" / "tokenizer_metrics.jsonl").read_text().splitlines()
        assert log and all("frames_per_sec" in line for line in log)
    for a, b in zip(params["full"], params["killed"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
