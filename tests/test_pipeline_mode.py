"""The one-command pipeline at smoke size: every stage runs, REPORT.md is written, and a restarted run
skips finished stages and reproduces the same FVD table. Then --mode=eval on the same run."""
import json
import os

import numpy as np
import pytest

from configs import maze
from maskflow_jax import evaluate, pipeline, stages


def test_smoke_pipeline_end_to_end_and_restart(smoke_run):
    cfg, workdir, results = smoke_run
    report = open(os.path.join(workdir, "REPORT.md")).read()
    for stage in ("data", "tokenizer", "tokens", "denoiser", "samples", "eval"):
        assert stages.load_summary(workdir, stage) is not None, stage
        assert f"| {stage} |" in report
    rows = results["eval"]["rows"]
    assert {r["method"] for r in rows} == {"MaskFlow", "frozen last context frame", "untrained denoiser",
                                           "tokenizer reconstruction (ceiling)"}
    assert all(r["fvd"] > 0 for r in rows) and os.path.exists(os.path.join(workdir, "samples", "horizon_16.gif"))
    assert all(np.isfinite(r["kvd"]) for r in rows) and "| horizon | method | FVD | KVD | motion | contrast |" in report
    dyn = {r["method"]: r for r in rows}
    assert dyn["frozen last context frame"]["motion"] == 0 and dyn["frozen last context frame"]["contrast"] > 0
    assert all(dyn[m]["motion"] > 0 for m in ("MaskFlow", "untrained denoiser", "tokenizer reconstruction (ceiling)"))
    real = results["eval"]["real_dynamics"]
    assert [d["horizon"] for d in real] == [16] and real[0]["motion"] > 0
    assert f"| 16 | real held-out videos (the reference) |  |  | {real[0]['motion']:.1f} |" in report
    checks = results["eval"]["prediction"]  # m = context (2) and F - 1 (7) on 8-frame held-out windows
    # both time inputs (the sampler's first) at each m, and the future-visible control where frame m + 1 exists
    assert [(c["context"], c["time_input"], c["visible_future"]) for c in checks] == [
        (2, "clean", False), (2, "unmasked_fraction", False), (2, "clean", True),
        (7, "clean", False), (7, "unmasked_fraction", False)]
    assert all(c["num_clips"] == 8 for c in checks)
    assert all(np.isfinite(c["nll_changed"]) and c["nll_changed"] > 0 for c in checks)
    assert all(0 <= c["accuracy"] <= 1 and 0 < c["changed_fraction"] < 1 for c in checks)
    assert "## Next-frame token prediction (teacher-forced, 8 held-out clips)" in report

    # Restart after losing the last stage: earlier stages are skipped, the FVD table is reproduced.
    before = {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in ("tokenizer", "denoiser")}
    os.remove(stages.marker_path(workdir, "eval"))
    os.remove(os.path.join(workdir, "REPORT.md"))
    again = pipeline.run_pipeline(cfg, workdir)
    assert {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in before} == before
    assert json.dumps([(round(r["fvd"], 2), round(r["kvd"], 2)) for r in again["eval"]["rows"]]) == \
        json.dumps([(round(r["fvd"], 2), round(r["kvd"], 2)) for r in rows])
    assert again["eval"]["prediction"] == checks
    assert os.path.exists(os.path.join(workdir, "REPORT.md"))


def test_eval_mode_writes_json_and_plot(smoke_run):
    cfg, workdir, _ = smoke_run
    res = evaluate.eval_mode(cfg, workdir)  # the real I3D, the maze protocol
    saved = json.load(open(os.path.join(workdir, "eval", "maze.json")))
    assert os.path.getsize(os.path.join(workdir, "eval", "maze_fvd.png")) > 1000
    h = saved["horizon"]
    assert h["windows"] == [[2, 18], [18, 34]] and h["real_window"] == "same"  # m = 2, F = 16, L = 34
    assert all(np.isfinite(v) and v > 0 for v in h["fvd"]) and len(h["kvd"]) == 2
    assert all(np.isfinite(v) for v in h["kvd"]) and np.isfinite(saved["whole_clip"]["kvd"])
    assert all(0 < v <= evaluate.PSNR_CAP for v in h["psnr"]) and all(-1 <= v <= 1 for v in h["ssim"])
    for key in ("motion", "contrast", "real_motion", "real_contrast"):
        assert len(h[key]) == 2 and all(0 < v < 255 for v in h[key]), key
    clip = saved["whole_clip"]
    assert clip["protocol"] == "maze" and clip["num_real"] == clip["num_fake"] == 4 and clip["fvd"] > 0
    assert clip["feature"].startswith("i3d") and clip["use_ema"] is True and clip["frames"] == 16
    assert saved["nfe"] == res["nfe"] > 0 and saved["step"] == cfg.train.steps


