"""A finished maze run (the shared smoke pipeline, sharded over the 8 test devices) as a notebook user
loads it: config from the checkpoint, streamed chunk-wise generation from pixels, the samples stage."""

import json
import os

import jax
import numpy as np

from maskflow_jax import inference, stages


def test_loaded_run_streams_exactly_the_planned_chunks(smoke_run):
    cfg, workdir, _ = smoke_run
    run = inference.load_run(workdir)  # no cfg: the config saved with the checkpoint
    assert run.step == cfg.train.steps
    assert json.dumps(run.cfg.to_dict(), sort_keys=True) == json.dumps(cfg.to_dict(), sort_keys=True)
    size = cfg.data.resize_to
    ctx = np.zeros((2, 1, size, size, 3), np.uint8)
    streamed = []
    # T_w 8, m 1, s 6, L 15: chunks keep 6, 6 and 2 frames (the last one with m' = 6 past frames).
    video, info = run.generate(
        jax.random.key(0),
        context_video=ctx,
        num_frames=15,
        context=1,
        stride=6,
        callback=lambda i, new: streamed.append((i, new.shape[1])),
    )
    assert video.shape == (2, 15, size, size, 3) and video.dtype == np.uint8
    assert streamed == [(0, 6), (1, 6), (2, 2)]
    assert info["chunks"] == 3 and info["nfe"] == 3 * cfg.sampling.steps
    assert not (info["tokens"] == cfg.tokenizer.n_embed).any()
    np.testing.assert_array_equal(info["tokens"][:, :1], run.tokenizer.encode(ctx))


def test_samples_stage_wrote_gifs_grid_and_info(smoke_run):
    cfg, workdir, results = smoke_run
    out = os.path.join(workdir, "samples")
    with open(os.path.join(out, "info.json")) as f:
        info = json.load(f)
    assert info["frames"] == cfg.sampling.horizon and info["videos"] == cfg.sampling.batch_size
    assert info["nfe"] == results["samples"]["nfe"] > 0 and 0 < info["seconds_per_frame"] < 60
    assert all(os.path.getsize(os.path.join(out, f"sample_{i}.gif")) > 0 for i in range(info["videos"]))
    assert os.path.getsize(os.path.join(out, "grid.png")) > 0
    assert stages.load_summary(workdir, "samples")["summary"] == info["summary"]
