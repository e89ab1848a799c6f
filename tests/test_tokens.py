"""Token cache: resumable tokenization of a prepared split, and training on token clips."""

import jax
import numpy as np
import pytest
from factories import tiny_config

from maskflow_jax.config_validation import ConfigError
from maskflow_jax.data import loader, records, tokens
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train import loop


def _fake_encode(frames):
    """(N, 8, 8, 3) uint8 -> (N, 4, 4) ids in [0, 16): a deterministic stand-in for the VQ encoder."""
    n = frames.shape[0]
    pooled = frames.reshape(n, 4, 2, 4, 2, 3).mean(axis=(2, 4, 5))
    return (pooled // 16).astype(np.int32)


@pytest.fixture()
def prepared(tmp_path):
    cfg = tiny_config(data__batch_size=4)
    cfg.data.maze.num_train, cfg.data.maze.num_test, cfg.data.maze.length = 20, 4, 12
    workdir = str(tmp_path)
    loader.prepare_data(cfg, workdir)
    return cfg, workdir


def test_tokenize_resumes_without_duplicates(prepared, monkeypatch):
    cfg, workdir = prepared
    monkeypatch.setattr(tokens, "PART_VIDEOS", 3)
    calls = {"n": 0}

    def flaky(frames):
        calls["n"] += 1
        if calls["n"] == 5:  # killed in the middle of the second part
            raise KeyboardInterrupt
        return _fake_encode(frames)

    with pytest.raises(KeyboardInterrupt):
        tokens.tokenize_split(cfg, workdir, "train", flaky, progress=False)
    assert not records.is_prepared(tokens.token_dir(cfg, workdir), "train")
    seen_before = calls["n"]
    meta = tokens.tokenize_split(cfg, workdir, "train", flaky, progress=False)
    assert meta["count"] == 20
    # The first (finished) part was not recomputed: 20 videos + the 1 interrupted call, not 24.
    assert calls["n"] - seen_before == 20 - 3 + 0 and seen_before == 5
    src = records.RecordSource(tokens.token_dir(cfg, workdir), "train")
    pixels = records.RecordSource(loader.resolve_prepared_dir(cfg.data, workdir), "train")
    for i in (0, 7, 19):
        expected = _fake_encode(loader.resize_video(np.asarray(pixels[i]["video"]), cfg.data.resize_to))
        np.testing.assert_array_equal(src[i]["video"], expected)


def test_training_reads_token_clips(prepared):
    cfg, workdir = prepared
    tokens.tokenize_split(cfg, workdir, "train", _fake_encode, progress=False)
    it = tokens.make_token_iterator(cfg, workdir)
    batch = next(it)
    assert batch["tokens"].shape == (4, cfg.data.frames, 4, 4) and batch["tokens"].dtype == np.int32
    assert batch["tokens"].max() < cfg.tokenizer.n_embed
    cfg.train.steps = 2
    with pytest.raises(ConfigError, match="config.data.batch_size"):
        loop.train_denoiser(cfg, workdir, batches=it)  # 4 clips cannot split over 8 devices
    cfg.mesh.shape = (2, 1, 1)
    state = loop.train_denoiser(cfg, workdir, batches=it, mesh=make_mesh(cfg.mesh, devices=jax.devices()[:2]))
    assert int(state.step) == 2
