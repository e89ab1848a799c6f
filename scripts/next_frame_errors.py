"""Where a denoiser's next-frame errors on moved tokens go, in a world whose moves shift the token grid.

    python scripts/next_frame_errors.py runs/topdown [--context 2] [--actions recorded|shuffled]

For every held-out clip-length window (as in the next-frame check), frame m is predicted (argmax)
from m clean frames. Of the tokens of frame m that changed and that equal the previous frame's token
one move away (an exact shift, away from the entering edge and the agent's cell), it counts the share
predicted correctly, predicted as the previous frame's token at the same position ("copy"), as the
token one step in the opposite or a perpendicular direction (a wrong move), elsewhere in the previous
frame, or anything else. `--actions shuffled` gives each clip another clip's actions (rolled by one
over the windows): a model that uses its action input then gets worse; one that ignores it does not.
It also prints the code usage of the run's training tokens (codes used, perplexity exp(entropy)).

Moves are the top-down world's (maskflow_jax/data/topdown.py: 0 W, 1 E, 2 N, 3 S, 4 stay), with
`actions[m - 1]` the move into frame m. Shapes: pred, truth, prev int (N, H, W); moves int (N,).
"""

import argparse
import functools
import json

import jax
import numpy as np

from maskflow_jax import inference
from maskflow_jax.data import heldout, records, tokens
from maskflow_jax.data.topdown import AGENT_CELL, MOVES, STAY
from maskflow_jax.eval import prediction

CATEGORIES = ("correct", "copy", "opposite", "perpendicular", "elsewhere_in_previous", "other")


def classify(pred, truth, prev, moves, skip=((AGENT_CELL, AGENT_CELL),)):
    """Counts {category: n} over the exact-shift changed tokens of frames truth (N, H, W) predicted as
    pred (N, H, W) from the previous frames prev (N, H, W) and the moves into them (N,). A move (dr, dc)
    of the camera makes truth[i, j] = prev[i + dr, j + dc]; tokens whose source is outside the view,
    whose cell or source cell is in `skip` (the agent), or that do not follow that rule are left out."""
    pred, truth, prev, moves = (np.asarray(a) for a in (pred, truth, prev, moves))
    if not pred.shape == truth.shape == prev.shape or pred.ndim != 3 or moves.shape != pred.shape[:1]:
        raise ValueError(
            f"need pred, truth, prev (N, H, W) and moves (N,); got {pred.shape}, {truth.shape}, "
            f"{prev.shape}, {moves.shape}"
        )
    counts = dict.fromkeys(CATEGORIES, 0)
    h, w = truth.shape[1:]
    inside = lambda i, j: 0 <= i < h and 0 <= j < w  # noqa: E731
    for n in range(len(truth)):
        if int(moves[n]) == STAY or int(moves[n]) not in MOVES:
            continue
        dr, dc = MOVES[int(moves[n])]
        for i in range(h):
            for j in range(w):
                si, sj = i + dr, j + dc
                if not inside(si, sj) or (i, j) in skip or (si, sj) in skip:
                    continue
                if truth[n, i, j] == prev[n, i, j] or truth[n, i, j] != prev[n, si, sj]:
                    continue
                p = pred[n, i, j]
                if p == truth[n, i, j]:
                    key = "correct"
                elif p == prev[n, i, j]:
                    key = "copy"
                elif inside(i - dr, j - dc) and p == prev[n, i - dr, j - dc]:
                    key = "opposite"
                elif any(inside(i + a, j + b) and p == prev[n, i + a, j + b] for a, b in ((dc, dr), (-dc, -dr))):
                    key = "perpendicular"
                elif np.any(prev[n] == p):
                    key = "elsewhere_in_previous"
                else:
                    key = "other"
                counts[key] += 1
    return counts


def code_usage(ids, vocab):
    """(codes used, perplexity exp(entropy)) of token ids (any shape) over `vocab` codes."""
    p = np.bincount(np.asarray(ids).ravel(), minlength=vocab) / max(np.asarray(ids).size, 1)
    nz = p[p > 0]
    return int(len(nz)), float(np.exp(-(nz * np.log(nz)).sum()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--context", type=int, default=None, help="m (default config.sampling.context)")
    parser.add_argument("--actions", choices=("recorded", "shuffled"), default="recorded")
    args = parser.parse_args(argv)
    cfg = inference.saved_config(args.workdir)
    if not cfg.data.use_actions:
        raise ValueError(
            f"{args.workdir}: the run was trained without actions (config.data.use_actions=False); "
            "this script needs the recorded moves"
        )
    m = cfg.sampling.context if args.context is None else args.context
    run = inference.load_run(args.workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    toks, _, acts = heldout.load(cfg, args.workdir, cfg.eval.num_videos, max(cfg.eval.horizons) * cfg.data.frames)
    f = cfg.data.frames
    n, length = toks.shape[:2]
    k = length // f
    clips = np.asarray(toks)[:, : k * f].reshape((n * k, f) + toks.shape[2:])
    clip_acts = np.asarray(acts)[:, : k * f].reshape(n * k, f)
    model_acts = np.roll(clip_acts, 1, axis=0) if args.actions == "shuffled" else clip_acts
    apply = functools.partial(jax.jit(run.apply_fn()), run.params)
    bs = cfg.eval.batch_size
    pred = np.concatenate(
        [
            np.asarray(
                prediction.next_frame_predictions(
                    apply,
                    clips[i : i + bs],
                    m,
                    cfg.tokenizer.n_embed,
                    actions=model_acts[i : i + bs] if cfg.model.action_cond else None,
                )
            )
            for i in range(0, len(clips), bs)
        ]
    )
    counts = classify(pred, clips[:, m], clips[:, m - 1], clip_acts[:, m - 1])
    total = sum(counts.values())
    src = records.RecordSource(tokens.token_dir(cfg, args.workdir), cfg.data.train_split)
    used, perplexity = code_usage(
        np.concatenate([np.asarray(src[i]["video"]).ravel() for i in range(len(src))]), cfg.tokenizer.n_embed
    )
    out = {
        "workdir": args.workdir,
        "step": run.step,
        "context": m,
        "actions": args.actions,
        "tokens": total,
        "shares": {c: round(v / max(total, 1), 4) for c, v in counts.items()},
        "train_codes_used": used,
        "train_code_perplexity": round(perplexity, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
