"""FaceForensics (704 training face-crop videos) as in the MaskFlow paper: 16-frame 256² clips, Latte-XL/2.

    python -m maskflow_jax.main --config=configs/ffs.py --workdir=runs/ffs \
        --config.data.root=/data/ffs/train --config.tokenizer.init_from=/ckpt/vq-f8-converted

Tokenizer: LDM vq-f8 (32x32 tokens per frame, 16384 codes). Training per docs/method.md §9 (global batch 8,
AdamW 1e-4, 400k steps). Generation: chunk-wise (T_w 16, m 2, s 14, 20 MGM steps per chunk) to
160 frames; paper figure FVD 59.93 / 108.74 / 214.39 at 2x / 5x / 10x (reported by the paper).

`data.root` is a folder (or .zip) of videos (.avi/.mp4/.mkv/.webm) or frame folders, with train/
and test/ subfolders or without (then train and eval read the same clips, as FFS has only the 704
training videos); frames are centre-cropped and resized to data.image_size once, into ArrayRecord
clips (maskflow_jax/data/video_folder.py). Make the face crops from FaceForensics v1 with
`python scripts/preprocess_ffs.py --src /data/FaceForensics_v1 --out /data/ffs`.

Variants: `:size=B`, `:preset=ar` (m 15, s 1), `:sampler=fm`, `:runlocal`, and `:smoke`, every
stage from raw videos at toy sizes in a few minutes on a CPU (a tokenizer trained from scratch):

    python -m maskflow_jax.main --config=configs/ffs.py:smoke --workdir=/tmp/ffs_smoke \
        --config.data.root=/data/some_videos
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
    c.tokenizer.decode_uint8 = "trunc"  # the release's uint8 cast: the paper's reference sets and samples used it

    c.model.size = "XL"
    c.model.dtype = "auto"  # bfloat16 on accelerators (fp32 params, Adam state and loss), float32 on CPU
    c.train.steps = 400_000

    c.sampling.context = 2
    c.sampling.stride = 14
    c.sampling.horizon = 160

    variant = base.parse_variant(arg)
    if variant.pop("smoke", False):
        set_smoke(c)
    unused = base.apply_common_variants(c, variant)
    if unused:
        raise ValueError(f"configs/ffs.py: unknown variant keys {sorted(unused)}")
    return c


def set_smoke(c):
    """Toy sizes from raw videos: 8-frame clips of 32x32 frames, 16x16 tokens, 64 codes, a D=64 denoiser."""
    c.mode = "pipeline"  # prepare -> train tokenizer -> tokenize -> train -> sample -> FVD
    c.data.frames, c.data.image_size, c.data.resize_to, c.data.batch_size = 8, 32, 32, 4
    t = c.tokenizer
    t.ch, t.ch_mult, t.num_res_blocks, t.attn_resolutions, t.resolution = 32, (1, 2), 1, (), None
    t.z_channels, t.embed_dim, t.n_embed = 8, 8, 64
    t.train.steps, t.train.batch_size, t.train.lr = 30, 8, 4e-4
    t.train.log_every, t.train.image_every, t.train.ckpt_every = 10, 30, 30
    c.model.size, c.model.hidden, c.model.depth, c.model.heads = "tiny", 64, 2, 2
    c.model.dtype = "float32"  # bfloat16 matmuls are slow on CPUs
    c.train.steps, c.train.lr, c.train.warmup_steps, c.train.ema_decay = 30, 5e-4, 0, 0.99
    c.train.log_every, c.train.ckpt_every = 10, 15
    c.sampling.steps, c.sampling.context, c.sampling.stride, c.sampling.horizon = 4, 2, 6, 16
    c.sampling.batch_size = 2
    c.eval.num_videos, c.eval.horizons, c.eval.batch_size = 4, (2,), 4  # eval clips need >= 16 frames
