"""`--mode=eval`: FVD per horizon window, the protocol's whole-clip FVD, and PSNR / SSIM of a run.

For the first `eval.num_videos` held-out videos (split `data.eval_split`), their first m real frames
are the context and the run generates L frames with the configured sampler and preset
(m = sampling.context and L = sampling.horizon, unless the protocol fixes them: teco 36 / 300).
Videos stream in batches of `eval.batch_size`, so only feature statistics (and the raw I3D features of
up to 4,096 videos, for KVD: eval/fvd.py) stay in memory.

Horizon windows (F = eval.fvd_frames): [m + kF, m + (k+1)F), k = 0, 1, … while inside L. Each is
compared with the real frames of the same span when the held-out videos are at least L frames
long ("same"), otherwise with the real frames [m, m + F) ("first"; recorded in the JSON).
Every FVD comes with the KVD of the same sets (unbiased at any number of videos; eval/fvd.py).
Whole-clip FVD: the protocol's frames (e.g. the first 16 of maskflow/styleganv/maze, all 300 of
teco); for `maskflow` the reference is the tokenizer's reconstruction of the real clips (docs/method.md §12).
PSNR / SSIM: generated vs real frames per window; meaningful when generation follows the real
trajectory (TECO's action-conditioned setting), otherwise a measure of divergence from it.
Motion / contrast (eval/metrics.py) of the generated and the real frames per window: how much the
video changes from frame to frame and how sharp its frames are, in grey levels.

Writes `<workdir>/eval/<protocol>.json` and `<workdir>/eval/<protocol>_fvd.png`.
Shapes: N videos, L frames, H×W pixels, h×w tokens.
"""
import os
import time

import jax
import numpy as np
from absl import logging

from maskflow_jax import inference
from maskflow_jax.data import pipeline as data_pipeline
from maskflow_jax.data import records, tokens

PSNR_CAP = 100.0  # dB; identical frames (+inf) count as this in the means


def _sources(cfg, workdir):
    if not os.path.isdir(tokens.token_dir(cfg, workdir)):
        raise FileNotFoundError(f"no token cache at {tokens.token_dir(cfg, workdir)!r} (config.data.token_cache): "
                                "run --mode=tokenize first (it tokenizes the eval split too)")
    tok = records.RecordSource(tokens.token_dir(cfg, workdir), cfg.data.eval_split)
    pix = records.RecordSource(data_pipeline.resolve_prepared_dir(cfg.data, workdir), cfg.data.eval_split)
    if list(tok.lengths) != list(pix.lengths):
        raise ValueError(f"the token cache {tokens.token_dir(cfg, workdir)!r} does not match the prepared "
                         f"clips of split {cfg.data.eval_split!r}: rerun --mode=tokenize")
    return tok, pix


def heldout_indices(cfg, workdir, num, min_length):
    """Indices of the first `num` held-out videos with at least `min_length` frames."""
    tok, _ = _sources(cfg, workdir)
    usable = [i for i in range(len(tok)) if tok.lengths[i] >= min_length][:num]
    if len(usable) < 2:
        raise ValueError(f"need >= 2 videos of >= {min_length} frames in split {cfg.data.eval_split!r}; "
                         f"found {len(usable)} (for the maze raise config.data.maze.length, or lower "
                         "config.sampling.horizon)")
    return usable


def heldout_batches(cfg, workdir, indices, length, batch_size):
    """Yields (tokens (n, length, h, w) int32, pixels (n, length, H, W, 3) uint8 at data.resize_to)."""
    tok, pix = _sources(cfg, workdir)
    for s in range(0, len(indices), batch_size):
        part = indices[s:s + batch_size]
        yield (np.stack([np.asarray(tok[i]["video"])[:length] for i in part]),
               np.stack([data_pipeline.resize_video(np.asarray(pix[i]["video"])[:length], cfg.data.resize_to)
                         for i in part]))


def heldout(cfg, workdir, num, length):
    """(tokens (N, length, h, w), pixels (N, length, H, W, 3), actions (N, length) or None) of the first
    `num` held-out videos of >= `length` frames, all at once; actions only for an action-conditioned
    run (heldout_actions)."""
    idx = heldout_indices(cfg, workdir, num, length)
    tokens, pixels = next(heldout_batches(cfg, workdir, idx, length, len(idx)))
    return tokens, pixels, heldout_actions(cfg, workdir, idx, length)


