"""FVD per horizon: the one evaluation of a trained run, behind REPORT.md, `--mode=eval` and `--mode=efficiency`.

For the first `eval.num_videos` held-out videos (data/heldout.py) the run continues the first m real
frames of each to L frames; the baselines of `eval.baselines` are built from the same videos; each
method's clips are scored against the real clips of the same frames under `eval.protocol`
(eval/protocols.py: frames per clip F, resolution, reference set, context), with FVD and KVD on I3D
features, motion and contrast (eval/metrics.py), and PSNR / SSIM against the real frames:

* per-horizon protocols (maze, maskflow): for every horizon H in `eval.horizons` x data.frames, the
  window is the last F frames of the first H, [H - F, H), moved to [m, m + F) where it would hold
  context frames, so that no window scores the copied context (m = sampling.context; the release's
  "first 16 frames" clip with m = 35 holds nothing else). L is the last window's end. Rollouts are
  chunk-wise, so a shorter horizon is a prefix of the longest: one generation serves every horizon.
* whole-video protocols (teco, fvd2048_16f, fvd2048_128f): one clip, all L frames. teco gives the
  generator 36 real frames (the rollout conditions on their last min(36, sampling.context), so a
  36-frame window still has room to generate) and scores videos whose first 36 frames are the real
  ones, as TECO does; the StyleGAN-V protocols generate from nothing (m = 0), a first window and then
  chunk-wise from its last sampling.context frames.

Videos stream in batches of `eval.batch_size`. FVD is computed per group of the protocol's
`group_size` videos (teco: 256; else one group of all) and per seed of `eval.seeds`, and reported as
the mean and standard deviation over groups and seeds. When the held-out videos are shorter than L
(per-horizon protocols only), windows past their end are compared with their last F real frames
(`reference_window` of each row). Methods: "MaskFlow" (the run) and the baselines: the frozen last
context frame, the untrained denoiser (inference.untrained_run) and the tokenizer's reconstruction of
the reference frames (the ceiling; omitted where the reference already is that reconstruction).
Shapes: N videos, L frames, h x w tokens, H x W pixels, D features.
"""

import jax
import numpy as np

from maskflow_jax import inference
from maskflow_jax.data import heldout
from maskflow_jax.eval import i3d, metrics, protocols, resample
from maskflow_jax.eval.fvd import FeatureStats, frechet_distance, stats_kernel_distance

PSNR_CAP = 100.0  # dB; identical frames (+inf) count as this in the means
FROZEN, UNTRAINED, RECONSTRUCTION = (protocols.BASELINES[k] for k in ("frozen", "untrained", "reconstruction"))


def plan(cfg):
    """(m, L, F, windows [(horizon, start, end)]) of cfg.eval.protocol for this config (see the module doc)."""
    p = protocols.get_protocol(cfg.eval.protocol)
    f = protocols.clip_frames(p, cfg.eval.fvd_frames)
    m = cfg.sampling.context if p.context is None else p.context
    if p.length is not None:
        return m, p.length, f, [(p.length, 0, p.length)]
    windows = []
    for k in cfg.eval.horizons:
        start = max(k * cfg.data.frames - f, m)
        windows.append((k * cfg.data.frames, start, start + f))
    return m, max(z for _, _, z in windows), f, windows


def methods(cfg):
    """The method names scored, the model's first."""
    p = protocols.get_protocol(cfg.eval.protocol)
    m = plan(cfg)[0]
    skip = {"reconstruction"} if p.reconstructed_reference else set()
    if m == 0:
        skip.add("frozen")  # no context frame to freeze
    return [protocols.MODEL] + [protocols.BASELINES[b] for b in cfg.eval.baselines if b not in skip]


