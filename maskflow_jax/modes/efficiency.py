"""`--mode=efficiency`: the paper's sampling-efficiency analysis on a finished run (docs/method.md §6, §7).

Run it after the pipeline: `python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze
--mode=efficiency`. It loads the run (EMA weights by default), takes the first
`eval.efficiency.num_videos` held-out videos, and measures:

1. FVD against NFE. Videos of one horizon of k x T_w frames (k the fewest training windows T_w =
   data.frames that hold one F-frame FVD clip) are generated from the run's rollout geometry
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

Every row is one call of the evaluation of REPORT.md and `--mode=eval` (eval/horizons.py) with the
row's sampler settings and one horizon, without baselines: FVD under config.eval.protocol (a
per-horizon protocol: maze, maskflow) of the F-frame clip that ends at the horizon, with KVD on the
same features and the clips' motion and contrast (grey levels, eval/metrics.py; the real clips' too),
which show blur and freezing that a small-sample FVD rewards. The real clips' features are computed
once. The number of videos is printed beside every FVD; with few videos FVD is biased upward, so
compare rows with each other only. Seconds per generated frame: the rollout's sampling time /
((L - m) x videos); compilation is excluded (a warm-up chunk runs first) and so is tokenizer decoding.

Writes `<workdir>/eval/efficiency.json`, `<workdir>/eval/efficiency_fvd_nfe.png`, and a
"## Sampling efficiency" section in `<workdir>/REPORT.md` (replaced, not duplicated, on rerun).
"""

import os

import ml_collections

from maskflow_jax import files, inference
from maskflow_jax.eval import horizons, plot, protocols
from maskflow_jax.report import cell

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
            "with --mode=efficiency"
        )


def _row(cfg, workdir, run, feature_fn, cache, horizon, label, sampling, **fields):
    """One result row: eval/horizons.evaluate at one horizon (`horizon` x data.frames) with `sampling` overrides."""
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.sampling.update(sampling)
    c.eval.horizons, c.eval.num_videos, c.eval.baselines = (horizon,), cfg.eval.efficiency.num_videos, ()
    res = horizons.evaluate(c, workdir, run=run, feature_fn=feature_fn, reference_cache=cache)
    (r,) = res["rows"]
    row = dict(
        fields,
        label=label,
        sampler=c.sampling.sampler,
        steps=c.sampling.steps,
        context=c.sampling.context,
        stride=c.sampling.stride,
        feature=res["record"]["feature"],
        length=r["window"][1],
        window=r["window"],
        **{k: r[k] for k in ("chunks", "nfe", "fvd", "kvd", "motion", "contrast", "num_videos", "seconds_per_frame")},
    )
    print(
        f"[efficiency] {label} S={row['steps']} L={row['length']}: {row['chunks']} chunks, NFE {row['nfe']}, "
        f"FVD {row['fvd']:.1f} ({row['num_videos']} videos), {row['seconds_per_frame']:.4f} s / frame",
        flush=True,
    )
    return row, res["real_dynamics"]


