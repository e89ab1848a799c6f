"""Named FVD protocols (docs/method.md §10, §12) and result records that say exactly what was measured.

maskflow:  the paper's evaluation without its lossy mp4 round trip: the reference set is VQ
           reconstructions (encode -> decode, a `reference_fn`) of training clips, one per video;
           FVD on the first 16 frames, videos at 256² before the I3D preprocessing. Decoded videos
           (reference and samples) use the release's uint8 rule trunc((x + 1) * 0.5 * 255)
           (config.tokenizer.decode_uint8 = "trunc"; tokenizer/api.py).
styleganv: 2,048 raw 16-frame training clips at 256² as the reference (StyleGAN-V).
teco:      DMLab at 64², 300-frame test videos, 36 real context frames, features over all 300.
maze:      the built-in data: held-out procedural maze videos (another seed) as the reference,
           16 frames at the native 64².

Videos arrive as iterables of uint8 batches (n, T, H, W, 3) (or one (N, T, H, W, 3) array), so
thousands of videos never sit in memory at once: only float64 feature statistics are kept.
FVD from few videos is biased upward (and with N < 400 the covariances are singular): compare
numbers only at equal counts and protocol.

Per-horizon curves (`fvd_per_horizon`): after m context frames, the generated frames are cut into
consecutive non-overlapping windows [m + k·F, m + (k+1)·F), k = 0, 1, … (F = 16), and each window
is compared with the real frames of the same span ("same", default; needs real videos as long as
the generated ones) or with the real frames [m, m + F) ("first", when real videos are short).
"""
import dataclasses
import json
import os
import subprocess
import time

import jax
import numpy as np

import maskflow_jax
from maskflow_jax.eval import i3d
from maskflow_jax.eval.fvd import FeatureStats, frechet_distance, stats_kernel_distance

WINDOWS = ("first", "center", "last")
I3D_FEATURE = "i3d-kinetics-400 (RGB) logits averaged over time"


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    frames: int  # F: frames per video fed to I3D
    window: str  # which F frames of each video: first | center | last
    resolution: int | None  # videos are resized to this square size first (None = as given)
    context: int | None  # m: real frames the generator is given (None = config.sampling.context)
    length: int | None  # frames per generated video (None = config.sampling.horizon)
    num_videos: int | None  # nominal videos per set (None = every video of the reference split)
    reference: str  # how the reference ("real") set is built
    needs_reference_fn: bool = False  # the reference is a transform (VQ reconstruction) of real clips
    decode_uint8: str | None = None  # uint8 rule decoded videos must use (tokenizer/api.py UINT8_RULES); None = any


PROTOCOLS = {
    "maskflow": Protocol("maskflow", 16, "first", 256, None, None, None,
                         "VQ reconstructions (tokenizer encode -> decode) of training clips, one per video",
                         needs_reference_fn=True, decode_uint8="trunc"),
    "styleganv": Protocol("styleganv", 16, "first", 256, 0, 16, 2048, "raw 16-frame training clips at 256x256"),
    "teco": Protocol("teco", 300, "first", 64, 36, 300, None,
                     "raw 300-frame test videos at 64x64 (the generator sees their first 36 frames)"),
    "maze": Protocol("maze", 16, "first", None, None, None, None,
                     "held-out procedural maze videos (generate_trajectories with another seed)"),
}


