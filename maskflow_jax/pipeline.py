"""`--mode=pipeline`: the whole method on one dataset, each stage resumable and skipped when done.

data (maze generation + records) -> tokenizer training -> token cache -> denoiser training ->
long-video generation at each horizon -> FVD against held-out videos, with baselines (frozen last
context frame, untrained denoiser, tokenizer reconstruction = ceiling) -> `<workdir>/REPORT.md`.
A killed run restarted with the same command continues at the first unfinished stage.
"""
import functools
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


def cell(row, key, fmt):
    """A report table cell: row[key] formatted with `fmt`, or empty when missing or None."""
    return "" if row.get(key) is None else format(row[key], fmt)


def evaluate_horizons(cfg, workdir):
    """Generates the longest horizon once for the held-out contexts (chunk-wise rollouts: a shorter
    horizon is a prefix of a longer one) and returns (FVD / KVD rows of the last 16 frames of every
    horizon, for the model and the baselines, with their clips' motion and contrast; next-frame
    prediction checks, see prediction_check; the real clips' motion and contrast per horizon); writes GIFs,
    a frame strip, the FVD plot and the I3D features of every set (samples/eval_features.npz, for
    `python -m maskflow_jax.eval.resample <workdir>`)."""
    from maskflow_jax.eval import fvd, i3d, metrics, plot, protocols, resample  # noqa: PLC0415

    run = inference.load_run(workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    untrained = inference.untrained_run(run)  # uniform logits, as the zero-initialised head gives
    feature_fn = i3d.make_feature_fn(weights=cfg.eval.i3d_weights)
    f, m = cfg.data.frames, cfg.sampling.context
    horizons = [h * f for h in cfg.eval.horizons]
    longest = max(horizons)
    real_tokens, real_pixels, actions = evaluate.heldout(cfg, workdir, cfg.eval.num_videos, longest)
    ctx = real_tokens[:, :m]
    checks = prediction_check(cfg, run, real_tokens, actions)
    start = time.perf_counter()
    video, info = run.generate(jax.random.key(longest), context_tokens=ctx, num_frames=longest, actions=actions)
    per_frame = (time.perf_counter() - start) / ((longest - m) * len(ctx))
    blank, _ = untrained.generate(jax.random.key(longest), context_tokens=ctx, num_frames=longest, actions=actions)
    frozen = run.tokenizer.decode(np.repeat(ctx[:, -1:], WINDOW, axis=1))
    samples = os.path.join(workdir, "samples")
    os.makedirs(samples, exist_ok=True)
    inference.save_frame_grid(os.path.join(samples, "strip.png"), video[0], every=max(1, longest // 16), columns=16)
    full, _ = run.generate(jax.random.key(0), context=0, num_frames=f, batch_size=2,  # one window, no context
                           actions=None if actions is None else actions[:2, :f])
    inference.save_gif(os.path.join(samples, "full_sequence.gif"), full[0])

    def stats(videos):
        return protocols.video_stats("maze", videos, feature_fn=feature_fn, batch_size=cfg.eval.batch_size)

    rows, features, real_dynamics = [], {}, []
    frozen_set = (stats(frozen), metrics.dynamics(frozen))  # the same clip at every horizon: measured once
    for length in horizons:
        sl = slice(length - WINDOW, length)
        reference = stats(real_pixels[:, sl])
        real_dynamics.append({"horizon": length, **metrics.dynamics(real_pixels[:, sl])})
        recon = run.tokenizer.decode(real_tokens[:, sl])
        candidates = {"tokenizer reconstruction (ceiling)": (stats(recon), metrics.dynamics(recon)),
                      "MaskFlow": (stats(video[:, sl]), metrics.dynamics(video[:, sl])),
                      "frozen last context frame": frozen_set,
                      "untrained denoiser": (stats(blank[:, sl]), metrics.dynamics(blank[:, sl]))}
        features[(resample.REFERENCE, length)] = reference.features
        features.update({(name, length): fake.features for name, (fake, _) in candidates.items()})
        for name, (fake, dyn) in candidates.items():
            res = protocols.make_record("maze", reference, fake, use_ema=cfg.eval.use_ema,
                                        decode_uint8=run.tokenizer.decode_uint8)
            rows.append({"horizon": length, "method": name, "fvd": res["fvd"], "kvd": res["kvd"], **dyn,
                         "num_videos": res["num_fake"],
                         "nfe": _prefix_nfe(cfg, longest, length, info) if name == "MaskFlow" else None,
                         "seconds_per_frame": per_frame if name == "MaskFlow" else None})
        inference.save_gif(os.path.join(samples, f"horizon_{length}.gif"), video[0, :length])
        logging.info("horizon %d: %s", length, {r["method"]: round(r["fvd"], 1) for r in rows if r["horizon"] == length})
    if all(x is not None for x in features.values()):  # for eval/resample.py
        resample.save_features(os.path.join(samples, resample.FEATURES_FILE), features)
    else:  # FeatureStats drops raw features past fvd.MAX_KEPT videos
        logging.warning("more than %d eval videos: raw I3D features not kept, %s not written",
                        fvd.MAX_KEPT, resample.FEATURES_FILE)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    plot.plot_curves(os.path.join(samples, "fvd_by_horizon.png"),
                     {k: ([r["horizon"] for r in rows if r["method"] == k], [r["fvd"] for r in rows if r["method"] == k])
                      for k in methods},
                     title=f"FVD of the last {WINDOW} frames vs horizon ({len(ctx)} videos)", xlabel="frames generated",
                     ylabel="FVD")
    return rows, checks, real_dynamics


def prediction_check(cfg, run, real_tokens, actions=None):
    """Teacher-forced next-frame token accuracy and cross-entropy (maskflow_jax/eval/prediction.py) on
    every clip-length window of the held-out token videos (N, L, h, w) (with their actions (N, L) for
    an action-conditioned run), given m = sampling.context and m = F - 1 real frames, against copying
    the previous frame: with both time inputs (the configured one first), and, for m < F - 1, the
    "future visible" control (frame m + 1 shown) with the configured one. Returns a list of result dicts."""
    from maskflow_jax.eval import prediction  # noqa: PLC0415

    f = cfg.data.frames
    n, length = real_tokens.shape[:2]
    k = length // f
    clips = np.asarray(real_tokens)[:, :k * f].reshape((n * k, f) + real_tokens.shape[2:])
    clip_actions = None if actions is None else np.asarray(actions)[:, :k * f].reshape(n * k, f)
    apply = functools.partial(jax.jit(run.apply_fn()), run.params)
    configured = cfg.sampling.time_input
    inputs = [configured] + [x for x in prediction.TIME_INPUTS if x != configured]
    kw = dict(mask_id=cfg.tokenizer.n_embed, batch_size=cfg.eval.batch_size, actions=clip_actions)
    out = []
    for m in sorted({cfg.sampling.context, f - 1}):
        if not 1 <= m < f:
            continue
        out += [prediction.next_frame_accuracy(apply, clips, m, time_input=x, **kw) for x in inputs]
        if m < f - 1:
            out.append(prediction.next_frame_accuracy(apply, clips, m, time_input=configured, visible_future=True,
                                                      **kw))
    return out


def _prefix_nfe(cfg, longest, length, info):
    """Network evaluations spent on the chunks of the longest rollout that reach frame `length`
    (every chunk of the fixed-step samplers costs the same)."""
    from maskflow_jax.sampling.rollout import rollout_plan  # noqa: PLC0415

    s = cfg.sampling
    have, chunks = s.context, 0
    for chunk in rollout_plan(longest, cfg.data.frames, s.context, s.stride):
        if have >= length:
            break
        have, chunks = have + chunk.keep, chunks + 1
    return info["nfe"] * chunks // info["chunks"]


def prediction_report(checks, configured):
    """REPORT.md lines for the next-frame checks of `prediction_check`."""
    lines = ["", f"## Next-frame token prediction (teacher-forced, {checks[0]['num_clips']} held-out clips)", "",
             "The denoiser's argmax for frame m given m real frames (the rest masked), against repeating frame "
             "m - 1, and the cross-entropy (nats) of the true token on the tokens that change and on those that "
             "stay. A model that has learnt the motion beats the copy baseline and is right on a clear share "
             "of the changed tokens; a model at the copy baseline can only freeze or blur when sampled. "
             f"Time input: what the network is told about the frames' times (`{configured}` is the sampler's). "
             "'frame m + 1 shown' is a control the sampler never sees: how much the model leans on a visible "
             "later frame.", "",
             "| m | time input | frame m + 1 | accuracy | copy previous frame | accuracy on changed tokens | "
             "NLL changed | NLL unchanged | changed tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['context']} | {c['time_input']} | {'shown' if c.get('visible_future') else 'masked'} | "
                     f"{c['accuracy']:.3f} | {c['copy_accuracy']:.3f} | {c['changed_accuracy']:.3f} | "
                     f"{cell(c, 'nll_changed', '.2f')} | {cell(c, 'nll_unchanged', '.2f')} | "
                     f"{c['changed_fraction']:.3f} |")
    split = [c for c in checks if c.get("by_action") and c["time_input"] == configured and not c.get("visible_future")]
    if split:
        lines += ["", f"By the move into frame m (actions[m - 1]; time input `{configured}`):", "",
                  "| m | action | clips | accuracy | copy previous frame | accuracy on changed tokens | changed tokens |",
                  "|---|---|---|---|---|---|---|"]
        for c in split:
            for a, r in sorted(c["by_action"].items()):
                lines.append(f"| {c['context']} | {a} | {r['count']} | {r['accuracy']:.3f} | {r['copy_accuracy']:.3f} | "
                             f"{r['changed_accuracy']:.3f} | {r['changed_fraction']:.3f} |")
    return lines


def write_report(cfg, workdir, results):
    lines = ["# MaskFlow run report", "", f"Workdir: `{workdir}`", "",
             "| stage | seconds | summary |", "|---|---|---|"]
    for name, res in results.items():
        lines.append(f"| {name} | {res.get('seconds', 0):.0f} | {res.get('summary', '')} |")
    rows = results.get("eval", {}).get("rows", [])
    if rows:
        lines += ["", f"## FVD per horizon (raw held-out videos of split {cfg.data.eval_split!r} as the reference, "
                      f"last {WINDOW} frames of each horizon, {rows[0]['num_videos']} videos)", "",
                  f"With {rows[0]['num_videos']} videos and 400-d I3D features, FVD is biased upward, and most "
                  "for sets with much spread: a set with little variety (a frozen frame, blur) gains. KVD "
                  "(unbiased MMD² with the cubic polynomial kernel on the same features; 0 in expectation for "
                  "matching sets) has no such bias but a large variance at this count. A score below the frozen "
                  "frame can come from samples whose features vary as little as a frozen frame's (low-contrast "
                  "blur): read it with the next-frame check and the GIFs. "
                  "How often each comparison holds on random subsets of the videos: "
                  "`python -m maskflow_jax.eval.resample <workdir>`. Compare methods at one horizon, not across "
                  "horizons. Motion: mean absolute change between consecutive frames; contrast: standard "
                  "deviation of a frame's pixels (both in grey levels, eval/metrics.py): a sharp sample that "
                  "moves like the real videos has both near the real clips'.", "",
                  "| horizon | method | FVD | KVD | motion | contrast | NFE | s / generated frame |",
                  "|---|---|---|---|---|---|---|---|"]
        real = {d["horizon"]: d for d in results["eval"].get("real_dynamics", [])}
        for i, r in enumerate(rows):
            if r["horizon"] in real and (i == 0 or rows[i - 1]["horizon"] != r["horizon"]):
                d = real[r["horizon"]]
                lines.append(f"| {r['horizon']} | real held-out videos (the reference) |  |  | {d['motion']:.1f} | "
                             f"{d['contrast']:.1f} |  |  |")
            lines.append(f"| {r['horizon']} | {r['method']} | {r['fvd']:.1f} | {cell(r, 'kvd', '.1f')} | "
                         f"{cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | {cell(r, 'nfe', 'd')} | "
                         f"{cell(r, 'seconds_per_frame', '.3f')} |")
    checks = results.get("eval", {}).get("prediction", [])
    if checks:
        lines += prediction_report(checks, cfg.sampling.time_input)
    if rows:
        horizons = sorted({r["horizon"] for r in rows})
        lines += ["", "![FVD by horizon](samples/fvd_by_horizon.png)", "",
                  f"One generated video, every {max(1, horizons[-1] // 16)}-th frame of {horizons[-1]} "
                  "(the first frames are the real context):", "", "![frame strip](samples/strip.png)", "",
                  "GIFs: " + ", ".join(f"[{h} frames](samples/horizon_{h}.gif)" for h in horizons)
                  + ", [one full-sequence window without context](samples/full_sequence.gif)."]
    lines += ["", "Samples of `--mode=sample`: `samples/sample_*.gif`, `samples/grid.png`.", "",
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
        rows, checks, real = evaluate_horizons(cfg, workdir)
        model = {r["horizon"]: r["fvd"] for r in rows if r["method"] == "MaskFlow"}
        main = [c for c in checks if c["time_input"] == cfg.sampling.time_input and not c["visible_future"]]
        return {"rows": rows, "prediction": checks, "real_dynamics": real,
                "summary": "MaskFlow FVD by horizon " + ", ".join(f"{h}: {v:.0f}" for h, v in model.items())
                           + "; next-frame accuracy " + ", ".join(f"m={c['context']}: {c['accuracy']:.3f} (copy "
                                                                  f"{c['copy_accuracy']:.3f}, changed tokens "
                                                                  f"{c['changed_accuracy']:.3f})" for c in main)}

    results["data"] = stages.run_stage(workdir, "data", data)
    results["tokenizer"] = stages.run_stage(workdir, "tokenizer", lambda: train_tokenizer(cfg, workdir))
    results["tokens"] = stages.run_stage(workdir, "tokens", lambda: tokens.tokenize_dataset(cfg, workdir))
    results["denoiser"] = stages.run_stage(workdir, "denoiser", denoiser)
    results["samples"] = stages.run_stage(workdir, "samples", lambda: inference.sample_mode(cfg, workdir))
    results["eval"] = stages.run_stage(workdir, "eval", evaluate)
    path = write_report(cfg, workdir, results)
    print(f"report: {path}")
    return results
