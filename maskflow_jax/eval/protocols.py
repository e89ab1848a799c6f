"""Named FVD protocols (docs/method.md §10, §12) and result records that say exactly what was measured.

Per-horizon protocols score the window of F frames that ends at each horizon (eval/horizons.py):
maskflow:     the paper's evaluation without its lossy mp4 round trip: the reference set is VQ
              reconstructions (encode -> decode) of real clips, one per video; F = 16 frames, videos at
              256² before the I3D preprocessing. Decoded videos (reference and samples) use the release's
              uint8 rule trunc((x + 1) * 0.5 * 255) (config.tokenizer.decode_uint8 = "trunc"; tokenizer/api.py).
maze:         the built-in worlds: held-out videos (another seed) as the reference, F = eval.fvd_frames
              frames at the native size.
Whole-video protocols score all L frames of each video at once:
teco:         DMLab at 64² as TECO computes it: 300-frame test videos, the first 36 real frames given and,
              in the scored video, put back in place of the first 36 generated ones; I3D features over all
              300 frames; FVD per group of 256 videos, mean ± std over groups and seeds.
fvd2048_16f:  StyleGAN-V's: 2,048 unconditional 16-frame videos against 2,048 real 16-frame clips at 256².
fvd2048_128f: StyleGAN-V's long-video variant: 128-frame videos and clips (generated chunk-wise after the
              first window).

Videos arrive as iterables of uint8 batches (n, T, H, W, 3) (or one (N, T, H, W, 3) array), so
thousands of videos never sit in memory at once: only float64 feature statistics are kept.
FVD from few videos is biased upward (and with N < 400 the covariances are singular): compare
numbers only at equal counts and protocol.
"""

import dataclasses
import os
import subprocess
import time

import jax
import numpy as np

import maskflow_jax
from maskflow_jax import files
from maskflow_jax.eval import i3d
from maskflow_jax.eval.fvd import FeatureStats, frechet_distance, stats_kernel_distance

DEFAULT_FRAMES = 16  # F where a protocol leaves it to the config (configs/base.py eval.fvd_frames)
I3D_FEATURE = "i3d-kinetics-400 (RGB) logits averaged over time"


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    frames: int | None  # F: frames per clip fed to I3D (None = config.eval.fvd_frames)
    resolution: int | None  # videos are resized to this square size first (None = as given)
    context: int | None  # m: real frames the generator is given (None = config.sampling.context)
    length: int | None  # L of a whole-video protocol (its one clip is frames [0, L)); None = per horizon
    num_videos: int | None  # nominal videos per set (None = every video of the reference split)
    reference: str  # how the reference ("real") set is built
    reconstructed_reference: bool = False  # the reference is the tokenizer's reconstruction of the real clips
    decode_uint8: str | None = None  # uint8 rule decoded videos must use (tokenizer/api.py UINT8_RULES); None = any
    real_context: bool = False  # the scored video's first m frames are the real ones, not the decoded context
    group_size: int | None = None  # videos per FVD; FVD is averaged over groups (None = one group of all)


PROTOCOLS = {
    "maskflow": Protocol(
        "maskflow",
        16,
        256,
        None,
        None,
        None,
        "VQ reconstructions (tokenizer encode -> decode) of real clips, one per video",
        reconstructed_reference=True,
        decode_uint8="trunc",
    ),
    "maze": Protocol(
        "maze", None, None, None, None, None, "held-out videos of a built-in world (generated with another seed)"
    ),
    "teco": Protocol(
        "teco",
        300,
        64,
        36,
        300,
        None,
        "raw 300-frame test videos at 64x64; the generator sees their first 36 frames, which replace "
        "the first 36 frames of every scored video",
        real_context=True,
        group_size=256,
    ),
    "fvd2048_16f": Protocol("fvd2048_16f", 16, 256, 0, 16, 2048, "raw 16-frame clips at 256x256 (StyleGAN-V)"),
    "fvd2048_128f": Protocol("fvd2048_128f", 128, 256, 0, 128, 2048, "raw 128-frame clips at 256x256 (StyleGAN-V)"),
}
# Methods scored beside the model (config.eval.baselines: key -> the name in results and reports).
BASELINES = {
    "frozen": "frozen last context frame",
    "untrained": "untrained denoiser",
    "reconstruction": "tokenizer reconstruction (ceiling)",
}
MODEL = "MaskFlow"  # the method name of the run's own generations


