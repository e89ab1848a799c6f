"""eval/resample.py: subset win rates of FVD / KVD comparisons, the saved-feature round trip, and the
CLI on the smoke run's saved features."""

import json
import os

import numpy as np
import pytest

from maskflow_jax.eval import fvd, resample


def _sets(seed=0, n=12, d=6):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d))
    near = real + 0.1 * rng.normal(size=(n, d))  # video i of `near` follows real video i closely
    far = rng.normal(size=(n, d)) * 3 + 2
    return real, near, far


def test_subset_win_rate_orders_clear_cases_and_checks_arguments():
    real, near, far = _sets()
    for metric in (fvd.fvd, fvd.kernel_distance):
        assert resample.subset_win_rate(real, near, far, size=6, count=20, metric=metric) == 1.0
        assert resample.subset_win_rate(real, far, near, size=6, count=20, metric=metric) == 0.0
    # A tie broken by noise lands strictly between 0 and 1, and a seed reproduces it.
    rng = np.random.default_rng(1)
    x, y = real + rng.normal(size=real.shape), real + rng.normal(size=real.shape)
    rate = resample.subset_win_rate(real, x, y, size=5, count=50, seed=3)
    assert 0 < rate < 1 and rate == resample.subset_win_rate(real, x, y, size=5, count=50, seed=3)
    with pytest.raises(ValueError, match="same N paired videos"):
        resample.subset_win_rate(real, near[:5], far, size=4)
    with pytest.raises(ValueError, match="2 <= size <= N = 12"):
        resample.subset_win_rate(real, near, far, size=13)


def test_summarize_rows_and_feature_file_round_trip(tmp_path):
    real, near, far = _sets()
    feats = {}
    for h in (16, 32):
        feats.update({(resample.REFERENCE, h): real, (resample.MODEL, h): near, ("frozen", h): far})
    path = resample.save_features(str(tmp_path / resample.FEATURES_FILE), feats)
    loaded = resample.load_features(path)
    assert set(loaded) == set(feats)
    np.testing.assert_allclose(loaded[("frozen", 32)], far, rtol=1e-6)  # stored as float32
    rows = resample.summarize(loaded, size=6, count=10)
    assert [(r["horizon"], r["method"]) for r in rows] == [
        (16, "MaskFlow"),
        (16, "frozen"),
        (32, "MaskFlow"),
        (32, "frozen"),
    ]
    frozen = rows[1]
    assert frozen["MaskFlow below, FVD %"] == frozen["MaskFlow below, KVD %"] == 100.0
    assert "MaskFlow below, FVD %" not in rows[0]
    assert frozen["FVD"] == pytest.approx(fvd.fvd(real, far.astype(np.float32).astype(np.float64)))
    assert frozen["trace_cov"] > rows[0]["trace_cov"]
    with pytest.raises(FileNotFoundError, match="run the pipeline's eval stage first"):
        resample.load_features(str(tmp_path / "missing.npz"))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(open(path, "rb").read()[:100])  # a truncated file
    with pytest.raises(ValueError, match="not a readable feature file.*stages/eval.json"):
        resample.load_features(str(corrupt))
    np.savez(tmp_path / "bad.npz", **{"MaskFlow": near})  # no '|<horizon>'
    with pytest.raises(ValueError, match="'MaskFlow' of shape"):
        resample.load_features(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "noref.npz", **{"MaskFlow|16": near})
    with pytest.raises(ValueError, match="no 'reference'"):
        resample.load_features(str(tmp_path / "noref.npz"))


def test_cli_on_the_smoke_runs_saved_features(smoke_run, capsys):
    cfg, workdir, results = smoke_run
    feats = resample.load_features(os.path.join(workdir, "samples", resample.FEATURES_FILE))
    methods = {r["method"] for r in results["eval"]["rows"]}
    assert set(feats) == {(m, 16) for m in methods | {resample.REFERENCE}}
    assert all(x.shape == (cfg.eval.num_videos, 400) for x in feats.values())  # I3D logits, one row per video
    rows = resample.main([workdir, "--size", "3", "--count", "4"])
    by_method = {r["method"]: r for r in rows}
    for r in results["eval"]["rows"]:  # the full-set figures are the report's (features stored as float32)
        assert by_method[r["method"]]["FVD"] == pytest.approx(r["fvd"], rel=1e-3)
    assert "| 16 | frozen last context frame |" in capsys.readouterr().out
    saved = json.load(open(os.path.join(workdir, "samples", "eval_resample.json")))
    assert saved["size"] == 3 and len(saved["rows"]) == len(methods)
