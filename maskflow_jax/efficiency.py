"""`--mode=efficiency`: the paper's sampling-efficiency analysis on a finished run (docs/method.md §6, §7).

Run it after the pipeline: `python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze
--mode=efficiency`. It loads the run (EMA weights by default), takes the first
`eval.efficiency.num_videos` held-out videos, and measures:

1. FVD against NFE. Videos of L = max(T_w, 16) frames (one training window T_w = data.frames, or
   enough windows for one 16-frame FVD clip) are generated from the run's rollout geometry
   (m = sampling.context real frames, stride sampling.stride) with the MGM sampler at every S in
   `eval.efficiency.mgm_steps` and the FM sampler at every S in `eval.efficiency.fm_steps`.
   NFE = network evaluations per video, summed over its chunks, as the rollout reports them.
2. Full-sequence vs autoregressive generation at `eval.efficiency.lengths` x T_w frames, with the
   run's sampler and steps. The two modes are the paper's (docs/method.md §7 "settings that reproduce the
   paper's NFE counts", and the `chunk` / `ar` presets of configs/base.py):
   * "full sequence": m = 2, s = T_w - m. Every chunk generates a whole training window of new
     frames at once (all of its masked frames are unmasked together), and the last 2 frames become
     the next window's context: the paper's 60 / 120 / 240 NFE at 2x / 5x / 10x on FFS.
   * "autoregressive": m = T_w - 1, s = 1. Every chunk generates one new frame from the T_w - 1
     frames before it: 340 / 1300 / 2900 NFE on FFS.
   Beyond the training window, "full sequence" does NOT mean one window of the whole length: the
   denoiser was trained on T_w-frame windows only (its temporal attention and positional embedding
   never saw longer ones), and neither the release nor docs/method.md §12 generates longer windows; so a long
   full-sequence video is made of full windows chained chunk-wise.

FVD (maze protocol, I3D): the last 16 frames of every generated video against the same 16 frames of
the held-out videos, with KVD on the same features and the clips' motion and contrast (grey levels,
eval/metrics.py; the real clips' too), which show blur and freezing that a small-sample FVD rewards.
The number of videos is printed beside every FVD; with few videos FVD is biased upward, so compare
rows with each other only. Seconds per generated frame: the rollout's
sampling time / ((L - m) x videos); compilation is excluded (one warm-up chunk per sampler and steps
runs first) and so is tokenizer decoding.

Writes `<workdir>/eval/efficiency.json`, `<workdir>/eval/efficiency_fvd_nfe.png`, and a
"## Sampling efficiency" section in `<workdir>/REPORT.md` (replaced, not duplicated, on rerun).
"""
import os

import jax

from maskflow_jax import evaluate, inference
from maskflow_jax.eval import metrics
from maskflow_jax.pipeline import WINDOW, cell

BEGIN, END = "<!-- efficiency:begin -->", "<!-- efficiency:end -->"
PLOT = "efficiency_fvd_nfe.png"


def check_finished(workdir):
    """Raises FileNotFoundError naming the fix unless the run has a denoiser checkpoint and a REPORT.md."""
    ckpt = os.path.join(workdir, "checkpoints")
    missing = []
    if not (os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):
        missing.append(f"a denoiser checkpoint in {ckpt}")
    if not os.path.exists(os.path.join(workdir, "REPORT.md")):
        missing.append(f"{os.path.join(workdir, 'REPORT.md')}")
    if missing:
        raise FileNotFoundError(
            f"--mode=efficiency needs a finished run, but {' and '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} missing: run the pipeline "
            f"first (python -m maskflow_jax.main --config=configs/maze.py[:variant] --workdir={workdir}), then rerun "
            "with --mode=efficiency")


def _generate(run, seed, ctx, length, *, context, stride, sampler, steps, warmed, actions=None):
    """Token videos (N, length, h, w) and the rollout info; a warm-up chunk compiles the chunk step of
    (sampler, steps, batch) first (every chunk has the same shapes), so timings exclude compilation.
    actions: int (N, >= length) for an action-conditioned run, else None."""
    kw = dict(context=context, stride=stride, sampler=sampler, steps=steps, decode=False)

    def act(n):
        return None if actions is None else actions[:, :n]

    if (sampler, steps, len(ctx)) not in warmed:
        run.generate(jax.random.key(seed), context_tokens=ctx, num_frames=context + 1, actions=act(context + 1), **kw)
        warmed.add((sampler, steps, len(ctx)))
    return run.generate(jax.random.key(seed), context_tokens=ctx, num_frames=length, actions=act(length), **kw)