def get_protocol(protocol):
    """A Protocol from its name (config.eval.protocol) or the Protocol itself."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"config.eval.protocol={protocol!r} is unknown; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def clip_frames(protocol, default=DEFAULT_FRAMES):
    """F: the protocol's frames per clip, or `default` (config.eval.fvd_frames) where it leaves F open."""
    p = get_protocol(protocol)
    return p.frames if p.frames is not None else default


def select_window(videos, frames, start=0):
    """Frames [start, start + frames) (N, frames, H, W, 3) of videos (N, T, H, W, 3)."""
    t = videos.shape[1]
    if t < frames:
        raise ValueError(f"videos have {t} frames; the protocol needs {frames} (generate longer videos)")
    if start < 0 or start + frames > t:
        raise ValueError(f"window [{start}, {start + frames}) is outside videos of {t} frames")
    return videos[:, start : start + frames]


def _batches(videos, batch_size):
    """Yields uint8 batches from an array (N, T, H, W, 3) or passes an iterable of batches through."""
    if isinstance(videos, np.ndarray) or isinstance(videos, jax.Array):
        videos = np.asarray(videos)
        for s in range(0, len(videos), batch_size):
            yield videos[s : s + batch_size]
        return
    for batch in videos:
        yield np.asarray(batch)


def _check_batch(batch, argument):
    if batch.ndim != 5 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"{argument} must yield uint8 videos (n, T, H, W, 3); got {batch.dtype} {batch.shape}")


def clip_features(clips, feature_fn, batch_size, sharding=None):
    """feature_fn over uint8 clips (n, F, H, W, 3) in batches of `batch_size` -> (n, D) float.

    Batches are padded to `batch_size` (repeating the last clip) so the feature fn compiles once.
    """
    out = []
    for start in range(0, len(clips), batch_size):
        part = np.asarray(clips[start : start + batch_size])
        n = len(part)
        if n < batch_size:
            part = np.concatenate([part, np.repeat(part[-1:], batch_size - n, axis=0)])
        x = jax.device_put(part, sharding) if sharding is not None else part
        out.append(np.asarray(feature_fn(x))[:n])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def stream_stats(
    videos, windows, feature_fn, *, argument="videos", batch_size=4, transform=None, max_videos=None, sharding=None
):
    """One FeatureStats per window [(start, end)], streamed over uint8 video batches.

    transform: applied to each windowed batch before the features (e.g. VQ reconstruction).
    """
    stats = [FeatureStats() for _ in windows]
    seen = 0
    for batch in _batches(videos, batch_size):
        _check_batch(batch, argument)
        if max_videos is not None:
            batch = batch[: max_videos - seen]
        for (lo, hi), s in zip(windows, stats):
            for start in range(0, len(batch), batch_size):
                clip = select_window(batch[start : start + batch_size], hi - lo, start=lo)
                if transform is not None:
                    clip = np.asarray(transform(clip))
                    _check_batch(clip, "reference_fn's output")
                s.update(clip_features(clip, feature_fn, batch_size, sharding))
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


def video_stats(
    protocol,
    videos,
    *,
    reference_fn=None,
    variables=None,
    feature_fn=None,
    batch_size=4,
    max_videos=None,
    sharding=None,
    argument="videos",
    frames=None,
):
    """FeatureStats of the first F frames (`frames`, default clip_frames(protocol)) of uint8 videos under a
    protocol (its resolution and I3D features); pass the result as `real_videos` to evaluate_fvd to reuse
    a reference set."""
    p = get_protocol(protocol)
    fn, _ = _feature_fn(p, variables, feature_fn)
    f = frames or clip_frames(p)
    (stats,) = stream_stats(
        videos,
        [(0, f)],
        fn,
        argument=argument,
        batch_size=batch_size,
        transform=reference_fn,
        max_videos=max_videos,
        sharding=sharding,
    )
    return stats


