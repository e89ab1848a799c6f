"""DMLab (TECO's DMLab-40k) as in the MaskFlow paper: 36-frame clips, 64->256 upsampling, Latte-B/2.

    python -m maskflow_jax.main --config=configs/dmlab.py --workdir=runs/dmlab \
        --config.data.root=/data/dmlab --config.tokenizer.init_from=/ckpt/vq-f8-converted

The paper tokenizes every 64x64 frame upsampled to 256x256 with the LDM vq-f8 tokenizer (16384
codes, 32x32 tokens per frame; convert it with `python -m maskflow_jax.tokenizer.convert_ldm`).
`--config.data.resize_to=64` feeds the native frames to the same weights instead (8x8 tokens; not
the paper's setting, see docs/vqf8.md). Decoded frames use the release's truncating uint8 cast.
Training follows docs/method.md §9: global batch 12, AdamW 1e-4, grad clip 2.0, EMA 0.9999, 400k steps,
masked CE with fused clipped-SNR weights. Generation: frame-by-frame autoregression (m 35, s 1)
to 360 frames (10x). Paper figure: FVD 53.17 at 1x (20 NFE, chunk-wise).

Variants: `:size=XL`, `:preset=chunk`, `:sampler=fm`, `:runlocal` (see configs/base.py).
"""

from configs import base


def get_config(arg=None):
    c = base.get_base()
    c.mode = "train"
    c.data.name = "dmlab"
    c.data.frames = 36
    c.data.image_size = 64
    c.data.resize_to = 256
    c.data.batch_size = 12
    c.data.use_actions = False

    base.set_vqf8_tokenizer(c)
    c.tokenizer.decode_uint8 = "trunc"  # the release's uint8 cast: the paper's reference sets and samples used it

    c.model.size = "B"
    c.model.dtype = "auto"  # bfloat16 on accelerators (fp32 params, Adam state and loss), float32 on CPU
    c.train.steps = 400_000

    c.sampling.context = 35  # autoregressive (the `preset=ar` layout): m = 35, s = 1
    c.sampling.stride = 1
    c.sampling.horizon = 360
    c.eval.protocol = "maskflow"
    c.mesh.shape = (-1, 1, 1)

    unused = base.apply_common_variants(c, base.parse_variant(arg))
    if unused:
        raise ValueError(f"configs/dmlab.py: unknown variant keys {sorted(unused)}")
    return c
