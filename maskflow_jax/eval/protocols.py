"""Named FVD protocols (SPEC §9, §12) and result files that say exactly what was measured.

maskflow:  reference = VQ reconstructions of training clips (tokenize -> decode), FVD on the first
           16 frames of each video; the paper's own evaluation (without its mp4 round trip).
styleganv: 2,048 raw 16-frame clips at 256^2 as the reference.
teco:      64^2 DMLab, 300-frame videos from 36 context frames, features over the whole sequence.
Every result records the protocol, the numbers of real and generated videos, how the reference
set was built and whether EMA weights were used. FVD from few videos is biased upward: compare
numbers only at equal counts.
"""
import dataclasses
import json
import os

import numpy as np

from maskflow_jax.eval.frechet import fvd_from_features


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    frames: int  # frames per video fed to I3D (from the start of each video)
    resolution: int  # pixels (the I3D preprocessing resizes to 224 anyway)
    reference: str  # how the real set is built
    num_videos: int  # the protocol's nominal count


PROTOCOLS = {
    "maskflow": Protocol("maskflow", 16, 256, "VQ reconstructions of training clips", 0),
    "styleganv": Protocol("styleganv", 16, 256, "raw 16-frame training clips", 2048),
    "teco": Protocol("teco", 300, 64, "raw 300-frame test videos (36 context frames)", 0),
}


def get_protocol(name):
    if name not in PROTOCOLS:
        raise ValueError(f"FVD protocol {name!r} is unknown; expected one of {list(PROTOCOLS)} (config.eval.protocol)")
    return PROTOCOLS[name]


def features(feature_fn, videos, batch_size=4, frames=None):
    """I3D features (N, 400) of uint8 videos (N, T, H, W, 3), in batches, using the first `frames`."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.dtype != np.uint8:
        raise ValueError(f"videos must be uint8 (N, T, H, W, 3); got {videos.dtype} {videos.shape}")
    if frames is not None:
        if videos.shape[1] < frames:
            raise ValueError(f"videos have {videos.shape[1]} frames; the protocol needs {frames}")
        videos = videos[:, :frames]
    out = []
    for s in range(0, len(videos), batch_size):
        part = videos[s:s + batch_size]
        pad = batch_size - len(part)
        if pad:  # fixed batch: one compilation
            part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
        out.append(np.asarray(feature_fn(part))[: batch_size - pad])
    return np.concatenate(out)


def evaluate_fvd(feature_fn, real_videos, fake_videos, protocol="maskflow", use_ema=True, batch_size=4, **extra):
    """FVD of fake vs real videos under `protocol`; returns the result dict (see module docstring)."""
    p = get_protocol(protocol) if isinstance(protocol, str) else protocol
    real = features(feature_fn, real_videos, batch_size, p.frames)
    fake = features(feature_fn, fake_videos, batch_size, p.frames)
    return {"protocol": p.name, "fvd": fvd_from_features(real, fake), "num_real": int(len(real)),
            "num_fake": int(len(fake)), "frames": p.frames, "reference": p.reference, "use_ema": bool(use_ema),
            **extra}


def write_result(path, result):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