def heldout_actions(cfg, workdir, indices, length):
    """int32 (N, length) actions of held-out videos `indices` for an action-conditioned run
    (config.model.action_cond), else None. actions[:, f] is the action taken after frame f."""
    if not cfg.model.get("action_cond", False):
        return None
    tok, _ = _sources(cfg, workdir)
    out = []
    for i in indices:
        acts = tok[i].get("actions")
        if acts is None:
            raise ValueError(f"config.model.action_cond=True but held-out video {i} of split {cfg.data.eval_split!r} "
                             "has no actions in the token cache: use data with actions (DMLab, the maze) or set "
                             "config.model.action_cond=False")
        if len(acts) < length:
            raise ValueError(f"an action-conditioned run needs the actions of all {length} generated frames, but "
                             f"held-out video {i} has {len(acts)}: lower config.sampling.horizon to <= {len(acts)}")
        out.append(np.asarray(acts[:length], np.int32))
    return np.stack(out)


def _feature_fn(cfg, resolution):
    from maskflow_jax.eval import i3d  # noqa: PLC0415

    return i3d.make_feature_fn(weights=cfg.eval.i3d_weights, resolution=resolution)


def _add(stats, new):
    for s, n in zip(stats, new):
        s.merge(n)


def evaluate_run(cfg, workdir, *, feature_fn=None, run=None, seed=0):
    """Generates from held-out contexts and measures; returns the result dict (see module doc).

    feature_fn: uint8 (n, F, H, W, 3) -> (n, D) features, default the I3D at the protocol's
    resolution (tests pass a cheap one). run: an inference.Run (default load_run(workdir)).
    """
    from maskflow_jax.eval import metrics, protocols  # noqa: PLC0415
    from maskflow_jax.eval.fvd import FeatureStats, frechet_distance, stats_kernel_distance  # noqa: PLC0415

    e = cfg.eval
    p = protocols.get_protocol(e.protocol)
    m = cfg.sampling.context if p.context is None else p.context
    length = cfg.sampling.horizon if p.length is None else p.length
    if p.frames > length:
        raise ValueError(f"protocol {p.name!r} takes {p.frames} frames per video but config.sampling.horizon="
                         f"{length}: raise the horizon")
    windows = protocols.horizon_windows(length, m, e.fvd_frames)
    run = run or inference.load_run(workdir, cfg=cfg, use_ema=e.use_ema)
    protocols.check_decode_rule(p, getattr(run.tokenizer, "decode_uint8", None))  # before any generation
    lo = {"first": 0, "center": (length - p.frames) // 2, "last": length - p.frames}[p.window]
    clip_span = (lo, lo + p.frames)
    try:
        idx, real_len, real_window = heldout_indices(cfg, workdir, e.num_videos, length), length, "same"
    except ValueError:
        real_len = max(m + e.fvd_frames, clip_span[1])
        idx, real_window = heldout_indices(cfg, workdir, e.num_videos, real_len), "first"
        logging.warning("held-out videos are shorter than %d frames: every window is compared with the real "
                        "frames [%d, %d)", length, m, m + e.fvd_frames)
    real_spans = windows if real_window == "same" else windows[:1]
    fn = feature_fn or _feature_fn(cfg, p.resolution)
    def reconstruct(clip):  # the tokenizer's reconstruction of the real clip (maskflow protocol)
        return run.tokenizer.decode(run.tokenizer.encode(clip))

    reference_fn = reconstruct if p.needs_reference_fn else None

    bs = e.batch_size
    real_h, fake_h = [FeatureStats() for _ in real_spans], [FeatureStats() for _ in windows]
    real_c, fake_c = FeatureStats(), FeatureStats()
    psnr, ssim = [[] for _ in windows], [[] for _ in windows]
    dyn = {k: [[] for _ in windows] for k in ("motion", "contrast", "real_motion", "real_contrast")}
    nfe, gen_seconds, t0 = None, 0.0, time.time()
    key = jax.random.key(seed)
    actions = heldout_actions(cfg, workdir, idx, length)
    for b, (tok, real) in enumerate(heldout_batches(cfg, workdir, idx, real_len, bs)):
        start = time.perf_counter()
        fake, info = run.generate(jax.random.fold_in(key, b), context_tokens=tok[:, :m], num_frames=length,
                                  context=m, actions=None if actions is None else actions[b * bs:(b + 1) * bs])
        gen_seconds += time.perf_counter() - start
        nfe = info["nfe"]
        fake = np.asarray(fake)
        _add(real_h, protocols.stream_stats(real, real_spans, fn, argument="real videos", batch_size=bs))
        _add(fake_h, protocols.stream_stats(fake, windows, fn, argument="generated videos", batch_size=bs))
        real_clip = clip_span if clip_span[1] <= real_len else (0, p.frames)
        _add([real_c], protocols.stream_stats(real, [real_clip], fn, batch_size=bs, transform=reference_fn))
        _add([fake_c], protocols.stream_stats(fake, [clip_span], fn, batch_size=bs))
        for k, (a, z) in enumerate(windows):
            dyn["motion"][k].append(np.asarray(metrics.motion(fake[:, a:z])))
            dyn["contrast"][k].append(np.asarray(metrics.contrast(fake[:, a:z])))
            if z <= real_len:
                dyn["real_motion"][k].append(np.asarray(metrics.motion(real[:, a:z])))
                dyn["real_contrast"][k].append(np.asarray(metrics.contrast(real[:, a:z])))
                psnr[k].append(np.minimum(np.asarray(metrics.psnr(fake[:, a:z], real[:, a:z])), PSNR_CAP).mean(1))
                ssim[k].append(np.asarray(metrics.ssim(fake[:, a:z], real[:, a:z])).mean(1))
        logging.info("eval: %d / %d videos", min((b + 1) * bs, len(idx)), len(idx))
    if real_window == "first":
        real_h = real_h * len(windows)
    curve = [frechet_distance(r.mean, r.cov, f.mean, f.cov) for r, f in zip(real_h, fake_h)]
    kvd = [stats_kernel_distance(r, f) for r, f in zip(real_h, fake_h)]
    record = protocols.make_record(
        p, real_c, fake_c, custom_features=feature_fn is not None, use_ema=e.use_ema, seeds=[seed],
        reference=(f"{p.reference}; here from split {cfg.data.eval_split!r}"
                   + (" through the run's tokenizer" if reference_fn else "")),
        seconds=time.time() - t0, decode_uint8=getattr(run.tokenizer, "decode_uint8", None),
        notes=f"clip frames [{clip_span[0]}, {clip_span[1]}) of {length} generated after {m} real context frames")
    mean = lambda xs: float(np.concatenate(xs).mean()) if xs else None  # noqa: E731
    return {
        "whole_clip": record,
        "horizon": {"windows": [list(w) for w in windows], "fvd": curve, "kvd": kvd, "real_window": real_window,
                    "psnr": [mean(x) for x in psnr], "ssim": [mean(x) for x in ssim],
                    **{k: [mean(x) for x in v] for k, v in dyn.items()},
                    "window_end_in_training_lengths": [z / cfg.data.frames for _, z in windows]},
        "num_videos": len(idx), "context": m, "length": length, "sampler": cfg.sampling.sampler,
        "preset": cfg.sampling.preset, "steps": cfg.sampling.steps, "nfe": nfe, "step": int(run.step),
        "seconds_per_generated_frame": gen_seconds / max(1, (length - m) * len(idx)),
        "psnr_cap_db": PSNR_CAP,
    }


def eval_mode(cfg, workdir):
    """`--mode=eval`: evaluate_run, then `<workdir>/eval/<protocol>.json` and a PNG of FVD by horizon."""
    from maskflow_jax.eval import plot, protocols  # noqa: PLC0415

    res = evaluate_run(cfg, workdir)
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    name = cfg.eval.protocol
    path = protocols.write_result(os.path.join(out, f"{name}.json"), res)
    h = res["horizon"]
    ends = [z for _, z in h["windows"]]
    plot.plot_curves(os.path.join(out, f"{name}_fvd.png"), {"MaskFlow": (ends, h["fvd"])},
                     title=f"FVD per {cfg.eval.fvd_frames}-frame window ({name} protocol, {res['num_videos']} "
                           f"videos, {res['context']} context frames)",
                     xlabel="last frame of the window", ylabel="FVD")
    print(f"{name}: whole-clip FVD {res['whole_clip']['fvd']:.1f}; per window "
          + ", ".join(f"[{a},{z}) {v:.1f}" for (a, z), v in zip(h["windows"], h["fvd"])) + f"\nresults: {path}")
    return res
