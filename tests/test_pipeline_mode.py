"""The one-command pipeline at smoke size: every stage runs, REPORT.md is written, and a restarted run
skips finished stages and reproduces the same FVD table. Then --mode=eval on the same run reproduces the
report's FVD numbers, and the evaluation (eval/horizons.py) aligns windows and protocols as documented."""

import dataclasses
import json
import os
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from configs import maze
from maskflow_jax import report, stages
from maskflow_jax.data import heldout
from maskflow_jax.eval import fvd, horizons, i3d, protocols, resample
from maskflow_jax.modes import evaluate, pipeline

METHODS = {"MaskFlow", "frozen last context frame", "untrained denoiser", "tokenizer reconstruction (ceiling)"}


def test_smoke_pipeline_end_to_end_and_restart(smoke_run):
    cfg, workdir, results = smoke_run
    report_text = open(os.path.join(workdir, "REPORT.md")).read()
    for stage in ("data", "tokenizer", "tokens", "denoiser", "samples", "eval"):
        assert stages.load_summary(workdir, stage) is not None, stage
        assert f"| {stage} |" in report_text
    rows = results["eval"]["rows"]
    assert {r["method"] for r in rows} == METHODS
    assert all(r["window"] == [2, 18] for r in rows)  # horizon 16 = 2 x 8 frames, moved past the 2 context frames
    assert all(r["fvd"] > 0 for r in rows) and os.path.exists(os.path.join(workdir, "samples", "horizon_16.gif"))
    assert all(np.isfinite(r["kvd"]) for r in rows)
    from PIL import Image  # noqa: PLC0415

    strip = np.asarray(Image.open(os.path.join(workdir, "samples", "strip_vs_real.png")))
    one = np.asarray(Image.open(os.path.join(workdir, "samples", "strip.png")))
    size = strip.shape[0] // 2  # two rows of 16 frames: real (every frame of the 18), then generated
    assert strip.shape == (2 * size, 16 * size, 3) and one.shape[1] == strip.shape[1]
    assert "![real and generated](samples/strip_vs_real.png)" in report_text
    np.testing.assert_array_equal(strip[size:], one[:size])  # the generated row is strip.png's first row
    assert not np.array_equal(strip[:size], strip[size:])
    assert "| horizon | method | FVD | KVD | motion | contrast |" in report_text
    dyn = {r["method"]: r for r in rows}
    assert dyn["frozen last context frame"]["motion"] == 0 and dyn["frozen last context frame"]["contrast"] > 0
    assert all(dyn[m]["motion"] > 0 for m in METHODS - {"frozen last context frame"})
    assert dyn["MaskFlow"]["nfe"] == 3 * cfg.sampling.steps  # 2 + 6 + 6 + 4 frames: 3 chunks to frame 18
    real = results["eval"]["real_dynamics"]
    assert [d["horizon"] for d in real] == [16] and real[0]["motion"] > 0
    assert f"| 16 | real held-out videos (the reference) |  |  | {real[0]['motion']:.1f} |" in report_text
    assert results["eval"]["record"]["actions"] is False and results["eval"]["record"]["protocol"] == "maze"
    checks = results["eval"]["prediction"]  # m = context (2) and F - 1 (7) on 8-frame held-out windows
    # both time inputs (the sampler's first) at each m, and the future-visible control where frame m + 1 exists
    assert [(c["context"], c["time_input"], c["visible_future"]) for c in checks] == [
        (2, "clean", False),
        (2, "unmasked_fraction", False),
        (2, "clean", True),
        (7, "clean", False),
        (7, "unmasked_fraction", False),
    ]
    assert all(c["num_clips"] == 8 for c in checks)  # 4 videos x 2 windows of their first 18 frames
    assert all(np.isfinite(c["nll_changed"]) and c["nll_changed"] > 0 for c in checks)
    assert all(0 <= c["accuracy"] <= 1 and 0 < c["changed_fraction"] < 1 for c in checks)
    assert "## Next-frame token prediction (teacher-forced, 8 held-out clips)" in report_text

    # Restart after losing the last stage: earlier stages are skipped, the FVD table is reproduced.
    before = {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in ("tokenizer", "denoiser")}
    os.remove(stages.marker_path(workdir, "eval"))
    os.remove(os.path.join(workdir, "REPORT.md"))
    again = pipeline.run(cfg, workdir)
    assert {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in before} == before
    assert json.dumps([(round(r["fvd"], 2), round(r["kvd"], 2)) for r in again["eval"]["rows"]]) == json.dumps(
        [(round(r["fvd"], 2), round(r["kvd"], 2)) for r in rows]
    )
    assert again["eval"]["prediction"] == checks
    assert os.path.exists(os.path.join(workdir, "REPORT.md"))


