"""End to end on the procedural maze: data -> tokenizer -> token cache -> denoiser -> resume -> samples."""
import json
import os

import jax
import numpy as np
from factories import tiny_config

from maskflow_jax import inference
from maskflow_jax.data import pipeline, tokens
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.tokenizer import train as tok_train
from maskflow_jax.train import loop


def smoke_config():
    cfg = tiny_config(frames=4, batch_size=2)
    cfg.data.resize_to = 16
    t = cfg.tokenizer
    t.ch, t.ch_mult, t.num_res_blocks, t.z_channels, t.embed_dim, t.n_embed = 32, (1, 2), 1, 8, 8, 32
    t.train.steps, t.train.batch_size, t.train.ckpt_every, t.train.image_every, t.train.log_every = 6, 4, 6, 100, 3
    cfg.data.maze.num_train, cfg.data.maze.num_test, cfg.data.maze.length = 6, 2, 12
    cfg.train.steps, cfg.train.ckpt_every, cfg.train.log_every = 4, 2, 2
    cfg.sampling.context, cfg.sampling.stride, cfg.sampling.horizon, cfg.sampling.steps = 1, 3, 10, 3
    cfg.sampling.batch_size = 2
    cfg.mesh.shape = (2, 1, 1)
    return cfg


def test_maze_end_to_end(tmp_path):
    cfg, workdir = smoke_config(), str(tmp_path)
    mesh = make_mesh(cfg.mesh, devices=jax.devices()[:2])
    pipeline.prepare_data(cfg, workdir)
    summary = tok_train.train_tokenizer(cfg, workdir, mesh=mesh)
    assert summary["heldout_psnr"] > 0
    tok = tok_train.load_tokenizer(cfg, workdir)
    for split in (cfg.data.train_split, cfg.data.eval_split):
        tokens.tokenize_split(cfg, workdir, split, tok.encode, progress=False)
    cfg.train.steps = 2
    loop.train_and_evaluate(cfg, workdir, batches=tokens.make_token_iterator(cfg, workdir), mesh=mesh)
    cfg.train.steps = 4  # resumes from step 2
    state = loop.train_and_evaluate(cfg, workdir, batches=tokens.make_token_iterator(cfg, workdir), mesh=mesh)
    assert int(state.step) == 4

    run = inference.load_run(workdir)
    assert run.step == 4 and run.cfg.data.frames == cfg.data.frames
    ctx = np.zeros((2, 1, 16, 16, 3), np.uint8)
    streamed = []
    video, info = run.generate(jax.random.key(0), context_video=ctx, num_frames=9,
                               callback=lambda i, new: streamed.append(new.shape[1]))
    assert video.shape == (2, 9, 16, 16, 3) and video.dtype == np.uint8
    assert info["chunks"] == 3 and sum(streamed) == 8 and info["nfe"] == 9
    assert not (info["tokens"] == cfg.tokenizer.n_embed).any()

    summary = inference.sample_mode(cfg, workdir)
    assert summary["frames"] == cfg.sampling.horizon
    assert os.path.exists(os.path.join(workdir, "samples", "sample_0.gif"))
    assert os.path.exists(os.path.join(workdir, "samples", "grid.png"))
    with open(os.path.join(workdir, "samples", "info.json")) as f:
        assert json.load(f)["nfe"] == summary["nfe"]