def generate(cfg, run, rng, tokens, actions, context, length, warm_up=False):
    """Token videos (n, length, h, w) continuing the first `context` frames of `tokens` (n, >= context, h, w)
    with the sampler of cfg.sampling, and the rollout info plus "ends": the frames the video holds after
    each chunk. warm_up: first compiles the chunk step on one chunk, so the timing excludes compilation."""
    s, window = cfg.sampling, cfg.data.frames
    kw = dict(stride=s.stride, sampler=s.sampler, steps=s.steps, decode=False)
    n, ends = len(tokens), []

    def acts(a, z):
        return None if actions is None else actions[:, a:z]

    def track(start):
        def callback(_, new):
            ends.append((ends[-1] if ends else start) + new.shape[1])

        return callback

    if context == 0:  # from nothing: one whole window, then chunk-wise from its last sampling.context frames
        first_len = min(length, window)
        one = dict(kw, stride=window, window=window)  # the first window is always T_w frames
        if warm_up:
            run.generate(rng, context=0, num_frames=first_len, batch_size=n, actions=acts(0, first_len), **one)
        first, info = run.generate(
            rng, context=0, num_frames=first_len, batch_size=n, actions=acts(0, first_len), callback=track(0), **one
        )
        if first_len == length:
            return np.asarray(first), dict(info, ends=ends)
        keep = window - s.context
        rest, more = run.generate(
            jax.random.fold_in(rng, 1),
            context_tokens=first[:, keep:],
            context=s.context,
            num_frames=length - keep,
            actions=acts(keep, length),
            callback=track(window),
            **kw,
        )
        info = {k: info[k] + more[k] for k in ("nfe", "chunks", "seconds")}
        return np.concatenate([np.asarray(first)[:, :keep], np.asarray(rest)], axis=1), dict(info, ends=ends)
    m = min(context, s.context)  # the rollout conditions on the last m of the given frames
    offset = context - m
    ctx = np.asarray(tokens)[:, offset:context]
    if warm_up:
        run.generate(rng, context_tokens=ctx, context=m, num_frames=m + 1, actions=acts(offset, offset + m + 1), **kw)
    out, info = run.generate(
        rng,
        context_tokens=ctx,
        context=m,
        num_frames=length - offset,
        actions=acts(offset, length),
        callback=track(context),
        **kw,
    )
    return np.concatenate([np.asarray(tokens)[:, :offset], np.asarray(out)], axis=1), dict(info, ends=ends)


def _prefix(info, end):
    """(chunks, NFE) the rollout spent until its video held `end` frames (every chunk of the fixed-step
    samplers costs the same); (None, None) when the chunk ends are unknown."""
    ends = info.get("ends") or []
    if not ends or not info.get("chunks"):
        return None, None
    chunks = next((i + 1 for i, e in enumerate(ends) if e >= end), len(ends))
    return chunks, info["nfe"] * chunks // info["chunks"]


def _select(cfg, workdir, p, m, length, f):
    """(held-out video indices, frames read per video) for the evaluation."""
    try:
        return heldout.indices(cfg, workdir, cfg.eval.num_videos, length), length
    except ValueError:
        if p.length is not None or cfg.model.get("action_cond", False):
            raise  # a whole-video protocol, or actions for every generated frame, need full-length videos
    idx = heldout.indices(cfg, workdir, cfg.eval.num_videos, m + f)
    tok, _ = heldout.sources(cfg, workdir)
    return idx, min(length, min(tok.lengths[i] for i in idx))


class _Accumulator:
    """Per-video values of one (window, method), kept as lists of arrays; mean() over all."""

    def __init__(self):
        self.values = {}

    def add(self, key, values):
        self.values.setdefault(key, []).append(np.asarray(values, np.float64))

    def mean(self, key):
        return float(np.concatenate(self.values[key]).mean()) if key in self.values else None