def get_protocol(protocol):
    """A Protocol from its name (config.eval.protocol) or the Protocol itself."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"config.eval.protocol={protocol!r} is unknown; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def select_window(videos, frames, window="first", start=None):
    """The `frames` frames (N, frames, H, W, 3) of videos (N, T, H, W, 3): first, center or last,
    or from frame `start` if given."""
    t = videos.shape[1]
    if t < frames:
        raise ValueError(f"videos have {t} frames; the protocol needs {frames} (generate longer videos)")
    if start is None:
        if window not in WINDOWS:
            raise ValueError(f"window={window!r}: expected one of {WINDOWS}")
        start = {"first": 0, "center": (t - frames) // 2, "last": t - frames}[window]
    if start < 0 or start + frames > t:
        raise ValueError(f"window [{start}, {start + frames}) is outside videos of {t} frames")
    return videos[:, start:start + frames]


def _batches(videos, batch_size):
    """Yields uint8 batches from an array (N, T, H, W, 3) or passes an iterable of batches through."""
    if isinstance(videos, np.ndarray) or isinstance(videos, jax.Array):
        videos = np.asarray(videos)
        for s in range(0, len(videos), batch_size):
            yield videos[s:s + batch_size]
        return
    for batch in videos:
        yield np.asarray(batch)


def _check_batch(batch, argument):
    if batch.ndim != 5 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"{argument} must yield uint8 videos (n, T, H, W, 3); got {batch.dtype} {batch.shape}")


def stream_stats(videos, windows, feature_fn, *, argument="videos", batch_size=4, transform=None,
                 max_videos=None, sharding=None):
    """One FeatureStats per window [(start, end)], streamed over uint8 video batches.

    transform: applied to each windowed batch before the features (e.g. VQ reconstruction).
    Batches are padded to `batch_size` (repeating the last video) so the feature fn compiles once.
    """
    stats = [FeatureStats() for _ in windows]
    seen = 0
    for batch in _batches(videos, batch_size):
        _check_batch(batch, argument)
        if max_videos is not None:
            batch = batch[:max_videos - seen]
        for start in range(0, len(batch), batch_size):
            part = batch[start:start + batch_size]
            n = len(part)
            for (lo, hi), s in zip(windows, stats):
                clip = select_window(part, hi - lo, start=lo)
                if transform is not None:
                    clip = np.asarray(transform(clip))
                    _check_batch(clip, "reference_fn's output")
                if n < batch_size:
                    clip = np.concatenate([clip, np.repeat(clip[-1:], batch_size - n, axis=0)])
                x = jax.device_put(clip, sharding) if sharding is not None else clip
                s.update(np.asarray(feature_fn(x))[:n])
        seen += len(batch)
        if max_videos is not None and seen >= max_videos:
            break
    return stats


def code_version():
    """maskflow_jax version and, when run from a git checkout, the commit (read-only)."""
    here = os.path.dirname(os.path.abspath(maskflow_jax.__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": maskflow_jax.__version__, "commit": commit}


def _feature_fn(protocol, variables, feature_fn):
    if feature_fn is not None:
        return feature_fn, "custom feature_fn"
    return i3d.make_feature_fn(variables, resolution=protocol.resolution), I3D_FEATURE


def video_stats(protocol, videos, *, reference_fn=None, variables=None, feature_fn=None, batch_size=4,
                max_videos=None, sharding=None, argument="videos"):
    """FeatureStats of uint8 videos under a protocol (its window, resolution and I3D features);
    pass the result as `real_videos` to evaluate_fvd to reuse a reference set."""
    p = get_protocol(protocol)
    fn, _ = _feature_fn(p, variables, feature_fn)
    (stats,) = stream_stats(_windowed(videos, p, argument), [(0, p.frames)], fn, argument=argument,
                            batch_size=batch_size, transform=reference_fn, max_videos=max_videos, sharding=sharding)
    return stats


def evaluate_fvd(protocol, real_videos, fake_videos, *, reference_fn=None,
                 real_is_reference=False, variables=None, feature_fn=None, use_ema=True, seeds=None,
                 batch_size=4, max_videos=None, sharding=None, notes=None, decode_uint8=None):
    """FVD of generated vs real videos under a named protocol; returns the result record (dict).

    real_videos / fake_videos: iterables of uint8 batches (n, T, H, W, 3) or arrays (N, T, H, W, 3);
        real_videos may also be a FeatureStats from video_stats (a cached reference set).
    reference_fn: uint8 (n, F, H, W, 3) -> uint8 reconstructions, applied to the real windows
        (required by `maskflow` unless real_is_reference=True: the real videos already are them).
    variables: I3D variables (default load_i3d_params()); feature_fn overrides the I3D (tests).
    use_ema, seeds, notes: recorded as given. max_videos caps each set.
    decode_uint8: the uint8 rule ("round" | "trunc") the decoded videos went through, recorded (None =
        not stated); a rule other than the protocol's (maskflow: "trunc") is an error.
    """
    p = get_protocol(protocol)
    check_decode_rule(p, decode_uint8)
    precomputed = isinstance(real_videos, FeatureStats)
    if p.needs_reference_fn and reference_fn is None and not (real_is_reference or precomputed):
        raise ValueError(f"protocol {p.name!r} compares with VQ reconstructions of the real clips: pass "
                         "reference_fn (uint8 clips -> decode(encode(clips))) or real_is_reference=True")
    if feature_fn is None and variables is None:
        variables = i3d.load_i3d_params()
    t0 = time.time()
    kw = dict(variables=variables, feature_fn=feature_fn, batch_size=batch_size, max_videos=max_videos,
              sharding=sharding)
    real_stats = real_videos if precomputed else video_stats(p, real_videos, reference_fn=reference_fn,
                                                            argument="real_videos", **kw)
    fake_stats = video_stats(p, fake_videos, argument="fake_videos", **kw)
    if reference_fn is not None:
        reference = f"{p.reference}; built here with reference_fn={getattr(reference_fn, '__name__', 'callable')}"
    elif real_is_reference or precomputed:
        reference = f"{p.reference}; supplied ready-made by the caller"
    else:
        reference = p.reference
    return make_record(p, real_stats, fake_stats, reference=reference, custom_features=feature_fn is not None,
                       use_ema=use_ema, seeds=seeds, notes=notes, seconds=time.time() - t0, decode_uint8=decode_uint8)


def check_decode_rule(protocol, decode_uint8):
    """Raises ValueError when `decode_uint8` is not a rule, or not the one the protocol prescribes."""
    p = get_protocol(protocol)
    if decode_uint8 not in (None, "round", "trunc"):
        raise ValueError(f"decode_uint8={decode_uint8!r}: expected 'round', 'trunc' or None")
    if p.decode_uint8 is not None and decode_uint8 is not None and decode_uint8 != p.decode_uint8:
        raise ValueError(f"protocol {p.name!r} compares videos decoded with the {p.decode_uint8!r} uint8 rule, not "
                         f"{decode_uint8!r}: set config.tokenizer.decode_uint8={p.decode_uint8}")


def make_record(protocol, real_stats, fake_stats, *, reference=None, custom_features=False, use_ema=True,
                seeds=None, notes=None, seconds=None, decode_uint8=None):
    """The FVD result record (dict) of two FeatureStats under a protocol: what was measured, how.

    decode_uint8: the uint8 rule of the decoded videos ("round" | "trunc"), recorded as given (None =
    not stated by the caller); one other than the protocol's rule raises ValueError.
    """
    p = get_protocol(protocol)
    check_decode_rule(p, decode_uint8)
    return {
        "protocol": p.name,
        "fvd": frechet_distance(real_stats.mean, real_stats.cov, fake_stats.mean, fake_stats.cov),
        "kvd": stats_kernel_distance(real_stats, fake_stats),  # unbiased at any N (eval/fvd.py)
        "num_real": real_stats.count,
        "num_fake": fake_stats.count,
        "nominal_num_videos": p.num_videos,
        "reference": reference or p.reference,
        "frames": p.frames,
        "frame_window": p.window,
        "resolution": p.resolution,
        "context": p.context,
        "decode_uint8": decode_uint8,  # round((x+1)*127.5) | trunc((x+1)*0.5*255) | None (not stated)
        "protocol_decode_uint8": p.decode_uint8,  # the rule the protocol prescribes (None = any)
        "use_ema": bool(use_ema),
        "weights": "ema" if use_ema else "raw",
        "seeds": seeds,
        "feature": "custom feature_fn" if custom_features else I3D_FEATURE,
        "code_version": code_version(),
        "seconds": None if seconds is None else round(seconds, 2),
        "notes": notes,
    }


def _windowed(videos, p, argument):
    """Applies the protocol's first/center/last window choice to every batch."""
    for batch in _batches(videos, 1 << 30):
        _check_batch(batch, argument)
        yield select_window(batch, p.frames, p.window)


