"""The one-command pipeline at smoke size: every stage runs, REPORT.md is written, and a restarted run
skips finished stages and reproduces the same FVD table."""
import json
import os

from configs import maze
from maskflow_jax import pipeline, stages


def test_smoke_pipeline_end_to_end_and_restart(tmp_path):
    cfg = maze.get_config("smoke")
    workdir = str(tmp_path)
    results = pipeline.run_pipeline(cfg, workdir)
    report = open(os.path.join(workdir, "REPORT.md")).read()
    for stage in ("data", "tokenizer", "tokens", "denoiser", "samples", "eval"):
        assert stages.load_summary(workdir, stage) is not None, stage
        assert f"| {stage} |" in report
    rows = results["eval"]["rows"]
    assert {r["method"] for r in rows} == {"MaskFlow", "frozen last context frame", "untrained denoiser",
                                           "tokenizer reconstruction (ceiling)"}
    assert all(r["fvd"] > 0 for r in rows) and os.path.exists(os.path.join(workdir, "samples", "horizon_16.gif"))

    # Restart after losing the last stage: earlier stages are skipped, the FVD table is reproduced.
    before = {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in ("tokenizer", "denoiser")}
    os.remove(stages.marker_path(workdir, "eval"))
    os.remove(os.path.join(workdir, "REPORT.md"))
    again = pipeline.run_pipeline(cfg, workdir)
    assert {s: os.path.getmtime(stages.marker_path(workdir, s)) for s in before} == before
    assert json.dumps([round(r["fvd"], 2) for r in again["eval"]["rows"]]) == \
        json.dumps([round(r["fvd"], 2) for r in rows])
    assert os.path.exists(os.path.join(workdir, "REPORT.md"))
