"""The untrained-denoiser baseline with and without network evaluations, on a finished run.

    python -m benchmarks.untrained_baseline runs/maze [--videos 24] [--horizon 160] [--repeats 2]

The pipeline's eval stage needs an untrained roll-out of every held-out video to the longest horizon.
`inference.untrained_run` broadcasts the zero logits that the zero-initialised head gives, instead of
running the network with zeroed parameters. This times both roll-outs (same contexts, sampler and key;
token sampling only, no decoding; median of --repeats after one warm-up each), checks that their tokens
are identical, and reports seconds per generated frame and the saving.
"""

import argparse
import dataclasses

import jax
import numpy as np

from benchmarks.common import timeit, write_json
from maskflow_jax import inference
from maskflow_jax.data import heldout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--horizon", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    run = inference.load_run(args.workdir)
    cfg, m = run.cfg, run.cfg.sampling.context
    tokens, _, actions = heldout.load(cfg, args.workdir, args.videos, args.horizon)
    if len(tokens) < args.videos:
        parser.error(
            f"--videos {args.videos}: split {cfg.data.eval_split!r} has only {len(tokens)} held-out videos of "
            f">= {args.horizon} frames; pass --videos {len(tokens)} or lower --horizon"
        )
    ctx = tokens[:, :m]
    zeroed = dataclasses.replace(run, params=jax.tree.map(np.zeros_like, run.params), _chunk_fns={})
    shortcut = inference.untrained_run(run)
    rows = []
    outs = {}
    for name, r in (("network with zeroed parameters", zeroed), ("untrained_run (no network)", shortcut)):

        def roll(r=r, name=name):  # keeps its tokens for the identity check
            outs[name] = r.generate(
                jax.random.key(args.horizon), context_tokens=ctx, num_frames=args.horizon, actions=actions, decode=False
            )[0]
            return outs[name]

        seconds = timeit(roll, repeats=args.repeats, warmup=1)  # median; the warm-up compiles the chunk function
        frames = (args.horizon - m) * len(ctx)
        rows.append({"baseline": name, "seconds": seconds, "s_per_generated_frame": seconds / frames})
    same = bool(np.array_equal(*outs.values()))
    print(
        f"{len(ctx)} videos x {args.horizon} frames from {m} context frames, {jax.devices()[0].platform}; "
        f"identical tokens: {same}"
    )
    print(f"{'baseline':<34}{'seconds':>10}{'s / frame':>12}")
    for r in rows:
        print(f"{r['baseline']:<34}{r['seconds']:>10.2f}{r['s_per_generated_frame']:>12.4f}")
    saved = rows[0]["seconds"] - rows[1]["seconds"]
    print(f"saved: {saved:.2f} s ({rows[0]['seconds'] / max(rows[1]['seconds'], 1e-9):.1f}x)")
    write_json(
        "untrained_baseline",
        {
            "videos": len(ctx),
            "horizon": args.horizon,
            "context": m,
            "identical_tokens": same,
            "rows": rows,
            "saved_seconds": saved,
        },
    )


if __name__ == "__main__":
    main()
