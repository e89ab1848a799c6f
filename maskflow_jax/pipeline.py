"""`--mode=pipeline`: the whole method on one dataset, each stage resumable and skipped when done.

data (maze generation + records) -> tokenizer training -> token cache -> denoiser training ->
long-video generation at each horizon -> FVD against held-out videos, with baselines (frozen last
context frame, untrained denoiser, tokenizer reconstruction = ceiling) -> `<workdir>/REPORT.md`.
A killed run restarted with the same command continues at the first unfinished stage.
"""
import json
import os
import time

import jax
import numpy as np
from absl import logging

from maskflow_jax import evaluate, inference, stages
from maskflow_jax.data import pipeline as data_pipeline
from maskflow_jax.data import tokens

WINDOW = 16  # I3D clip length used for every horizon (the last 16 frames of the horizon)


def evaluate_horizons(cfg, workdir):
    """Generates every horizon for the held-out contexts and returns FVD rows (model and baselines)."""
    from maskflow_jax.eval import i3d, protocols  # noqa: PLC0415

    run = inference.load_run(workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    untrained = inference.Run(cfg=cfg, tokenizer=run.tokenizer, model=run.model,
                              params=jax.tree.map(np.zeros_like, run.params), step=0)
    # Zero-initialised (untrained) denoiser: uniform logits, i.e. the untrained model of the report.
    feature_fn = i3d.make_feature_fn(weights=cfg.eval.i3d_weights)
    f, m = cfg.data.frames, cfg.sampling.context
    horizons = [h * f for h in cfg.eval.horizons]
    real_tokens, real_pixels = evaluate.heldout(cfg, workdir, cfg.eval.num_videos, max(horizons))
    ctx = real_tokens[:, :m]
    rows = []
    for length in horizons:
        sl = slice(length - WINDOW, length)
        reference = real_pixels[:, sl]
        candidates = {"tokenizer reconstruction (ceiling)": run.tokenizer.decode(real_tokens[:, sl])}
        start = time.perf_counter()
        video, info = run.generate(jax.random.key(length), context_tokens=ctx, num_frames=length)
        per_frame = (time.perf_counter() - start) / ((length - m) * len(ctx))
        candidates["MaskFlow"] = video[:, sl]
        frozen = run.tokenizer.decode(np.repeat(ctx[:, -1:], WINDOW, axis=1))
        candidates["frozen last context frame"] = frozen
        candidates["untrained denoiser"] = untrained.generate(jax.random.key(length), context_tokens=ctx,
                                                              num_frames=length)[0][:, sl]
        for name, fake in candidates.items():
            res = protocols.evaluate_fvd("maze", reference, fake, feature_fn=feature_fn, real_is_reference=True,
                                         use_ema=cfg.eval.use_ema, batch_size=cfg.eval.batch_size)
            rows.append({"horizon": length, "method": name, "fvd": res["fvd"], "num_videos": res["num_fake"],
                         "nfe": info["nfe"] if name == "MaskFlow" else None,
                         "seconds_per_frame": per_frame if name == "MaskFlow" else None})
        inference.save_gif(os.path.join(workdir, "samples", f"horizon_{length}.gif"), video[0])
        logging.info("horizon %d: %s", length, {r["method"]: round(r["fvd"], 1) for r in rows if r["horizon"] == length})
    return rows


def write_report(cfg, workdir, results):
    lines = ["# MaskFlow run report", "", f"Workdir: `{workdir}`", "",
             "| stage | seconds | summary |", "|---|---|---|"]
    for name, res in results.items():
        lines.append(f"| {name} | {res.get('seconds', 0):.0f} | {res.get('summary', '')} |")
    rows = results.get("eval", {}).get("rows", [])
    if rows:
        lines += ["", f"## FVD per horizon (held-out maze videos as the reference, last {WINDOW} frames of each horizon, "
                      f"{rows[0]['num_videos']} videos; small-sample FVD is biased upward)", "",
                  "| horizon | method | FVD | NFE | s / generated frame |", "|---|---|---|---|---|"]
        for r in rows:
            nfe = "" if r["nfe"] is None else r["nfe"]
            spf = "" if r["seconds_per_frame"] is None else f"{r['seconds_per_frame']:.3f}"
            lines.append(f"| {r['horizon']} | {r['method']} | {r['fvd']:.1f} | {nfe} | {spf} |")
    lines += ["", "Samples: `samples/` (GIFs per horizon, `grid.png`).", "",
              "Config:", "", "```", cfg.to_json_best_effort(indent=1) if hasattr(cfg, "to_json_best_effort")
              else str(cfg), "```"]
    path = os.path.join(workdir, "REPORT.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_pipeline(cfg, workdir):
    """Runs every stage (skipping finished ones) and writes REPORT.md; returns the stage summaries."""
    from maskflow_jax.tokenizer.train import train_tokenizer  # noqa: PLC0415
    from maskflow_jax.train.loop import train_and_evaluate  # noqa: PLC0415

    os.makedirs(workdir, exist_ok=True)
    results = {}

    def data():
        out = data_pipeline.prepare_data(cfg, workdir)
        return {"summary": f"prepared {json.dumps({k: v for k, v in out.items() if isinstance(v, dict)})}"}

    def denoiser():
        state = train_and_evaluate(cfg, workdir)
        lines = open(os.path.join(workdir, "train_metrics.jsonl"), encoding="utf-8").read().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        return {"summary": f"{int(state.step)} steps, final loss {last.get('loss', float('nan')):.3f}, "
                           f"masked accuracy {last.get('accuracy', float('nan')):.3f}"}

    def evaluate():
        rows = evaluate_horizons(cfg, workdir)
        model = {r["horizon"]: r["fvd"] for r in rows if r["method"] == "MaskFlow"}
        return {"rows": rows, "summary": "MaskFlow FVD by horizon " + ", ".join(f"{h}: {v:.0f}" for h, v in model.items())}

    results["data"] = stages.run_stage(workdir, "data", data)
    results["tokenizer"] = stages.run_stage(workdir, "tokenizer", lambda: train_tokenizer(cfg, workdir))
    results["tokens"] = stages.run_stage(workdir, "tokens", lambda: tokens.tokenize_dataset(cfg, workdir))
    results["denoiser"] = stages.run_stage(workdir, "denoiser", denoiser)
    results["samples"] = stages.run_stage(workdir, "samples", lambda: inference.sample_mode(cfg, workdir))
    results["eval"] = stages.run_stage(workdir, "eval", evaluate)
    path = write_report(cfg, workdir, results)
    print(f"report: {path}")
    return results