def horizon_windows(length, context, frames=16):
    """[(m + k·F, m + (k+1)·F)] for k = 0, 1, … while the window ends by `length` frames."""
    if context < 0 or frames < 1:
        raise ValueError(f"context must be >= 0 and frames >= 1; got context={context}, frames={frames}")
    windows = [(s, s + frames) for s in range(context, length - frames + 1, frames)]
    if not windows:
        raise ValueError(f"videos of {length} frames hold no {frames}-frame window after {context} context frames")
    return windows


def fvd_per_horizon(real_videos, fake_videos, *, context, length, frames=16, real_window="same",
                    variables=None, feature_fn=None, reference_fn=None, resolution=None, batch_size=4,
                    max_videos=None, sharding=None, decode_uint8=None):
    """FVD of each generated window [m + k·F, m + (k+1)·F) (see the module docstring).

    real_window: "same" compares with the real frames of the same span (real videos need `length`
    frames); "first" compares every window with the real frames [m, m + F).
    decode_uint8: the uint8 rule of the decoded videos, recorded as given (None = not stated).
    Returns {"windows": [[start, end], ...], "fvd": [...], "kvd": [...], "num_real", "num_fake", ...}.
    """
    if real_window not in ("same", "first"):
        raise ValueError(f"real_window={real_window!r}: expected 'same' or 'first'")
    windows = horizon_windows(length, context, frames)
    proto = Protocol("horizon", frames, "first", resolution, context, length, None, "")
    fn, feature = _feature_fn(proto, variables, feature_fn)
    kw = dict(batch_size=batch_size, max_videos=max_videos, sharding=sharding)
    real_spans = windows if real_window == "same" else windows[:1]
    real_stats = stream_stats(real_videos, real_spans, fn, argument="real_videos", transform=reference_fn, **kw)
    fake_stats = stream_stats(fake_videos, windows, fn, argument="fake_videos", **kw)
    if real_window == "first":
        real_stats = real_stats * len(windows)
    curve = [frechet_distance(r.mean, r.cov, f.mean, f.cov) for r, f in zip(real_stats, fake_stats)]
    kvd = [stats_kernel_distance(r, f) for r, f in zip(real_stats, fake_stats)]
    return {"windows": [list(w) for w in windows], "fvd": curve, "kvd": kvd, "num_real": real_stats[0].count,
            "num_fake": fake_stats[0].count, "frames": frames, "context": context, "length": length,
            "real_window": real_window, "resolution": resolution, "feature": feature, "decode_uint8": decode_uint8}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    return x


def write_result(path, result):
    """Writes the result dict as indented JSON (atomically: temporary name, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_jsonable(result), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path