def _table(text):
    """{(horizon, method): (FVD, KVD)} of the FVD-per-horizon table in markdown `text`."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].isdigit() and cells[2]:
            out[(int(cells[0]), cells[1])] = (float(cells[2].split()[0]), float(cells[3]) if cells[3] else None)
    return out


def test_eval_mode_reproduces_the_report(smoke_run):
    """--mode=eval on the finished pipeline run gives REPORT.md's FVD / KVD (the same evaluation, the real I3D)."""
    cfg, workdir, results = smoke_run
    res = evaluate.run(cfg, workdir)
    saved = json.load(open(os.path.join(workdir, "eval", "maze.json")))
    assert os.path.getsize(os.path.join(workdir, "eval", "maze_fvd.png")) > 1000
    ours, theirs = (
        _table(open(os.path.join(workdir, "eval", "maze.md")).read()),
        _table(open(os.path.join(workdir, "REPORT.md")).read()),
    )
    assert set(ours) == {(16, m) for m in METHODS} and ours.keys() == theirs.keys()
    for key, (v, k) in theirs.items():  # the report's rounding: one decimal
        assert ours[key][0] == pytest.approx(v, abs=0.051) and ours[key][1] == pytest.approx(k, abs=0.051), key
    for mine, stage in zip(saved["rows"], results["eval"]["rows"]):
        assert (mine["method"], mine["window"]) == (stage["method"], stage["window"])
        assert mine["fvd"] == pytest.approx(stage["fvd"], rel=1e-6, abs=1e-6)
    clip = saved["record"]
    assert clip["protocol"] == "maze" and clip["num_videos"] == 4 and clip["feature"].startswith("i3d")
    assert clip["use_ema"] is True and clip["frames"] == 16 and clip["actions"] is False
    assert saved["rows"][0]["nfe"] == res["rows"][0]["nfe"] > 0 and clip["step"] == cfg.train.steps
    assert all(
        0 < r["psnr"] <= horizons.PSNR_CAP and -1 <= r["ssim"] <= 1
        for r in saved["rows"]
        if r["method"] != "tokenizer reconstruction (ceiling)"
    )


def _cheap_features(videos):
    """(n, T * 3) per-frame channel means: a fast stand-in for the I3D."""
    v = np.asarray(videos, np.float32)
    return v.mean(axis=(2, 3)).reshape(len(v), -1)


class _Oracle:
    """A run whose generations are the held-out token videos their contexts came from (rolled by `shift`
    frames), so its decoded videos are the tokenizer's reconstructions of the real ones."""

    def __init__(self, cfg, workdir, run, shift=0):
        self.tokenizer, self.step, self.shift, self.cfg = run.tokenizer, 0, shift, cfg
        self.tokens, _, actions = heldout.load(cfg, workdir, 4, cfg.data.maze.length)
        assert actions is None  # the smoke run is not action-conditioned

    def generate(self, rng, context_tokens=None, num_frames=None, context=None, actions=None, callback=None, **_):
        rows = [int(np.flatnonzero((self.tokens[:, :context] == c).all(axis=(1, 2, 3)))[0]) for c in context_tokens]
        video = np.roll(self.tokens[rows], self.shift, axis=1)[:, :num_frames]
        if callback is not None:
            callback(0, video[:, context:])
        return video, {"nfe": 1, "chunks": 1, "seconds": 0.0}


def _cfg(smoke_cfg, **eval_kw):
    cfg = ml_collections.ConfigDict(smoke_cfg.to_dict())
    cfg.eval.update(eval_kw)
    return cfg