def evaluate_fvd(
    protocol,
    real_videos,
    fake_videos,
    *,
    reference_fn=None,
    real_is_reference=False,
    variables=None,
    feature_fn=None,
    use_ema=True,
    seeds=None,
    batch_size=4,
    max_videos=None,
    sharding=None,
    notes=None,
    decode_uint8=None,
    frames=None,
):
    """FVD of the first F frames of generated vs real videos under a named protocol; returns the result
    record (dict). For whole runs (generation, windows, baselines, groups) use eval/horizons.py.

    real_videos / fake_videos: iterables of uint8 batches (n, T, H, W, 3) or arrays (N, T, H, W, 3);
        real_videos may also be a FeatureStats from video_stats (a cached reference set).
    reference_fn: uint8 (n, F, H, W, 3) -> uint8 reconstructions, applied to the real clips
        (required by `maskflow` unless real_is_reference=True: the real videos already are them).
    variables: I3D variables (default load_i3d_params()); feature_fn overrides the I3D (tests).
    use_ema, seeds, notes: recorded as given. max_videos caps each set. frames: F (default clip_frames).
    decode_uint8: the uint8 rule ("round" | "trunc") the decoded videos went through, recorded (None =
        not stated); a rule other than the protocol's (maskflow: "trunc") is an error.
    """
    p = get_protocol(protocol)
    check_decode_rule(p, decode_uint8)
    precomputed = isinstance(real_videos, FeatureStats)
    if p.reconstructed_reference and reference_fn is None and not (real_is_reference or precomputed):
        raise ValueError(
            f"protocol {p.name!r} compares with VQ reconstructions of the real clips: pass "
            "reference_fn (uint8 clips -> decode(encode(clips))) or real_is_reference=True"
        )
    if feature_fn is None and variables is None:
        variables = i3d.load_i3d_params()
    t0 = time.time()
    kw = dict(
        variables=variables,
        feature_fn=feature_fn,
        batch_size=batch_size,
        max_videos=max_videos,
        sharding=sharding,
        frames=frames,
    )
    real_stats = (
        real_videos
        if precomputed
        else video_stats(p, real_videos, reference_fn=reference_fn, argument="real_videos", **kw)
    )
    fake_stats = video_stats(p, fake_videos, argument="fake_videos", **kw)
    if reference_fn is not None:
        reference = f"{p.reference}; built here with reference_fn={getattr(reference_fn, '__name__', 'callable')}"
    elif real_is_reference or precomputed:
        reference = f"{p.reference}; supplied ready-made by the caller"
    else:
        reference = p.reference
    return make_record(
        p,
        real_stats,
        fake_stats,
        reference=reference,
        custom_features=feature_fn is not None,
        use_ema=use_ema,
        seeds=seeds,
        notes=notes,
        seconds=time.time() - t0,
        decode_uint8=decode_uint8,
        frames=frames,
    )


def check_decode_rule(protocol, decode_uint8):
    """Raises ValueError when `decode_uint8` is not a rule, or not the one the protocol prescribes."""
    p = get_protocol(protocol)
    if decode_uint8 not in (None, "round", "trunc"):
        raise ValueError(f"decode_uint8={decode_uint8!r}: expected 'round', 'trunc' or None")
    if p.decode_uint8 is not None and decode_uint8 is not None and decode_uint8 != p.decode_uint8:
        raise ValueError(
            f"protocol {p.name!r} compares videos decoded with the {p.decode_uint8!r} uint8 rule, not "
            f"{decode_uint8!r}: set config.tokenizer.decode_uint8={p.decode_uint8}"
        )


def describe(
    protocol,
    *,
    reference=None,
    custom_features=False,
    use_ema=True,
    seeds=None,
    notes=None,
    seconds=None,
    decode_uint8=None,
    frames=None,
    actions=None,
):
    """What a result under `protocol` measured and how (the fields of every result record), without scores.

    decode_uint8: the uint8 rule of the decoded videos ("round" | "trunc"), recorded as given (None =
    not stated by the caller); one other than the protocol's rule raises ValueError. actions: whether the
    generator was given the real videos' actions (None = not stated).
    """
    p = get_protocol(protocol)
    check_decode_rule(p, decode_uint8)
    return {
        "protocol": p.name,
        "nominal_num_videos": p.num_videos,
        "reference": reference or p.reference,
        "frames": frames or clip_frames(p),
        "resolution": p.resolution,
        "context": p.context,
        "real_context": p.real_context,
        "group_size": p.group_size,
        "actions": actions,
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


def make_record(protocol, real_stats, fake_stats, **kw):
    """The FVD result record (dict) of two FeatureStats under a protocol: describe(protocol, **kw) plus
    fvd, kvd and the video counts."""
    return {
        "fvd": frechet_distance(real_stats.mean, real_stats.cov, fake_stats.mean, fake_stats.cov),
        "kvd": stats_kernel_distance(real_stats, fake_stats),  # unbiased at any N (eval/fvd.py)
        "num_real": real_stats.count,
        "num_fake": fake_stats.count,
        **describe(protocol, **kw),
    }


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
    return files.write_json(path, _jsonable(result), indent=1)
