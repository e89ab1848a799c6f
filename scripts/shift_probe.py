"""Shift probe: can the denoiser learn token motion at all, given this training budget?

The maze's next-frame check (maskflow_jax/eval/prediction.py) leaves the 20-minute denoiser at the copy
baseline. This probe separates "the model cannot learn to move tokens in that many steps" from "the
maze's token dynamics are too hard to learn in that many steps". It builds token videos in which
motion is an exact shift of the token grid: a panorama of real token frames (from a run's token
cache) side by side, and a w-column window sliding over it by -1, 0 or +1 column per frame, the
direction held for a random run of frames. Every token of frame f + 1 except the column entering
the view equals a token of frame f one column over, so a model that has learnt the motion scores
about (w - 1) / w on the moving frames; copying scores what the panorama's neighbouring columns
share. Actions in the DMLab coding record each move (0 the view moves left, 1 right, 2 it stays),
`actions[f]` being the move after frame f, as in the maze.

    python scripts/shift_probe.py build --source runs/maze/tokens --out runs/shift/tokens
    python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/shift --mode=train \\
        [--config.model.action_cond=True --config.data.use_actions=True]
    python scripts/shift_probe.py check --workdir runs/shift

Shapes: token frames (N, h, w) int; videos (N, L, h, w) int32; actions (N, L) int32.
"""

import argparse
import json
import os

import numpy as np

from maskflow_jax import inference
from maskflow_jax.data import records, tokens
from maskflow_jax.eval import prediction

LEFT, RIGHT, STAY = 0, 1, 2  # DMLab action codes (forward = "stay" here: no motion)


def shift_videos(frames, num, length, rng, p_move=0.8, min_run=4, max_run=20, p_noise=0.0):
    """`num` token videos of `length` frames sliding over panoramas of random `frames` (M, h, w).

    p_move: probability that a run of frames moves (left or right, equally likely) rather than
    stays; runs last min_run..max_run frames. Returns (videos (num, length, h, w) int32, actions
    (num, length) int32). The panorama is wide enough (2 * length + w columns, the window starting
    in its middle) that the window never reaches an edge, so every recorded move happens.
    p_noise: probability that a token is replaced by a random token of `frames`, independently per
    frame, so that a moved token matches its source only with probability ~(1 - p_noise)^2 (the
    maze's per-frame tokenizer keeps only part of the tokens of a shifted view).
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"frames must be token frames (M >= 1, h, w); got shape {frames.shape}")
    for name, p in (("p_move", p_move), ("p_noise", p_noise)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}={p} must be in [0, 1]")
    if not 1 <= min_run <= max_run:
        raise ValueError(f"need 1 <= min_run <= max_run; got {min_run}, {max_run}")
    h, w = frames.shape[1:]
    tiles = -(-(2 * length + w) // w)
    videos = np.empty((num, length, h, w), np.int32)
    actions = np.empty((num, length), np.int32)
    for n in range(num):
        pano = np.concatenate(list(frames[rng.integers(0, len(frames), tiles)]), axis=1)  # (h, tiles * w)
        x, step, left = length, 0, 0
        for f in range(length):
            if left == 0:
                step = int(rng.choice([-1, 1])) if rng.random() < p_move else 0
                left = int(rng.integers(min_run, max_run + 1))
            videos[n, f] = pano[:, x : x + w]
            actions[n, f] = {-1: LEFT, 1: RIGHT, 0: STAY}[step]
            x, left = x + step, left - 1
    if p_noise > 0:
        noise = rng.random(videos.shape) < p_noise
        videos = np.where(noise, frames.ravel()[rng.integers(0, frames.size, videos.shape)], videos).astype(np.int32)
    return videos, actions


def build(source, out, num_train=128, num_test=24, length=160, p_move=0.8, seed=0, every=7, p_noise=0.0):
    """Writes train / test splits of shift videos to the token cache `out` (the ArrayRecord layout
    of `maskflow_jax.data.tokens`), from every `every`-th token frame of the same splits of the
    token cache `source` (held-out panoramas use held-out frames). Returns {split: metadata}."""
    rng = np.random.default_rng(seed)
    metas = {}
    for split, num in (("train", num_train), ("test", num_test)):
        if not records.is_prepared(source, split):
            raise FileNotFoundError(
                f"no token split {split!r} in {source!r}: pass --source a run's token cache "
                "(<workdir>/tokens, written by --mode=tokenize or the pipeline)"
            )
        src = records.RecordSource(source, split)
        frames = np.concatenate([np.asarray(src[i]["video"])[::every] for i in range(len(src))])
        videos, actions = shift_videos(frames, num, length, rng, p_move=p_move, p_noise=p_noise)
        fingerprint = {
            "shift_probe": {
                "source": os.path.abspath(source),
                "length": length,
                "p_move": p_move,
                "p_noise": p_noise,
                "seed": seed,
                "every": every,
            }
        }
        metas[split] = records.prepare_split(
            ({"video": v, "actions": a} for v, a in zip(videos, actions)),
            out,
            split,
            fingerprint=fingerprint,
            force=True,
        )
    return metas


def check(workdir, split="test", use_ema=True):
    """The next-frame check of the denoiser in `workdir` on the probe's `split` (with its actions for an
    action-conditioned run): `prediction.check_run`, i.e. every clip-length window at m = context
    and m = F - 1. Returns a list of result dicts."""

    cfg = inference.saved_config(workdir)
    cache = tokens.token_dir(cfg, workdir)
    if not records.is_prepared(cache, split):
        raise FileNotFoundError(
            f"no probe split {split!r} in {cache!r}: write it with `python "
            f"scripts/shift_probe.py build --out {cache}` before training"
        )
    model, params, step = inference.load_denoiser(cfg, workdir, use_ema=use_ema)
    src = records.RecordSource(cache, split)
    videos = [src[i] for i in range(len(src))]
    if len({len(v["video"]) for v in videos}) != 1:
        raise ValueError(
            f"{cache!r} split {split!r} has videos of different lengths: not a shift-probe cache "
            "(rebuild it with `shift_probe build`)"
        )
    acts = np.stack([v["actions"] for v in videos]) if cfg.model.get("action_cond", False) else None
    run = inference.Run(cfg=cfg, tokenizer=None, model=model, params=params, step=step)  # no decoding here
    return prediction.check_run(cfg, run, np.stack([v["video"] for v in videos]), acts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write shift videos to a token cache")
    b.add_argument("--source", required=True, help="a run's token cache, e.g. runs/maze/tokens")
    b.add_argument("--out", required=True, help="the probe run's token cache, e.g. runs/shift/tokens")
    b.add_argument("--num_train", type=int, default=128)
    b.add_argument("--num_test", type=int, default=24)
    b.add_argument("--length", type=int, default=160)
    b.add_argument("--p_move", type=float, default=0.8)
    b.add_argument("--p_noise", type=float, default=0.0)
    b.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check", help="next-frame check of a probe run's denoiser")
    c.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        metas = build(
            args.source,
            args.out,
            args.num_train,
            args.num_test,
            args.length,
            args.p_move,
            args.seed,
            p_noise=args.p_noise,
        )
        print(json.dumps({s: m["count"] for s, m in metas.items()}))
    else:
        for row in check(args.workdir):
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
