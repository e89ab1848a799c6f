"""Sampler settings of a trained run, compared on the held-out videos (how the defaults are chosen).

    python scripts/sampler_sweep.py runs/topdown --horizon 80 \
        --setting randomize=linear --setting randomize=none --setting randomize=linear,temperature=0.7

For each setting (comma-separated `config.sampling` overrides) the run generates every held-out video
from its real context to `--horizon` frames (with the recorded actions for an action-conditioned run)
and reports, against the real continuation:
- `token agreement` on the first generated window and on the last 16 frames: the share of generated
  tokens equal to the real ones. With the actions given, content already seen is determined, so a
  sampler that keeps the world coherent scores high; new content at the edges can only match by chance.
- FVD and KVD of the last 16 frames (I3D, the held-out videos as the reference; few videos: compare
  settings with each other, not with other tables), and motion / contrast of those frames.
- for the top-down world with its moves, `carried`: the share of tokens that a move carries over from one
  generated frame to the next that equal their source (data/topdown.carried_agreement; real videos 1.0).
Writes a table to stdout and JSON to `--out` (default <workdir>/sampler_sweep.json).
"""

import argparse
import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np

from configs import base
from maskflow_jax import inference
from maskflow_jax.data import heldout, topdown
from maskflow_jax.eval import i3d, metrics, protocols

WINDOW = 16


def apply_setting(cfg, setting):
    """A copy of cfg with `setting` ("key=value,...") applied to cfg.sampling (values parsed as the field's type)."""
    out = ml_collections.ConfigDict(cfg.to_dict())
    for key, value in base.get_base().sampling.items():  # fields newer than the run's saved config
        if key not in out.sampling:
            out.sampling[key] = value
    for part in filter(None, (x.strip() for x in setting.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--setting {setting!r}: expected key=value pairs separated by commas")
        if key not in out.sampling:
            raise ValueError(f"--setting {setting!r}: config.sampling has no field {key!r}")
        kind = type(out.sampling[key])
        out.sampling[key] = (value.lower() in ("1", "true")) if kind is bool else kind(value)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--setting", action="append", required=True, help="config.sampling overrides, k=v,k=v")
    parser.add_argument("--horizon", type=int, default=80, help="frames per generated video (with the context)")
    parser.add_argument("--videos", type=int, default=None, help="held-out videos (default config.eval.num_videos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None, help="denoiser checkpoint step (default the newest)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--strips", default=None, help="folder: a PNG per setting, real (top) over generated, 2 videos")
    args = parser.parse_args(argv)
    cfg = inference.saved_config(args.workdir)
    run = inference.load_run(args.workdir, cfg=cfg, use_ema=cfg.eval.use_ema, step=args.step)
    tokens, pixels, actions = heldout.load(cfg, args.workdir, args.videos or cfg.eval.num_videos, args.horizon)
    f = cfg.data.frames
    feature_fn = i3d.make_feature_fn(weights=cfg.eval.i3d_weights)
    last = slice(args.horizon - WINDOW, args.horizon)
    reference = protocols.video_stats("maze", pixels[:, last], feature_fn=feature_fn, batch_size=cfg.eval.batch_size)
    topdown_moves = cfg.data.name == topdown.NAME and actions is not None
    rows = []
    for setting in args.setting:
        variant = dataclasses.replace(run, cfg=apply_setting(cfg, setting), _chunk_fns={})
        m = variant.cfg.sampling.context  # a setting may change the context (and stride)
        start = time.perf_counter()
        video, info = variant.generate(
            jax.random.key(args.seed), context_tokens=tokens[:, :m], num_frames=args.horizon, actions=actions
        )
        seconds = time.perf_counter() - start
        gen = info["tokens"]
        if args.strips:
            os.makedirs(args.strips, exist_ok=True)
            pairs = [x for i in range(min(2, len(video))) for x in (pixels[i], video[i])]
            strip = np.concatenate([np.concatenate(list(v[:: max(1, args.horizon // 16)]), axis=1) for v in pairs])
            name = "".join(ch if ch.isalnum() else "_" for ch in setting)
            inference.save_frame_grid(os.path.join(args.strips, f"{name}.png"), strip[None], columns=1)
        fake = protocols.video_stats("maze", video[:, last], feature_fn=feature_fn, batch_size=cfg.eval.batch_size)
        rec = protocols.make_record("maze", reference, fake, use_ema=cfg.eval.use_ema)
        rows.append(
            {
                "setting": setting,
                "agreement_first": float(np.mean(gen[:, m:f] == tokens[:, m:f])),  # the first window after the context
                "agreement_last": float(np.mean(gen[:, last] == tokens[:, last])),
                # top-down world: share of carried-over tokens equal to their source (real videos: 1.0)
                "carried": topdown.carried_agreement(gen[:, max(m - 1, 0) :], actions[:, max(m - 1, 0) :])[0]
                if topdown_moves
                else None,
                "fvd": rec["fvd"],
                "kvd": rec["kvd"],
                **metrics.dynamics(video[:, last]),
                "seconds": seconds,
                "num_videos": int(len(tokens)),
            }
        )
        r = rows[-1]
        print(
            f"{setting:50s} agreement {r['agreement_first']:.3f} / {r['agreement_last']:.3f}  "
            + (f"carried {r['carried']:.3f}  " if topdown_moves else "")
            + f"FVD {r['fvd']:7.1f}  "
            f"KVD {r['kvd']:6.1f}  motion {r['motion']:5.1f}  contrast {r['contrast']:5.1f}  {seconds:5.1f} s",
            flush=True,
        )
    real = metrics.dynamics(pixels[:, last])
    print(f"{'real held-out videos':50s} motion {real['motion']:5.1f}  contrast {real['contrast']:5.1f}")
    out = args.out or os.path.join(args.workdir, "sampler_sweep.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"horizon": args.horizon, "rows": rows, "real": real}, fh, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