def test_windows_align_real_and_generated_frames(smoke_run):
    cfg, workdir, _ = smoke_run
    run = pipeline.inference.load_run(workdir, cfg=cfg)
    cfg = _cfg(cfg, horizons=(2, 4), baselines=("reconstruction",))  # horizons 16 and 32: [2, 18), [16, 32)
    perfect = horizons.evaluate(cfg, workdir, feature_fn=_cheap_features, run=_Oracle(cfg, workdir, run))
    model = [r for r in perfect["rows"] if r["method"] == "MaskFlow"]
    ceiling = [r for r in perfect["rows"] if r["method"] != "MaskFlow"]
    assert [r["window"] for r in model] == [[2, 18], [16, 32]]
    assert [r["fvd"] for r in model] == pytest.approx([r["fvd"] for r in ceiling], abs=1e-6)  # the same clips
    shifted = horizons.evaluate(cfg, workdir, feature_fn=_cheap_features, run=_Oracle(cfg, workdir, run, 5))
    model_shifted = [r for r in shifted["rows"] if r["method"] == "MaskFlow"]
    assert all(s["psnr"] < r["psnr"] - 1 for s, r in zip(model_shifted, model))  # scored against other frames
    assert [r["fvd"] for r in model_shifted] != pytest.approx([r["fvd"] for r in model])

    # Held-out videos (34 frames) shorter than the last window: it is compared with their last 16 frames.
    cfg = _cfg(cfg, horizons=(2, 5))
    long = horizons.evaluate(cfg, workdir, feature_fn=_cheap_features, run=run)
    assert [r["reference_window"] for r in long["rows"] if r["method"] == "MaskFlow"] == [[2, 18], [18, 34]]
    assert [r["window"] for r in long["rows"] if r["method"] == "MaskFlow"] == [[2, 18], [24, 40]]
    assert long["record"]["real_length"] == 34 and [d["horizon"] for d in long["real_dynamics"]] == [16]
    assert all(r["psnr"] is None for r in long["rows"] if r["window"] == [24, 40])


def test_window_plan_never_scores_only_context():
    """A per-horizon window moves past the context (the maskflow protocol with m = 35 on 36-frame clips);
    a whole-video protocol has one window."""
    cfg = maze.get_config("smoke")
    cfg.data.frames, cfg.sampling.context, cfg.sampling.stride = 36, 35, 1
    cfg.eval.protocol, cfg.eval.horizons = "maskflow", (1, 2, 5, 10)
    m, length, f, windows = horizons.plan(cfg)
    assert (m, f) == (35, 16) and windows == [(36, 35, 51), (72, 56, 72), (180, 164, 180), (360, 344, 360)]
    assert length == 360 and all(a >= m for _, a, _ in windows)
    cfg.eval.protocol = "teco"
    assert horizons.plan(cfg) == (36, 300, 300, [(300, 0, 300)])
    cfg.eval.protocol = "fvd2048_128f"
    assert horizons.plan(cfg) == (0, 128, 128, [(128, 0, 128)])
    assert "frozen last context frame" not in horizons.methods(cfg)  # no context frame to freeze
    p = protocols.PROTOCOLS
    assert (p["teco"].group_size, p["teco"].real_context, p["teco"].frames) == (256, True, 300)
    assert (p["fvd2048_16f"].num_videos, p["fvd2048_128f"].frames, p["fvd2048_128f"].context) == (2048, 128, 0)


