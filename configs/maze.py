"""Built-in procedural maze: the whole MaskFlow pipeline with no download, on a laptop CPU.

    pip install -e . && python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze

Generates first-person maze trajectories in the DMLab format (maskflow_jax/data/maze.py), trains a
small VQ tokenizer (64x64 frames resized to 32x32 -> 8x8 tokens, 128 codes), a small discrete
Latte denoiser (patch 1: one transformer token per VQ token) on 16-frame clips, generates videos to
10x the clip length with the chunk-wise MGM sampler (annealed Gumbel confidence) and reports FVD
per horizon against baselines. Sizes fit ~20 minutes on a 2-core CPU.

Variants (`--config=configs/maze.py:size=S,sampler=fm,runlocal`): see configs/base.py; `smoke`
runs every stage at toy sizes in a few minutes (used by the tests).
"""

from configs import base


def get_config(arg=None):
    c = base.get_base()
    c.mode = "pipeline"
    c.data.name = "maze"
    c.data.frames = 16
    c.data.image_size = 64
    c.data.resize_to = 32  # frames are 64x64 on disk; the laptop tokenizer works at 32x32
    c.data.batch_size = 8
    c.data.use_actions = False

    c.tokenizer.ch = 32
    c.tokenizer.ch_mult = (1, 2, 2)  # two downsamplings: 32x32 -> 8x8 tokens
    c.tokenizer.num_res_blocks = 1
    c.tokenizer.z_channels = 32
    c.tokenizer.embed_dim = 32
    # 128 codes: held-out PSNR 19.0 dB, the same as 512 codes (18.2-19.0 dB) at this training budget, but
    # consecutive frames share 40% of their tokens instead of 33%, so the denoiser's targets are less noisy.
    c.tokenizer.n_embed = 128  # vocabulary 129 with MASK
    c.tokenizer.train.steps = 400
    c.tokenizer.train.batch_size = 16
    c.tokenizer.train.lr = 1e-3  # 4e-4 gave 0.5 dB less at 400 steps
    c.tokenizer.train.image_every = 200
    c.tokenizer.train.ckpt_every = 200

    c.model.size = "tiny"  # D 128, 4 blocks, 4 heads
    # Patch 1 on the 8x8 grid: at patch 2 one 128-d vector must carry four of 512 codes in and out, and
    # the model had not learned even to copy the previous frame after 1000 steps (masked accuracy 0.19);
    # patch 1 reaches 0.35 at 1500 steps. A step costs ~0.73 s instead of ~0.4 s (train_metrics.jsonl).
    c.model.patch = 1
    c.model.fusion_barrier = False  # here its copies cost ~10 % of a step (docs/performance.md §8)
    c.train.steps = 560
    c.train.lr = 2e-3  # reaches at 300 steps the held-out accuracy 5e-4 reached at 560
    c.train.warmup_steps = 50
    c.train.ema_decay = 0.995
    c.train.ema_warmup = (
        True  # min(0.995, (1 + step) / (10 + step)): a fixed 0.995 keeps 6% of the init after 560 steps
    )
    c.train.log_every = 50
    c.train.ckpt_every = 250

    # MaskGIT's annealed Gumbel confidence: with greedy confidence this small model commits the tokens
    # of the previous frame first and the camera freezes after a few frames.
    c.sampling.randomize = "linear"
    c.sampling.steps = 12  # MGM steps (NFE) per chunk: with 20 (and 700 denoiser steps) the run took 21 min
    c.sampling.context = 2
    c.sampling.stride = 14
    c.sampling.horizon = 160  # 10x the clip length
    c.data.maze.num_train = 128
    c.data.maze.num_test = 24
    c.data.maze.length = 160  # held-out videos must cover the longest horizon (10 x 16 frames)
    c.eval.protocol = "maze"  # held-out procedural videos (another seed) as the reference
    # Every held-out video: the eval stage's I3D runs 24 videos x (4 sets x 4 horizons + the frozen set) = 408
    # clips at ~0.8 s. FVD from 10 videos ranked MaskFlow and the frozen frame differently on different subsets
    # (README, 'What the 20-minute maze run learns'); 24 instead of 16 since the untrained baseline costs no
    # network evaluations (inference.untrained_run).
    c.eval.num_videos = 24
    c.eval.horizons = (1, 2, 5, 10)

    variant = base.parse_variant(arg)
    if variant.pop("smoke", False):
        set_smoke(c)
    unused = base.apply_common_variants(c, variant)
    if unused:
        raise ValueError(f"configs/maze.py: unknown variant keys {sorted(unused)}")
    return c


def set_smoke(c):
    """Every pipeline stage at toy sizes: 8-frame clips of 32x32 frames, 16x16 tokens, 64 codes."""
    c.data.frames, c.data.resize_to, c.data.batch_size = 8, 32, 8
    c.data.maze.num_train, c.data.maze.num_test, c.data.maze.length = 8, 4, 34
    t = c.tokenizer
    t.ch, t.ch_mult, t.z_channels, t.embed_dim, t.n_embed = 32, (1, 2), 8, 8, 64
    t.train.steps, t.train.batch_size, t.train.log_every, t.train.image_every, t.train.ckpt_every = 30, 8, 10, 30, 30
    c.model.size, c.model.hidden, c.model.depth, c.model.heads, c.model.patch = "tiny", 64, 2, 2, 2
    c.train.steps, c.train.log_every, c.train.ckpt_every, c.train.warmup_steps = 30, 10, 15, 0
    c.sampling.steps, c.sampling.context, c.sampling.stride, c.sampling.horizon = 4, 2, 6, 34  # 2 FVD windows
    c.sampling.batch_size = 2
    c.eval.num_videos, c.eval.horizons, c.eval.batch_size = 4, (2,), 4
    ef = c.eval.efficiency
    ef.mgm_steps, ef.fm_steps, ef.num_videos = (2, 4), (4,), 4  # 16-frame sweep videos = 3 chunks of 8 frames
    ef.lengths = (3,)  # 24 frames: the FVD clip [8, 24) is generated in both modes (AR has m = 7)