def _cheap_features(videos):
    """(n, T * 3) per-frame channel means: a fast stand-in for the I3D."""
    v = np.asarray(videos, np.float32)
    return v.mean(axis=(2, 3)).reshape(len(v), -1)


class _Oracle:
    """A run whose generations are the real held-out videos their contexts came from."""

    def __init__(self, cfg, workdir, run, shift=0):
        self.tokenizer, self.step, self.shift = run.tokenizer, 0, shift
        self.tokens, self.pixels, actions = evaluate.heldout(cfg, workdir, 4, 34)
        assert actions is None  # the smoke run is not action-conditioned

    def generate(self, rng, context_tokens, num_frames, context, actions=None):
        rows = [int(np.flatnonzero((self.tokens[:, :context] == c).all(axis=(1, 2, 3)))[0]) for c in context_tokens]
        video = self.pixels[rows, :num_frames]
        return np.roll(video, self.shift, axis=1), {"nfe": 1}


def test_eval_windows_align_real_and_generated_spans(smoke_run):
    cfg, workdir, _ = smoke_run
    run = evaluate.inference.load_run(workdir, cfg=cfg)
    perfect = evaluate.evaluate_run(cfg, workdir, feature_fn=_cheap_features, run=_Oracle(cfg, workdir, run))
    assert perfect["horizon"]["fvd"] == pytest.approx([0, 0], abs=1e-6)
    assert perfect["horizon"]["psnr"] == pytest.approx([evaluate.PSNR_CAP] * 2)
    shifted = evaluate.evaluate_run(cfg, workdir, feature_fn=_cheap_features, run=_Oracle(cfg, workdir, run, 5))
    assert min(shifted["horizon"]["fvd"]) > 1 and max(shifted["horizon"]["psnr"]) < evaluate.PSNR_CAP

    # Held-out videos shorter than the horizon: every window is compared with the real [m, m + F).
    cfg = maze.get_config("smoke")
    cfg.sampling.horizon = 50
    fallback = evaluate.evaluate_run(cfg, workdir, feature_fn=_cheap_features, run=run)
    assert fallback["horizon"]["real_window"] == "first" and len(fallback["horizon"]["fvd"]) == 3
    assert fallback["horizon"]["psnr"][1:] == [None, None] and fallback["length"] == 50


def test_eval_without_raw_features_skips_the_feature_file(smoke_run, tmp_path, monkeypatch):
    """Past fvd.MAX_KEPT eval videos FeatureStats drops the raw I3D features: the eval stage still gives
    every FVD, leaves KVD empty and skips samples/eval_features.npz (with a warning) instead of failing."""
    import shutil  # noqa: PLC0415

    from maskflow_jax.eval import fvd, i3d, resample  # noqa: PLC0415

    cfg, workdir, _ = smoke_run
    work = str(tmp_path / "run")
    shutil.copytree(workdir, work)  # this worker's run keeps its feature file for the other tests
    path = os.path.join(work, "samples", resample.FEATURES_FILE)
    os.remove(path)
    warnings = []
    monkeypatch.setattr(pipeline.logging, "warning", lambda msg, *args: warnings.append(msg % args))
    monkeypatch.setattr(fvd, "MAX_KEPT", cfg.eval.num_videos - 1)  # the smoke eval has 4 videos
    # Per-frame channel means instead of the I3D (the branch does not depend on the feature; saves a minute).
    monkeypatch.setattr(i3d, "make_feature_fn", lambda **_: lambda v: np.asarray(v, np.float32).mean((2, 3)).reshape(
        len(v), -1))
    rows, _, _ = pipeline.evaluate_horizons(cfg, work)
    assert not os.path.exists(path)
    assert len(warnings) == 1 and "raw I3D features not kept" in warnings[0]
    assert all(r["kvd"] is None for r in rows) and all(np.isfinite(r["fvd"]) and r["fvd"] > 0 for r in rows)
    assert pipeline.cell(rows[0], "kvd", ".1f") == "" and pipeline.cell({"kvd": 2.345}, "kvd", ".1f") == "2.3"