def test_teco_protocol_scores_real_context_per_group_and_seed(smoke_run, monkeypatch):
    """TECO's scoring at toy size: a context as long as the training window (8 = T_w, impossible to roll out
    from directly), the scored videos' first m frames the real ones, FVD per group of 2 videos and seed."""
    cfg, workdir, _ = smoke_run
    run = pipeline.inference.load_run(workdir, cfg=cfg)
    toy = dataclasses.replace(
        protocols.PROTOCOLS["teco"], name="teco_toy", frames=34, resolution=None, context=8, length=34, group_size=2
    )
    monkeypatch.setitem(protocols.PROTOCOLS, "teco_toy", toy)
    seen = []

    def features(clips):
        seen.append(np.asarray(clips))
        return _cheap_features(clips)

    cfg = _cfg(cfg, protocol="teco_toy", seeds=(0, 1), baselines=("frozen",))
    res = horizons.evaluate(cfg, workdir, feature_fn=features, run=run)
    _, real, _ = heldout.load(cfg, workdir, 4, 34)
    fakes = [c for c in seen if not np.array_equal(c, real[: len(c)])]
    assert fakes and all(np.array_equal(c[:, :8], real[: len(c), :8]) for c in seen)  # the real context everywhere
    assert any(not np.array_equal(c[:, 8:], real[: len(c), 8:]) for c in fakes)
    model = next(r for r in res["rows"] if r["method"] == "MaskFlow")
    assert len(model["fvd_values"]) == 4 and model["num_videos"] == 2  # 2 groups x 2 seeds
    assert model["fvd"] == pytest.approx(np.mean(model["fvd_values"]))
    assert model["fvd_std"] == pytest.approx(np.std(model["fvd_values"], ddof=1))
    rec = res["record"]
    assert (rec["groups"], rec["seeds"], rec["context"], rec["rollout_context"]) == (2, [0, 1], 8, 2)
    assert rec["real_context"] is True and rec["actions"] is False
    assert "±" in "\n".join(report.fvd_table(horizons.to_json(res)))


def test_unconditional_generation_continues_past_one_window(smoke_run):
    """StyleGAN-V's protocols generate from nothing: one window, then chunk-wise from its last frames."""
    cfg, workdir, _ = smoke_run
    run = pipeline.inference.load_run(workdir, cfg=cfg)
    tok, _, _ = heldout.load(cfg, workdir, 2, 34)
    video, info = horizons.generate(cfg, run, jax.random.key(0), tok, None, context=0, length=20)
    assert video.shape == (2, 20) + tok.shape[2:]
    assert info["ends"] == [8, 14, 20]  # one window from nothing, then 6 + 6 new frames after 2 of its frames
    assert info["chunks"] == 3 and info["nfe"] == 3 * cfg.sampling.steps


def test_eval_without_raw_features_skips_the_feature_file(smoke_run, tmp_path, monkeypatch):
    """Past fvd.MAX_KEPT eval videos FeatureStats drops the raw I3D features: the eval stage still gives
    every FVD, leaves KVD empty and skips samples/eval_features.npz (with a warning) instead of failing."""
    cfg, workdir, _ = smoke_run
    work = str(tmp_path / "run")
    shutil.copytree(workdir, work)  # this worker's run keeps its feature file for the other tests
    path = os.path.join(work, "samples", resample.FEATURES_FILE)
    os.remove(path)
    warnings = []
    monkeypatch.setattr(pipeline.logging, "warning", lambda msg, *args: warnings.append(msg % args))
    monkeypatch.setattr(fvd, "MAX_KEPT", cfg.eval.num_videos - 1)  # the smoke eval has 4 videos
    # Per-frame channel means instead of the I3D (the branch does not depend on the feature; saves a minute).
    monkeypatch.setattr(i3d, "make_feature_fn", lambda **_: _cheap_features)
    rows = pipeline.evaluate_run(cfg, work)["rows"]
    assert not os.path.exists(path)
    assert len(warnings) == 1 and "raw I3D features not kept" in warnings[0]
    assert all(r["kvd"] is None for r in rows) and all(np.isfinite(r["fvd"]) and r["fvd"] > 0 for r in rows)
    assert report.cell(rows[0], "kvd", ".1f") == "" and report.cell({"kvd": 2.345}, "kvd", ".1f") == "2.3"
    assert re.search(r"\| 16 \| MaskFlow \| [\d.]+ \|  \|", "\n".join(report.fvd_table(rows_result(rows))))


def rows_result(rows):
    """A minimal evaluate() result around `rows`, for report.fvd_table."""
    return {
        "rows": rows,
        "real_dynamics": [],
        "record": {"protocol": "maze", "windows": [[16, 2, 18]], "frames": 16, "reference": "r", "context": 2},
    }