def efficiency_rows(cfg, workdir, *, feature_fn=None, run=None):
    """(sweep rows, length rows, settings) of the analysis (see the module docstring).

    feature_fn: uint8 (n, F, H, W, 3) -> (n, D), default the I3D (tests pass a cheap one).
    run: an inference.Run (default load_run(workdir)).
    """
    e, t_w = cfg.eval.efficiency, cfg.data.frames
    p = protocols.get_protocol(cfg.eval.protocol)
    if p.length is not None:
        raise ValueError(
            f"--mode=efficiency varies the video length, but config.eval.protocol={p.name!r} fixes it "
            f"to {p.length} frames: use a per-horizon protocol (--config.eval.protocol=maskflow or maze)"
        )
    f = protocols.clip_frames(p, cfg.eval.fvd_frames)
    if min(e.lengths) * t_w < f:
        raise ValueError(
            f"config.eval.efficiency.lengths={tuple(e.lengths)} x data.frames={t_w} gives videos "
            f"shorter than the {f}-frame FVD clip: use multiples >= {-(-f // t_w)}"
        )
    run = run or inference.load_run(workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    sweep_multiple = -(-f // t_w)
    cache, real = {}, {}
    sweep = []
    for sampler, steps_list in (("mgm", e.mgm_steps), ("fm", e.fm_steps)):
        for steps in steps_list:
            row, dyn = _row(
                cfg,
                workdir,
                run,
                feature_fn,
                cache,
                sweep_multiple,
                sampler.upper(),
                {"sampler": sampler, "steps": steps},
            )
            sweep.append(row)
            real.update({d["window"][1]: d for d in dyn})
    modes = {"full sequence": (2, t_w - 2), "autoregressive": (t_w - 1, 1)}  # (m, s): configs/base.py chunk / ar
    by_length = []
    for k in e.lengths:
        for mode, (m, stride) in modes.items():
            row, dyn = _row(
                cfg, workdir, run, feature_fn, cache, k, mode, {"context": m, "stride": stride}, mode=mode, multiple=k
            )
            by_length.append(row)
            real.update({d["window"][1]: d for d in dyn})
    rows = sweep or by_length
    settings = {
        "window": t_w,
        "sweep_length": rows[0]["length"] if sweep else None,
        "fvd_frames": f,
        "num_videos": rows[0]["num_videos"],
        "step": int(run.step),
        "use_ema": bool(cfg.eval.use_ema),
        "protocol": p.name,
        "feature": rows[0]["feature"],
        "real_dynamics": [
            {"length": z, "motion": d["motion"], "contrast": d["contrast"]} for z, d in sorted(real.items())
        ],
    }
    return sweep, by_length, settings


def report_section(sweep, by_length, settings):
    """The markdown of the REPORT.md section, between BEGIN / END markers."""
    st = settings
    first = (sweep or by_length)[0]
    lines = [
        BEGIN,
        "## Sampling efficiency",
        "",
        f"`--mode=efficiency` on denoiser step {st['step']} ({'EMA' if st['use_ema'] else 'raw'} weights). FVD "
        f"({st['protocol']} protocol): the {st['fvd_frames']}-frame clip that ends each generated video (after "
        f"its context) against the same frames of {st['num_videos']} held-out videos ({st['feature']}). "
        "**Small-sample FVD is biased upward** (and "
        "its covariance is singular below a few hundred videos): compare the rows with each other, not with "
        "published numbers. KVD: the unbiased kernel distance on the same features (eval/fvd.py), "
        "no small-sample bias but a large variance. Motion / contrast: mean absolute change between consecutive "
        "frames / per-frame pixel standard deviation of the same clips, in grey levels (blur lowers both, a "
        "frozen video has motion 0). s / generated frame: sampling wall-clock per new frame, without "
        "compilation and tokenizer decoding.",
        "",
        f"### FVD against NFE ({st['sweep_length']}-frame videos from {first['context']} context frames, "
        f"stride {first['stride']}, window {st['window']})",
        "",
        "| sampler | steps | chunks | NFE | FVD | KVD | motion | contrast | num videos | s / generated frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} | {r['steps']} | {r['chunks']} | {r['nfe']} | {r['fvd']:.1f} | "
        f"{cell(r, 'kvd', '.1f')} | {cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | "
        f"{r['num_videos']} | {r['seconds_per_frame']:.4f} |"
        for r in sweep
    ]
    real = {d["length"]: d for d in st.get("real_dynamics", [])}
    if st["sweep_length"] in real:
        d = real[st["sweep_length"]]
        lines += ["", f"Real held-out clips (the same frames): motion {d['motion']:.1f}, contrast {d['contrast']:.1f}."]
    lines += [
        "",
        f"![FVD against NFE](eval/{PLOT})",
        "",
        f"### Full-sequence vs autoregressive generation (window {st['window']})",
        "",
        "Full sequence: m = 2 context frames, stride T_w - 2 (whole windows chained chunk-wise); "
        "autoregressive: m = T_w - 1, stride 1 (one new frame per window).",
        "",
        "| mode | length | x training clip | sampler | steps | m | stride | chunks | NFE | FVD | KVD "
        "| motion | contrast | num videos | s / generated frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['mode']} | {r['length']} | {r['multiple']:g} | {r['sampler'].upper()} | {r['steps']} | "
        f"{r['context']} | {r['stride']} | {r['chunks']} | {r['nfe']} | {r['fvd']:.1f} | "
        f"{cell(r, 'kvd', '.1f')} | {cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | "
        f"{r['num_videos']} | {r['seconds_per_frame']:.4f} |"
        for r in by_length
    ]
    if real:
        lines += [
            "",
            "Real held-out clips (the same frames): "
            + "; ".join(
                f"length {k}: motion {d['motion']:.1f}, contrast {d['contrast']:.1f}"
                for k, d in sorted(real.items())
                if any(r["length"] == k for r in by_length)
            )
            + ".",
        ]
    lines += ["", "Raw numbers: `eval/efficiency.json`.", END]
    return "\n".join(lines)


def update_report(path, section):
    """Appends `section` to the report, or replaces the one already there (idempotent)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    return files.write_text(path, text)


def run(cfg, workdir, *, feature_fn=None, loaded_run=None):
    """`--mode=efficiency`: rows -> eval/efficiency.json, eval/efficiency_fvd_nfe.png, REPORT.md section.

    feature_fn, loaded_run: as efficiency_rows' feature_fn and run (tests pass a cheap feature function).
    """
    check_finished(workdir)
    sweep, by_length, settings = efficiency_rows(cfg, workdir, feature_fn=feature_fn, run=loaded_run)
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    result = {"settings": settings, "fvd_vs_nfe": sweep, "by_length": by_length}
    json_path = protocols.write_result(os.path.join(out, "efficiency.json"), result)
    curves = {
        f"{name} ({settings['num_videos']} videos)": (
            [r["nfe"] for r in sweep if r["sampler"] == key],
            [r["fvd"] for r in sweep if r["sampler"] == key],
        )
        for key, name in (("mgm", "MGM"), ("fm", "FM"))
        if any(r["sampler"] == key for r in sweep)
    }
    plot.plot_curves(
        os.path.join(out, PLOT),
        curves,
        title=f"FVD vs NFE ({settings['sweep_length']}-frame videos, {settings['num_videos']} videos; "
        "small-sample FVD is biased)",
        xlabel="NFE per video",
        ylabel="FVD",
    )
    update_report(os.path.join(workdir, "REPORT.md"), report_section(sweep, by_length, settings))
    print(f"efficiency: {json_path}, {os.path.join(out, PLOT)}, section in {os.path.join(workdir, 'REPORT.md')}")
    return result