def evaluate(cfg, workdir, *, run=None, feature_fn=None, reference_cache=None):
    """Scores the run in `workdir` under cfg.eval (see the module doc); returns a dict:

    rows: one per (horizon, method): horizon, window [a, z), reference_window, method, fvd (mean over
      groups and seeds), fvd_std, fvd_values, kvd (mean; None past fvd.MAX_KEPT videos), motion,
      contrast, psnr, ssim (of the window's generated frames; None where no real frames), num_videos
      (per FVD), and for the model chunks, nfe (to the window's end), seconds_per_frame (sampling only,
      compilation excluded);
    real_dynamics: motion and contrast of the real clips of every window;
    record: protocols.describe() plus context, length, windows, num_videos, groups, sampler settings, step;
    features: {(method or resample.REFERENCE, horizon): (N, D)} of the first seed (None past MAX_KEPT);
    example: the model's first video, uint8 (L, H, W, 3), and example_real: the held-out video it continues
      (uint8, up to L frames). `features`, `example` and `example_real` are not JSON.

    run: an inference.Run (default load_run(workdir) with eval.use_ema). feature_fn: uint8 (n, F, H, W, 3)
    -> (n, D), default the I3D at the protocol's resolution (tests pass a cheap one). reference_cache: a
    dict kept across calls on the same videos and feature_fn (--mode=efficiency) to reuse real-clip features.
    """
    e = cfg.eval
    p = protocols.get_protocol(e.protocol)
    m, length, f, windows = plan(cfg)
    run = run or inference.load_run(workdir, cfg=cfg, use_ema=e.use_ema)
    decode_rule = getattr(run.tokenizer, "decode_uint8", None)
    protocols.check_decode_rule(p, decode_rule)  # before any generation
    names = methods(cfg)
    idx, real_len = _select(cfg, workdir, p, m, length, f)
    group = p.group_size if p.group_size and len(idx) >= p.group_size else len(idx)
    idx = idx[: len(idx) // group * group]  # whole groups only
    spans = [(a, z) if z <= real_len else (real_len - f, real_len) for _, a, z in windows]
    fn = feature_fn or i3d.make_feature_fn(weights=e.i3d_weights, resolution=p.resolution)
    actions = heldout.actions(cfg, workdir, idx, length)
    untrained = inference.untrained_run(run) if UNTRAINED in names else None
    cache = {} if reference_cache is None else reference_cache
    stats, refs = {}, {}  # (seed, group, window, method) / (group, span) -> FeatureStats
    acc, real_acc = _Accumulator(), _Accumulator()
    bs, seconds, info, example, example_real = e.batch_size, 0.0, None, None, None

    def features(clips, key=None, memo=None):
        if memo is not None and key in memo:
            return memo[key]
        out = protocols.clip_features(clips, fn, bs)
        if memo is not None:
            memo[key] = out
        return out

    def update(key, feats, groups):
        for g in np.unique(groups):
            stats.setdefault(key[:1] + (int(g),) + key[1:], FeatureStats()).update(feats[groups == g])

    for si, seed in enumerate(e.seeds):
        key = jax.random.key(seed)
        for b, (tok, real) in enumerate(heldout.batches(cfg, workdir, idx, real_len, bs)):
            lo = b * bs
            groups = np.arange(lo, lo + len(tok)) // group
            act = None if actions is None else actions[lo : lo + len(tok)]
            rng = jax.random.fold_in(key, b)
            gen, info_b = generate(cfg, run, rng, tok, act, m, length, warm_up=si == 0 and b == 0)
            seconds += info_b["seconds"]
            info = info_b
            videos = {protocols.MODEL: run.tokenizer.decode(gen)}
            if untrained is not None:
                videos[UNTRAINED] = run.tokenizer.decode(generate(cfg, untrained, rng, tok, act, m, length)[0])
            if FROZEN in names:
                ctx = run.tokenizer.decode(tok[:, :m])
                videos[FROZEN] = np.concatenate([ctx, np.repeat(ctx[:, -1:], length - m, axis=1)], axis=1)
            if p.real_context:  # as TECO scores them: the given real frames in place of the generated ones
                videos = {k: np.concatenate([real[:, :m], v[:, m:]], axis=1) for k, v in videos.items()}
            if example is None:
                example = videos[protocols.MODEL][0]
                example_real = np.asarray(real[0, :length])
            recon = {}
            for span in set(spans):
                if RECONSTRUCTION in names or p.reconstructed_reference:
                    recon[span] = np.asarray(run.tokenizer.decode(tok[:, span[0] : span[1]]))
                    if p.real_context and span[0] < m:
                        recon[span] = np.concatenate([real[:, span[0] : m], recon[span][:, m - span[0] :]], axis=1)
                if si == 0:
                    ref_key = (p.name, tuple(idx[lo : lo + len(tok)]), span)
                    clips = recon[span] if p.reconstructed_reference else real[:, span[0] : span[1]]
                    feats = features(clips, ref_key, cache)
                    for g in np.unique(groups):
                        refs.setdefault((int(g), span), FeatureStats()).update(feats[groups == g])
            frozen_memo = {}
            for w, ((_, a, z), span) in enumerate(zip(windows, spans)):
                for name in names:
                    clip = recon[span] if name == RECONSTRUCTION else videos[name][:, a:z]
                    memo = frozen_memo if name == FROZEN else None  # the same clip wherever a >= m
                    feats = features(clip, (min(a - m, 0), z - a), memo)
                    update((si, w, name), feats, groups)
                    acc.add((w, name, "motion"), metrics.motion(clip))
                    acc.add((w, name, "contrast"), metrics.contrast(clip))
                    new = max(a, m)  # PSNR / SSIM on the window's generated frames only
                    if z <= real_len and name != RECONSTRUCTION and new < z:
                        fake_new, real_new = videos[name][:, new:z], real[:, new:z]
                        acc.add(
                            (w, name, "psnr"),
                            np.minimum(np.asarray(metrics.psnr(fake_new, real_new)), PSNR_CAP).mean(1),
                        )
                        acc.add((w, name, "ssim"), np.asarray(metrics.ssim(fake_new, real_new)).mean(1))
                if si == 0 and z <= real_len:
                    real_acc.add((w, "motion"), metrics.motion(real[:, a:z]))
                    real_acc.add((w, "contrast"), metrics.contrast(real[:, a:z]))
    groups_n = len(idx) // group
    rows = []
    for w, ((h, a, z), span) in enumerate(zip(windows, spans)):
        for name in names:
            pairs = [(refs[(g, span)], stats[(si, g, w, name)]) for si in range(len(e.seeds)) for g in range(groups_n)]
            fvds = [frechet_distance(r.mean, r.cov, x.mean, x.cov) for r, x in pairs]
            kvds = [stats_kernel_distance(r, x) for r, x in pairs]
            row = {
                "horizon": h,
                "window": [a, z],
                "reference_window": list(span),
                "method": name,
                "fvd": float(np.mean(fvds)),
                "fvd_std": float(np.std(fvds, ddof=1)) if len(fvds) > 1 else 0.0,
                "fvd_values": fvds,
                "kvd": None if None in kvds else float(np.mean(kvds)),
                "num_videos": group,
                "chunks": None,
                "nfe": None,
                "seconds_per_frame": None,
                **{k: acc.mean((w, name, k)) for k in ("motion", "contrast", "psnr", "ssim")},
            }
            if name == protocols.MODEL:
                row["chunks"], row["nfe"] = _prefix(info, z)
                row["seconds_per_frame"] = seconds / max(1, (length - m) * len(idx) * len(e.seeds))
            rows.append(row)
    real_dynamics = [
        {
            "horizon": h,
            "window": [a, z],
            "motion": real_acc.mean((w, "motion")),
            "contrast": real_acc.mean((w, "contrast")),
        }
        for w, (h, a, z) in enumerate(windows)
        if z <= real_len
    ]
    features = {}
    for w, ((h, _, _), span) in enumerate(zip(windows, spans)):
        features[(resample.REFERENCE, h)] = _merged([refs[(g, span)] for g in range(groups_n)])
        for name in names:
            features[(name, h)] = _merged([stats[(0, g, w, name)] for g in range(groups_n)])
    record = protocols.describe(
        p,
        custom_features=feature_fn is not None,
        use_ema=e.use_ema,
        seeds=list(e.seeds),
        decode_uint8=decode_rule,
        frames=f,
        actions=actions is not None,
        reference=(
            f"{p.reference}; here from split {cfg.data.eval_split!r}"
            + (" through the run's tokenizer (its token cache)" if p.reconstructed_reference else "")
        ),
    )
    s = cfg.sampling
    record.update(
        context=m,
        length=length,
        windows=[list(x) for x in windows],
        num_videos=len(idx),
        groups=groups_n,
        real_length=real_len,
        sampler=s.sampler,
        steps=s.steps,
        stride=s.stride,
        rollout_window=s.get("window", 0) or cfg.data.frames,
        rollout_context=min(m, s.context) if m else s.context,
        step=int(run.step),
        methods=names,
    )
    return {
        "record": record,
        "rows": rows,
        "real_dynamics": real_dynamics,
        "features": None if any(v is None for v in features.values()) else features,
        "example": example,
        "example_real": example_real,
    }


def _merged(parts):
    """The raw features of FeatureStats parts concatenated (None once any part dropped them)."""
    out = FeatureStats()
    for s in parts:
        out.merge(s)
    return out.features


def to_json(result):
    """The JSON-able part of evaluate()'s result (without `features`, `example` and `example_real`)."""
    return {k: v for k, v in result.items() if k not in ("features", "example", "example_real")}
