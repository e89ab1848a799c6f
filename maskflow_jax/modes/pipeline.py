"""`--mode=pipeline`: the whole method on one dataset, each stage resumable and skipped when done.

data (built-in world or records) -> tokenizer training -> token cache -> denoiser training -> samples
-> evaluation (eval/horizons.py: FVD / KVD per horizon under config.eval, with its baselines, and the
next-frame check, eval/prediction.py) -> `<workdir>/REPORT.md`. A killed run restarted with the same
command continues at the first unfinished stage (maskflow_jax/stages.py). `--mode=eval` on the
finished run reproduces the report's FVD table.
"""

import json
import os

import jax
import numpy as np
from absl import logging

from maskflow_jax import inference, report, stages
from maskflow_jax.data import heldout, loader, tokens
from maskflow_jax.eval import fvd, horizons, plot, prediction, protocols, resample
from maskflow_jax.tokenizer.train import load_tokenizer, train_tokenizer
from maskflow_jax.train.loop import train_denoiser


def evaluate_run(cfg, workdir, *, feature_fn=None):
    """The eval stage: eval/horizons.py's evaluation and the next-frame checks of the run; writes the GIFs,
    a frame strip, the FVD plot and the I3D features of every set (samples/eval_features.npz, for
    `python -m maskflow_jax.eval.resample <workdir>`). Returns the stage's result dict (JSON-able)."""
    run = inference.load_run(workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    res = horizons.evaluate(cfg, workdir, run=run, feature_fn=feature_fn)
    samples = os.path.join(workdir, "samples")
    os.makedirs(samples, exist_ok=True)
    length = res["record"]["length"]
    video = res["example"]
    every = max(1, length // 16)
    inference.save_frame_grid(os.path.join(samples, "strip.png"), video, every=every, columns=16)
    real = res["example_real"]
    if real is not None and real.shape == video.shape:  # the held-out video above its continuation
        both = np.concatenate([real[::every][:16], video[::every][:16]])
        inference.save_frame_grid(os.path.join(samples, "strip_vs_real.png"), both, columns=len(both) // 2)
    for h in sorted({r["horizon"] for r in res["rows"]}):
        inference.save_gif(os.path.join(samples, f"horizon_{h}.gif"), video[: min(h, length)])
    f = cfg.data.frames
    toks, _, actions = heldout.load(cfg, workdir, res["record"]["num_videos"], res["record"]["real_length"])
    full, _ = run.generate(
        jax.random.key(0),
        context=0,
        num_frames=f,
        window=f,
        batch_size=2,  # one window, no context
        actions=None if actions is None else actions[:2, :f],
    )
    inference.save_gif(os.path.join(samples, "full_sequence.gif"), full[0])
    if res["features"] is not None:  # for eval/resample.py
        resample.save_features(os.path.join(samples, resample.FEATURES_FILE), res["features"])
    else:  # FeatureStats drops raw features past fvd.MAX_KEPT videos
        logging.warning(
            "more than %d eval videos: raw I3D features not kept, %s not written", fvd.MAX_KEPT, resample.FEATURES_FILE
        )
    plot.fvd_by_horizon(os.path.join(samples, "fvd_by_horizon.png"), res)
    checks = prediction.check_run(cfg, run, toks, actions)
    model = {r["horizon"]: r["fvd"] for r in res["rows"] if r["method"] == protocols.MODEL}
    main = [c for c in checks if c["time_input"] == cfg.sampling.time_input and not c["visible_future"]]
    return {
        **horizons.to_json(res),
        "prediction": checks,
        "summary": "MaskFlow FVD by horizon "
        + ", ".join(f"{h}: {v:.0f}" for h, v in model.items())
        + "; next-frame accuracy "
        + ", ".join(
            f"m={c['context']}: {c['accuracy']:.3f} (copy "
            f"{c['copy_accuracy']:.3f}, changed tokens "
            f"{c['changed_accuracy']:.3f})"
            for c in main
        ),
    }


def write_report(cfg, workdir, results):
    """`<workdir>/REPORT.md` from the stage results; returns its path."""
    lines = ["# MaskFlow run report", "", f"Workdir: `{workdir}`", "", "| stage | seconds | summary |", "|---|---|---|"]
    for name, res in results.items():
        lines.append(f"| {name} | {res.get('seconds', 0):.0f} | {res.get('summary', '')} |")
    ev = results.get("eval", {})
    if ev.get("rows"):
        lines += report.fvd_table(ev)
    if ev.get("prediction"):
        lines += prediction.report_lines(ev["prediction"], cfg.sampling.time_input)
    if ev.get("rows"):
        horizons_ = sorted({r["horizon"] for r in ev["rows"]})
        length = ev["record"]["length"]
        lines += [
            "",
            "![FVD by horizon](samples/fvd_by_horizon.png)",
            "",
            f"One generated video, every {max(1, length // 16)}-th frame of {length} "
            "(the first frames are the real context):",
            "",
            "![frame strip](samples/strip.png)",
            "",
        ]
        if os.path.exists(os.path.join(workdir, "samples", "strip_vs_real.png")):
            lines += [
                "The held-out video (top) and its continuation (bottom):",
                "",
                "![real and generated](samples/strip_vs_real.png)",
                "",
            ]
        lines += [
            "GIFs: "
            + ", ".join(f"[{h} frames](samples/horizon_{h}.gif)" for h in horizons_)
            + ", [one full-sequence window without context](samples/full_sequence.gif).",
        ]
    lines += [
        "",
        "Samples of `--mode=sample`: `samples/sample_*.gif`, `samples/grid.png`.",
        "",
        "Config:",
        "",
        "```",
        cfg.to_json_best_effort(indent=1) if hasattr(cfg, "to_json_best_effort") else str(cfg),
        "```",
    ]
    path = os.path.join(workdir, "REPORT.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run(cfg, workdir):
    """Runs every stage (skipping finished ones) and writes REPORT.md; returns the stage summaries."""
    os.makedirs(workdir, exist_ok=True)
    results = {}

    def data():
        out = loader.prepare_data(cfg, workdir)
        return {"summary": f"prepared {json.dumps({k: v for k, v in out.items() if isinstance(v, dict)})}"}

    def tokenize():
        return tokens.tokenize_dataset(cfg, workdir, load_tokenizer(cfg, workdir).encode)

    def denoiser():
        state = train_denoiser(cfg, workdir)
        lines = open(os.path.join(workdir, "train_metrics.jsonl"), encoding="utf-8").read().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        return {
            "summary": f"{int(state.step)} steps, final loss {last.get('loss', float('nan')):.3f}, "
            f"masked accuracy {last.get('accuracy', float('nan')):.3f}"
        }

    results["data"] = stages.run_stage(workdir, "data", data)
    results["tokenizer"] = stages.run_stage(workdir, "tokenizer", lambda: train_tokenizer(cfg, workdir))
    results["tokens"] = stages.run_stage(workdir, "tokens", tokenize)
    results["denoiser"] = stages.run_stage(workdir, "denoiser", denoiser)
    results["samples"] = stages.run_stage(workdir, "samples", lambda: inference.sample_heldout(cfg, workdir))
    results["eval"] = stages.run_stage(workdir, "eval", lambda: evaluate_run(cfg, workdir))
    path = write_report(cfg, workdir, results)
    print(f"report: {path}", flush=True)
    return results