def _row(run, protocols, reference, tokens, info, fvd_kw, **fields):
    """One result row: FVD / KVD, motion and contrast of the decoded last WINDOW frames (FVD against the
    reference stats)."""
    clips = run.tokenizer.decode(tokens[:, -WINDOW:])
    res = protocols.evaluate_fvd("maze", reference, clips, **fvd_kw)
    n, length = tokens.shape[:2]
    row = dict(fields, length=length, chunks=info["chunks"], nfe=info["nfe"], fvd=res["fvd"], kvd=res["kvd"],
               **metrics.dynamics(clips), num_videos=res["num_fake"],
               seconds_per_frame=info["seconds"] / ((length - fields["context"]) * n))
    print(f"[efficiency] {row['label']} S={row['steps']} L={length}: {row['chunks']} chunks, NFE {row['nfe']}, "
          f"FVD {row['fvd']:.1f} ({row['num_videos']} videos), {row['seconds_per_frame']:.4f} s / frame", flush=True)
    return row


def efficiency_rows(cfg, workdir, *, feature_fn=None, run=None):
    """(sweep rows, length rows, settings) of the analysis (see the module docstring).

    feature_fn: uint8 (n, 16, H, W, 3) -> (n, D), default the I3D (tests pass a cheap one).
    run: an inference.Run (default load_run(workdir)).
    """
    from maskflow_jax.eval import i3d, protocols  # noqa: PLC0415

    e, s, t_w = cfg.eval.efficiency, cfg.sampling, cfg.data.frames
    sweep_len = max(t_w, WINDOW)
    lengths = [k * t_w for k in e.lengths]
    if min(lengths) < WINDOW:
        raise ValueError(f"config.eval.efficiency.lengths={tuple(e.lengths)} x data.frames={t_w} gives videos "
                         f"shorter than the {WINDOW}-frame FVD clip: use multiples >= {-(-WINDOW // t_w)}")
    run = run or inference.load_run(workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    feature = "custom feature_fn" if feature_fn is not None else protocols.I3D_FEATURE
    feature_fn = feature_fn or i3d.make_feature_fn(weights=cfg.eval.i3d_weights)
    fvd_kw = dict(feature_fn=feature_fn, use_ema=cfg.eval.use_ema, batch_size=cfg.eval.batch_size)
    longest = max([sweep_len] + lengths)
    real_tokens, real_pixels, actions = evaluate.heldout(cfg, workdir, e.num_videos, longest)
    refs, real_dynamics, warmed = {}, {}, set()

    def reference(length):  # feature statistics of the real frames [length - WINDOW, length), computed once
        if length not in refs:
            clips = real_pixels[:, length - WINDOW:length]
            refs[length] = protocols.video_stats("maze", clips, feature_fn=feature_fn, batch_size=cfg.eval.batch_size)
            real_dynamics[length] = metrics.dynamics(clips)
        return refs[length]

    sweep = []
    for sampler, steps_list in (("mgm", e.mgm_steps), ("fm", e.fm_steps)):
        for steps in steps_list:
            tok, info = _generate(run, cfg.seed, real_tokens[:, :s.context], sweep_len, context=s.context,
                                  stride=s.stride, sampler=sampler, steps=steps, warmed=warmed,
                                  actions=actions)
            sweep.append(_row(run, protocols, reference(sweep_len), tok, info, fvd_kw, label=sampler.upper(),
                              sampler=sampler, steps=steps, context=s.context, stride=s.stride, feature=feature))
    modes = {"full sequence": (2, t_w - 2), "autoregressive": (t_w - 1, 1)}  # (m, s): configs/base.py chunk / ar
    by_length = []
    for length in lengths:
        for mode, (m, stride) in modes.items():
            tok, info = _generate(run, cfg.seed, real_tokens[:, :m], length, context=m, stride=stride,
                                  sampler=s.sampler, steps=s.steps, warmed=warmed, actions=actions)
            by_length.append(_row(run, protocols, reference(length), tok, info, fvd_kw, label=mode, mode=mode,
                                  multiple=length / t_w, sampler=s.sampler, steps=s.steps, context=m, stride=stride,
                                  feature=feature))
    settings = {"window": t_w, "sweep_length": sweep_len, "fvd_frames": WINDOW, "num_videos": len(real_tokens),
                "step": int(run.step), "use_ema": bool(cfg.eval.use_ema), "seed": cfg.seed,
                "feature": feature,
                "real_dynamics": [{"length": k, **v} for k, v in sorted(real_dynamics.items())]}
    return sweep, by_length, settings


def report_section(sweep, by_length, settings):
    """The markdown of the REPORT.md section, between BEGIN / END markers."""
    st = settings
    first = (sweep or by_length)[0]
    lines = [BEGIN, "## Sampling efficiency", "",
             f"`--mode=efficiency` on denoiser step {st['step']} ({'EMA' if st['use_ema'] else 'raw'} weights). FVD: "
             f"the last {st['fvd_frames']} frames of each generated video against the same frames of "
             f"{st['num_videos']} held-out videos ({st['feature']}). **Small-sample FVD is biased upward** (and "
             "its covariance is singular below a few hundred videos): compare the rows with each other, not with "
             "published numbers. KVD: the unbiased kernel distance on the same features (eval/fvd.py), "
             "no small-sample bias but a large variance. Motion / contrast: mean absolute change between consecutive "
             "frames / per-frame pixel standard deviation of the same clips, in grey levels (blur lowers both, a "
             "frozen video has motion 0). s / generated frame: sampling wall-clock per new frame, without "
             "compilation and tokenizer decoding.", "",
             f"### FVD against NFE ({st['sweep_length']}-frame videos from {first['context']} context frames, "
             f"stride {first['stride']}, window {st['window']})", "",
             "| sampler | steps | chunks | NFE | FVD | KVD | motion | contrast | num videos | s / generated frame |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['steps']} | {r['chunks']} | {r['nfe']} | {r['fvd']:.1f} | "
              f"{cell(r, 'kvd', '.1f')} | {cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | "
              f"{r['num_videos']} | {r['seconds_per_frame']:.4f} |" for r in sweep]
    real = {d["length"]: d for d in st.get("real_dynamics", [])}
    if st["sweep_length"] in real:
        d = real[st["sweep_length"]]
        lines += ["", f"Real held-out clips (the same frames): motion {d['motion']:.1f}, contrast {d['contrast']:.1f}."]
    lines += ["", f"![FVD against NFE](eval/{PLOT})", "",
              f"### Full-sequence vs autoregressive generation (window {st['window']})", "",
              "Full sequence: m = 2 context frames, stride T_w - 2 (whole windows chained chunk-wise); "
              "autoregressive: m = T_w - 1, stride 1 (one new frame per window).", "",
              "| mode | length | x training clip | sampler | steps | m | stride | chunks | NFE | FVD | KVD "
              "| motion | contrast | num videos | s / generated frame |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['length']} | {r['multiple']:g} | {r['sampler'].upper()} | {r['steps']} | "
              f"{r['context']} | {r['stride']} | {r['chunks']} | {r['nfe']} | {r['fvd']:.1f} | "
              f"{cell(r, 'kvd', '.1f')} | {cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | "
              f"{r['num_videos']} | {r['seconds_per_frame']:.4f} |" for r in by_length]
    if real:
        lines += ["", "Real held-out clips (the same frames): " + "; ".join(
            f"length {k}: motion {d['motion']:.1f}, contrast {d['contrast']:.1f}" for k, d in sorted(real.items())
            if any(r["length"] == k for r in by_length)) + "."]
    lines += ["", "Raw numbers: `eval/efficiency.json`.", END]
    return "\n".join(lines)


def update_report(path, section):
    """Appends `section` to the report, or replaces the one already there (idempotent)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def efficiency_mode(cfg, workdir, *, feature_fn=None, run=None):
    """`--mode=efficiency`: rows -> eval/efficiency.json, eval/efficiency_fvd_nfe.png, REPORT.md section."""
    from maskflow_jax.eval import plot, protocols  # noqa: PLC0415

    check_finished(workdir)
    sweep, by_length, settings = efficiency_rows(cfg, workdir, feature_fn=feature_fn, run=run)
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    result = {"settings": settings, "fvd_vs_nfe": sweep, "by_length": by_length}
    json_path = protocols.write_result(os.path.join(out, "efficiency.json"), result)
    curves = {f"{name} ({settings['num_videos']} videos)": ([r["nfe"] for r in sweep if r["sampler"] == key],
                                                           [r["fvd"] for r in sweep if r["sampler"] == key])
              for key, name in (("mgm", "MGM"), ("fm", "FM")) if any(r["sampler"] == key for r in sweep)}
    plot.plot_curves(os.path.join(out, PLOT), curves,
                     title=f"FVD vs NFE ({settings['sweep_length']}-frame videos, {settings['num_videos']} videos; "
                           "small-sample FVD is biased)", xlabel="NFE per video", ylabel="FVD")
    update_report(os.path.join(workdir, "REPORT.md"), report_section(sweep, by_length, settings))
    print(f"efficiency: {json_path}, {os.path.join(out, PLOT)}, section in {os.path.join(workdir, 'REPORT.md')}")
    return result
