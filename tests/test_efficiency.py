"""`--mode=efficiency` on the smoke pipeline run (the session-scoped `smoke_run` of conftest.py):
NFE bookkeeping of the MGM / FM sweep and of full-sequence vs autoregressive rollouts, the JSON and
PNG outputs, an idempotent REPORT.md section, and the error on an unfinished run. A cheap feature
function stands in for the I3D to keep the file fast."""

import json
import os

import numpy as np
import pytest

from configs import maze
from maskflow_jax import config_validation, inference
from maskflow_jax.modes import efficiency
from maskflow_jax.sampling.fm import fm_nfe
from maskflow_jax.sampling.rollout import rollout_plan


def _cheap_features(videos):
    """(n, T * 3) per-frame channel means: a fast stand-in for the I3D."""
    v = np.asarray(videos, np.float32)
    return v.mean(axis=(2, 3)).reshape(len(v), -1)


@pytest.fixture(scope="module")
def eff(smoke_run):
    cfg, workdir, _ = smoke_run
    run = inference.load_run(workdir, cfg=cfg)
    return cfg, workdir, run, efficiency.run(cfg, workdir, feature_fn=_cheap_features, loaded_run=run)


def test_sweep_nfe_counts_chunks_times_steps(eff):
    cfg, _, _, res = eff
    e, s, t_w = cfg.eval.efficiency, cfg.sampling, cfg.data.frames
    plan = rollout_plan(18, t_w, s.context, s.stride)  # smoke: the clip [2, 18) after 2 context frames
    assert len(plan) == 3
    mgm = [r for r in res["fvd_vs_nfe"] if r["sampler"] == "mgm"]
    fm = [r for r in res["fvd_vs_nfe"] if r["sampler"] == "fm"]
    assert [r["steps"] for r in mgm] == list(e.mgm_steps) and [r["steps"] for r in fm] == list(e.fm_steps)
    for r in mgm:  # MGM executes exactly S steps per chunk (the schedule counts only masked tokens)
        assert r["chunks"] == len(plan) and r["nfe"] == r["chunks"] * r["steps"]
    assert np.all(np.diff([r["nfe"] for r in mgm]) > 0)
    for r in fm:
        assert r["chunks"] == len(plan) and r["nfe"] == r["chunks"] * fm_nfe(r["steps"], t_w)
    for r in res["fvd_vs_nfe"]:
        assert r["length"] == 18 and r["window"] == [2, 18] and r["num_videos"] == e.num_videos == 4
        assert np.isfinite(r["fvd"]) and r["fvd"] >= 0 and r["seconds_per_frame"] > 0 and np.isfinite(r["kvd"])
        assert r["feature"] == "custom feature_fn"
        assert 0 < r["motion"] < 255 and 0 < r["contrast"] < 255  # generated clips move and are not flat


def test_full_sequence_vs_autoregressive_rows(eff):
    cfg, _, _, res = eff
    t_w, steps = cfg.data.frames, cfg.sampling.steps
    rows = {r["mode"]: r for r in res["by_length"]}
    assert set(rows) == {"full sequence", "autoregressive"}
    full, ar = rows["full sequence"], rows["autoregressive"]
    assert full["length"] == ar["length"] == 3 * t_w and full["multiple"] == 3
    assert (full["context"], full["stride"], ar["context"], ar["stride"]) == (2, t_w - 2, t_w - 1, 1)
    assert full["chunks"] == len(rollout_plan(24, t_w, 2, t_w - 2)) == 4  # 2 + 6 + 6 + 6 + 4 frames
    assert ar["chunks"] == 24 - (t_w - 1) == 17
    for r in (full, ar):
        assert r["sampler"] == cfg.sampling.sampler == "mgm" and r["nfe"] == r["chunks"] * steps
        assert np.isfinite(r["fvd"]) and r["num_videos"] == 4


def test_outputs_and_report_section_idempotent(eff):
    cfg, workdir, run, res = eff
    saved = json.load(open(os.path.join(workdir, "eval", "efficiency.json")))
    assert [r["nfe"] for r in saved["fvd_vs_nfe"]] == [r["nfe"] for r in res["fvd_vs_nfe"]]
    assert saved["settings"]["num_videos"] == 4 and saved["settings"]["step"] == cfg.train.steps
    assert os.path.getsize(os.path.join(workdir, "eval", efficiency.PLOT)) > 1000
    path = os.path.join(workdir, "REPORT.md")
    report = open(path).read()
    assert report.count("## Sampling efficiency") == 1 and "biased upward" in report
    assert f"![FVD against NFE](eval/{efficiency.PLOT})" in report
    assert "| MGM | 4 | 3 | 12 |" in report and "| autoregressive | 24 | 3 |" in report
    assert "| FVD | KVD | motion | contrast | num videos |" in report
    real = {d["length"]: d for d in saved["settings"]["real_dynamics"]}
    assert sorted(real) == [18, 24] and all(0 < d["motion"] < 255 and 0 < d["contrast"] < 255 for d in real.values())
    assert f"Real held-out clips (the same frames): motion {real[18]['motion']:.1f}, contrast" in report
    assert f"length 24: motion {real[24]['motion']:.1f}, contrast {real[24]['contrast']:.1f}." in report
    mgm4 = next(r for r in saved["fvd_vs_nfe"] if r["label"] == "MGM" and r["steps"] == 4)
    assert f"| {mgm4['kvd']:.1f} | {mgm4['motion']:.1f} | {mgm4['contrast']:.1f} | 4 |" in report

    efficiency.run(cfg, workdir, feature_fn=_cheap_features, loaded_run=run)  # rerun: replaced, not added
    again = open(path).read()
    assert again.count("## Sampling efficiency") == 1 and again.count(efficiency.BEGIN) == 1
    head = report[: report.index(efficiency.BEGIN)]
    assert again.startswith(head) and "# MaskFlow run report" in head and "| denoiser |" in head


def test_unfinished_run_fails_with_the_fix(tmp_path):
    cfg = maze.get_config("smoke")
    with pytest.raises(FileNotFoundError, match=r"denoiser checkpoint.*REPORT\.md.*run the pipeline first"):
        efficiency.run(cfg, str(tmp_path))
    (tmp_path / "checkpoints" / "30").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"REPORT\.md is missing.*--mode=efficiency"):
        efficiency.run(cfg, str(tmp_path))


def test_config_validation_and_report_splice(tmp_path):
    cfg = maze.get_config("smoke")
    config_validation.validate(cfg)
    cfg.eval.efficiency.mgm_steps = (0, 4)
    with pytest.raises(config_validation.ConfigError, match="eval.efficiency.mgm_steps"):
        config_validation.validate(cfg)
    report = tmp_path / "REPORT.md"
    report.write_text("# r\n\nConfig:\n")
    for text in ("first", "second"):
        efficiency.update_report(str(report), f"{efficiency.BEGIN}\n## Sampling efficiency\n{text}\n{efficiency.END}")
    assert report.read_text() == (
        f"# r\n\nConfig:\n\n{efficiency.BEGIN}\n## Sampling efficiency\nsecond\n{efficiency.END}\n"
    )
