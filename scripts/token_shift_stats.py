"""How exactly the top-down world's moves shift its tokens, from a run's held-out token cache.

    python scripts/token_shift_stats.py runs/topdown

For consecutive held-out frames (the recorded move between them): the share of tokens that change;
of the changed tokens, the share away from the entering edge and the agent's tile ("interior"), and
of those the share equal to the previous frame's token at the moved-from position ("shift-exact");
and the changed-token accuracy of a shift oracle (moves the previous frame, wrong on the edge).
"""

import argparse

import numpy as np

from maskflow_jax import inference
from maskflow_jax.data import heldout, topdown


def shift_stats(tokens, actions):
    """tokens int (N, T, h, w), actions int (N, T) in the top-down codes -> dict of shares."""
    h, w = tokens.shape[-2:]
    changed = interior = exact = edge = 0
    for video, acts in zip(tokens, actions):
        for f in range(len(acts) - 1):
            dr, dc = topdown.MOVES[int(acts[f])]
            prev, nxt = video[f], video[f + 1]
            moved = np.full_like(prev, -1)  # nxt[y, x] should be prev[y + dr, x + dc]
            moved[max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)] = prev[
                max(0, dr) : h - max(0, -dr), max(0, dc) : w - max(0, -dc)
            ]
            ch = nxt != prev
            known = moved >= 0
            known[topdown.AGENT_CELL, topdown.AGENT_CELL] = False
            changed += ch.sum()
            interior += (ch & known).sum()
            exact += (ch & known & (moved == nxt)).sum()
            edge += (ch & (moved < 0)).sum()
    total = tokens[:, 1:].size
    return {
        "changed_share": changed / total,
        "interior_of_changed": interior / changed,
        "shift_exact_of_interior": exact / max(interior, 1),
        "edge_of_changed": edge / changed,
        "shift_oracle_changed_accuracy": exact / changed,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    args = parser.parse_args(argv)
    cfg = inference.saved_config(args.workdir)
    if cfg.data.name != "topdown":
        raise SystemExit(f"{args.workdir} is a {cfg.data.name!r} run; this count needs the top-down world's moves")
    cfg.model.action_cond = True  # read the recorded moves whatever the denoiser uses
    length = cfg.data.topdown.length
    tokens, _, actions = heldout.load(cfg, args.workdir, cfg.data.topdown.num_test, length)
    for key, value in shift_stats(np.asarray(tokens), np.asarray(actions)).items():
        print(f"{key:32s} {value:.3f}")


if __name__ == "__main__":
    main()
