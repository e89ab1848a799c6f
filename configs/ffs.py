"""FaceForensics (704 training face-crop videos) as in the MaskFlow paper: 16-frame 256² clips, Latte-XL/2.

    python -m maskflow_jax.main --config=configs/ffs.py --workdir=runs/ffs \
        --config.data.root=/data/ffs/train --config.tokenizer.init_from=/ckpt/vq-f8-converted

Tokenizer: LDM vq-f8 (32x32 tokens per frame, 16384 codes). Training per SPEC §8 (global batch 8,
AdamW 1e-4, 400k steps). Generation: chunk-wise (T_w 16, m 2, s 14, 20 MGM steps per chunk) to
160 frames; paper figure FVD 59.93 / 108.74 / 214.39 at 2x / 5x / 10x (SPEC §10.2).

Variants: `:size=B`, `:preset=ar` (m 15, s 1), `:sampler=fm`, `:runlocal`.
"""
from configs import base


def get_config(arg=None):
    c = base.get_base()
    c.mode = "train"
    c.data.name = "ffs"
    c.data.frames = 16
    c.data.image_size = 256
    c.data.resize_to = 256
    c.data.batch_size = 8

    base.set_vqf8_tokenizer(c)

    c.model.size = "XL"
    c.model.dtype = "bfloat16"
    c.train.steps = 400_000

    c.sampling.preset = "chunk"
    c.sampling.context = 2
    c.sampling.stride = 14
    c.sampling.horizon = 160

    unused = base.apply_common_variants(c, base.parse_variant(arg))
    if unused:
        raise ValueError(f"configs/ffs.py: unknown variant keys {sorted(unused)}")
    return c
