"""Copy probe: can the denoiser learn to read a token at a fixed relative position, in a given budget?

Motion at the token level is "frame f + 1 at (r, c) is frame f at (r + dr, c + dc)": the denoiser must
attend to one exact position. This probe trains a denoiser from scratch on synthetic clips of i.i.d.
uniform tokens (no structure to lean on) where the answer is a copy from a known relative position,
and scores it on held-out clips:

- `neighbour`: every frame's columns come in equal pairs (2k, 2k + 1); frames are independent. A
  masked token is exactly predictable when its partner is visible (spatial attention, one hop).
- `shift`: an 8 x 8 window moving over a random 64 x 64 torus map of tokens by the recorded action
  (west, east, north, south, stay; the move is kept with probability 0.8), `actions[f]` being the move
  after frame f as in the data. The next-frame check (m = 2 clean frames, the rest masked) scores
  frame 2: every token but the entering edge is a copy from frame 1 one move away (temporal then
  spatial attention, two hops, and the action to pick the direction).

    python scripts/copy_probe.py neighbour [--steps 300] [--set model.rope=spatial ...] [--out J]

Uses `configs/topdown.py` (tiny Latte, patch 1, 8 x 8 tokens, 128 codes, batch 8 of 16-frame clips)
with the `--set section.field=value` overrides. Prints one line and writes JSON. Shapes: clips
(N, F, 8, 8) int32, actions (N, F) int32.
"""

import argparse
import ast
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import topdown
from maskflow_jax.eval import prediction
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer

GRID, WORLD = 8, 64  # window and map side in tokens
MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0), 4: (0, 0)}  # action -> (d row, d col), as the topdown world


def neighbour_clips(num, frames, vocab, rng):
    """(num, frames, GRID, GRID) tokens whose columns 2k and 2k + 1 are equal, i.i.d. otherwise."""
    half = rng.integers(0, vocab, size=(num, frames, GRID, GRID // 2))
    return np.repeat(half, 2, axis=-1).astype(np.int32)


def shift_clips(num, frames, vocab, rng, p_keep=0.8, p_stay=0.05):
    """Windows moving over random token maps: (clips (num, frames, GRID, GRID), actions (num, frames))."""
    clips = np.zeros((num, frames, GRID, GRID), np.int32)
    actions = np.zeros((num, frames), np.int32)
    for i in range(num):
        world = rng.integers(0, vocab, size=(WORLD, WORLD))
        r, c = rng.integers(0, WORLD, size=2)
        a = int(rng.integers(0, 4))
        for f in range(frames):
            clips[i, f] = np.roll(world, (-r, -c), axis=(0, 1))[:GRID, :GRID]
            if rng.random() > p_keep:
                a = int(rng.integers(0, 4))
            move = 4 if rng.random() < p_stay else a
            actions[i, f] = move
            r, c = (r + MOVES[move][0]) % WORLD, (c + MOVES[move][1]) % WORLD
    return clips, actions


def probe_config(task, overrides=()):
    """configs/topdown.py for the probe: actions only for `shift`; `overrides` "section.field=value"."""
    cfg = topdown.get_config()
    cfg.model.action_cond = cfg.data.use_actions = task == "shift"
    for item in overrides:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a string, e.g. model.rope=spatial
        cfg[section][name] = value
    return cfg


def run(task, steps, overrides=(), seed=0, test_clips=64):
    """Trains on fresh clips for `steps` steps and scores held-out ones; returns a dict of figures."""
    cfg = probe_config(task, overrides)
    b, f, vocab = cfg.data.batch_size, cfg.data.frames, cfg.tokenizer.n_embed
    make = neighbour_clips if task == "neighbour" else shift_clips
    train = make(steps * b, f, vocab, np.random.default_rng(seed))
    test = make(test_clips, f, vocab, np.random.default_rng(seed + 1))
    train_tokens, train_actions = train if task == "shift" else (train, None)
    test_tokens, test_actions = test if task == "shift" else (test, None)
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    began = time.perf_counter()
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(seed))
        for i in range(steps):
            batch = {"tokens": jnp.asarray(train_tokens[b * i : b * (i + 1)])}
            if train_actions is not None:
                batch["actions"] = jnp.asarray(train_actions[b * i : b * (i + 1)])
            state, metrics = trainer.step(state, jax.device_put(batch, trainer.batch_sharding))
        loss = float(metrics["loss"])
        params = state.params
        apply = jax.jit(lambda x, t, a=None: trainer.model.apply({"params": params}, x, t, actions=a))
        out = {"task": task, "steps": steps, "overrides": list(overrides), "final_loss": loss}
        if task == "neighbour":
            keep = np.random.default_rng(seed + 2).random(test_tokens.shape) < 0.5  # t = 0.5: half visible
            partner = np.empty_like(keep)  # is the pair's other column visible?
            partner[..., 0::2], partner[..., 1::2] = keep[..., 1::2], keep[..., 0::2]
            t = jnp.full(test_tokens.shape[:2], 0.5)
            pred = np.asarray(apply(jnp.asarray(np.where(keep, test_tokens, vocab)), t)).argmax(-1)
            right = pred == test_tokens
            out["accuracy_partner_visible"] = float(right[~keep & partner].mean())
            out["accuracy_partner_masked"] = float(right[~keep & ~partner].mean())  # chance: 1 / vocab
        else:
            for name, acts in (("recorded", test_actions), ("shuffled", np.roll(test_actions, 1, axis=0))):
                r = prediction.next_frame_accuracy(apply, test_tokens, 2, mask_id=vocab, actions=acts)
                out[f"changed_accuracy_{name}"] = float(r["changed_accuracy"])
                out[f"nll_changed_{name}"] = float(r["nll_changed"])
            out["copy_accuracy"] = float(r["copy_accuracy"])
    out["seconds"] = time.perf_counter() - began
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=("neighbour", "shift"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default: print only)")
    args = parser.parse_args(argv)
    out = run(args.task, args.steps, args.set, args.seed)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
