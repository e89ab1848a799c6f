"""Converts the LDM/SD "vq-f8" PyTorch Lightning checkpoint into our tokenizer parameters.

    python -m maskflow_jax.tokenizer.convert_ldm --ckpt vq-f8.ckpt --out DIR

Reads the checkpoint without torch (`torch_pickle`), drops `loss.*` keys (LPIPS, discriminator),
maps every remaining key to our Flax tree (NCHW conv kernels -> HWIO), checks that exactly the
expected keys and shapes are present, and writes `DIR/params` (orbax) + `DIR/tokenizer.json`
(the tokenizer config), so configs can say `--config.tokenizer.init_from=DIR`.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from maskflow_jax.tokenizer.model import downsampling_factor, make_vq_model
from maskflow_jax.tokenizer.torch_pickle import load_torch_zip

# "resolution" fixes the architecture (attention at the 32x32 level of the 256x256 layout); the converted
# model takes frames of any size divisible by 8 (docs/vqf8.md).
VQF8 = {
    "ch": 128,
    "ch_mult": (1, 2, 2, 4),
    "num_res_blocks": 2,
    "attn_resolutions": (32,),
    "z_channels": 4,
    "embed_dim": 4,
    "n_embed": 16384,
    "beta": 0.25,
    "l2_normalize": False,
    "resolution": 256,
}


class ConversionError(ValueError):
    """The checkpoint does not match the expected architecture; the message lists the keys."""


def flax_path(key):
    """'encoder.down.0.block.1.norm1.weight' -> ('encoder', 'down_0_block_1', 'norm1', 'weight')."""
    parts = key.split(".")
    out = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p in ("down", "up") and i + 2 < len(parts) and parts[i + 1].isdigit():
            if parts[i + 2] in ("block", "attn") and i + 3 < len(parts) and parts[i + 3].isdigit():
                out.append(f"{p}_{parts[i + 1]}_{parts[i + 2]}_{parts[i + 3]}")
                i += 4
                continue
            out.append(f"{p}_{parts[i + 1]}_{parts[i + 2]}")  # downsample / upsample
            i += 3
            continue
        if p == "mid" and i + 1 < len(parts):
            out.append(f"mid_{parts[i + 1]}")
            i += 2
            continue
        out.append(p)
        i += 1
    return tuple(out)


def convert_state_dict(state_dict, tok_cfg=None):
    """PyTorch state_dict (name -> numpy) -> our params, checked against the model's expected tree."""
    tok_cfg = ml_collections.ConfigDict(tok_cfg or VQF8)
    n = downsampling_factor(tok_cfg)  # the smallest input: the parameters do not depend on the input size
    model = make_vq_model(tok_cfg)  # the architecture (attention placement) from tok_cfg.resolution, not the input
    expected = traverse_util.flatten_dict(
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, n, n, 3))))["params"]
    )
    converted, problems = {}, []
    for key, value in state_dict.items():
        if key.startswith("loss."):
            continue
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            problems.append(f"{key}: dtype {value.dtype} (model weights must be floating point)")
            continue
        path = flax_path(key)
        leaf = path[-1]
        if key == "quantize.embedding.weight":
            target, value = ("quantize", "embedding"), value
        elif leaf == "weight" and value.ndim == 4:
            target, value = path[:-1] + ("kernel",), value.transpose(2, 3, 1, 0)
        elif leaf == "weight":
            target = path[:-1] + ("scale",)
        elif leaf == "bias":
            target = path
        else:
            problems.append(f"{key}: unexpected parameter name")
            continue
        if target not in expected:
            problems.append(f"{key}: unexpected key (no parameter {'/'.join(target)} in the model)")
            continue
        if tuple(value.shape) != tuple(expected[target].shape):
            problems.append(
                f"{key}: shape {tuple(value.shape)} after conversion, expected {tuple(expected[target].shape)}"
            )
            continue
        converted[target] = value.astype(np.float32)
    missing = sorted("/".join(k) for k in expected if k not in converted)
    if missing:
        problems.append(f"missing {len(missing)} keys: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    if problems:
        raise ConversionError("checkpoint does not match the tokenizer architecture:\n  " + "\n  ".join(problems))
    return traverse_util.unflatten_dict(converted)


def convert(ckpt_path, out_dir, tok_cfg=None):
    """Converts `ckpt_path` and writes DIR/params + DIR/tokenizer.json; returns the params."""
    import orbax.checkpoint as ocp  # noqa: PLC0415

    obj = load_torch_zip(ckpt_path)
    state_dict = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    if not isinstance(state_dict, dict):
        raise ConversionError(f"{ckpt_path}: no state_dict found (top-level object is {type(obj).__name__})")
    params = convert_state_dict(state_dict, tok_cfg)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(out_dir, "params"), params, force=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({k: list(v) if isinstance(v, tuple) else v for k, v in dict(tok_cfg or VQF8).items()}, f, indent=1)
    return params


def load_converted(directory):
    """(params, tokenizer config dict) written by `convert`."""
    import orbax.checkpoint as ocp  # noqa: PLC0415

    directory = os.path.abspath(directory)
    cfg_path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(
            f"{directory} is not a converted tokenizer (no tokenizer.json); run "
            "python -m maskflow_jax.tokenizer.convert_ldm --ckpt vq-f8.ckpt --out DIR"
        )
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(os.path.join(directory, "params"))
    return params, cfg


ARCHITECTURE = (
    "ch",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "z_channels",
    "embed_dim",
    "n_embed",
    "resolution",
)


def check_config(saved, tok_cfg, directory="the converted tokenizer"):
    """Raises ValueError naming every architecture field where config.tokenizer differs from the
    tokenizer.json that `convert` wrote (fields absent from tokenizer.json are not compared)."""
    norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    diff = [
        f"config.tokenizer.{k}={norm(tok_cfg.get(k))!r} but {directory} has {norm(saved[k])!r}"
        for k in ARCHITECTURE
        if k in saved and norm(tok_cfg.get(k)) != norm(saved[k])
    ]
    if diff:
        raise ValueError(
            "the tokenizer config does not match the converted weights (configs/base.py "
            "set_vqf8_tokenizer sets vq-f8's):\n  " + "\n  ".join(diff)
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="vq-f8 .ckpt (PyTorch Lightning zip)")
    parser.add_argument("--out", required=True, help="output folder for --config.tokenizer.init_from")
    args = parser.parse_args(argv)
    params = convert(args.ckpt, args.out)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    print(f"converted {n:,} parameters to {args.out}")


if __name__ == "__main__":
    main()
