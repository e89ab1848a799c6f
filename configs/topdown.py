"""Built-in top-down world: the whole MaskFlow pipeline with no download, learnt on a laptop CPU.

    pip install -e . && python -m maskflow_jax.main --config=configs/topdown.py --workdir=runs/topdown

Generates trajectories of an agent walking over a persistent 2-D map, seen by a camera that follows
it (maskflow_jax/data/topdown.py, DMLab layout). A move shifts the view by exactly one 8-pixel tile;
frames are resized 64 -> 32 and tokenized with stride 4, so one move shifts the 8x8 token grid by
exactly one token and new content enters at one edge. A small VQ tokenizer, a tiny discrete Latte
denoiser conditioned on the moves, chunk-wise FM generation to 10x the clip length, FVD per horizon
against baselines, in ~16 minutes on an idle 2-core CPU.

Beyond the paper (named options, documented in configs/base.py): training clips with a clean prefix
(`flow.noise_level=prefix_shared`, the setup every sampling chunk starts from), a small random output
head (`model.head_init_std`), a warm-up that does not start at zero (`train.warmup_init`), frame f
conditioned on the moves out of it and into it (`model.action_align=both`), and rotary attention
(`model.rope=spatiotemporal`). The last two are what let the tiny model learn the moves
(docs/experiments/2026-12-02-rotary-attention.md). 1680 denoiser steps: the model leaves the copy plateau at
~600-750 steps (docs/experiments/2026-12-03-topdown-steps.md), and the long roll-outs need the steps after it:
at 840 steps one of two strip videos changes its palette after ~40 frames, from 1250 on none does, and from
1500 on lakes several tiles wide appear and move with the view (docs/experiments/2026-12-08-topdown-rollouts.md).

Variants (`--config=configs/topdown.py:noactions,smoke`): `noactions` (unconditional denoiser),
`smoke` (every stage at toy size), `accel` (scaled up for one accelerator chip and trained for a
fixed time, `train.max_seconds`; benchmarks/accelerator.py runs it), and those of configs/base.py.
"""

from configs import base


def get_config(arg=None):
    c = base.get_base()
    c.mode = "pipeline"  # data -> tokenizer -> tokens -> denoiser -> samples -> eval -> REPORT.md
    c.data.name = "topdown"  # the built-in top-down world
    c.data.frames = 16  # training clip length F
    c.data.image_size = 64  # frames on disk (DMLab's size)
    c.data.resize_to = 32  # tokenizer input: 64 -> 32 (bilinear; a tile becomes 4x4 pixels = one token)
    c.data.batch_size = 8  # clips per denoiser step
    c.data.use_actions = True  # read the recorded moves (the denoiser is conditioned on them)
    c.data.topdown.num_train = 128  # training trajectories
    c.data.topdown.num_test = 24  # held-out trajectories (another seed), all used by the eval
    c.data.topdown.length = 160  # frames per trajectory: the longest horizon (10 x 16)

    c.tokenizer.ch = 32  # base channels of the small VQ model
    c.tokenizer.encoder = "patch"  # a token is a function of its own 4x4 patch (one tile): moves are token shifts
    c.tokenizer.ch_mult = (1, 2, 2)  # two downsamplings: 32x32 -> 8x8 tokens (stride 4 = one tile)
    c.tokenizer.num_res_blocks = 1  # residual blocks per level
    c.tokenizer.z_channels = 32  # bottleneck channels
    c.tokenizer.embed_dim = 32  # code vector size
    c.tokenizer.n_embed = 128  # codes (vocabulary 129 with MASK)
    c.tokenizer.train.steps = 400  # tokenizer steps (~2.5 minutes here)
    c.tokenizer.train.batch_size = 16  # frames per tokenizer step
    c.tokenizer.train.lr = 1e-3  # Adam learning rate
    c.tokenizer.train.image_every = 200  # steps between reconstruction PNGs
    c.tokenizer.train.ckpt_every = 200  # steps between tokenizer checkpoints

    c.model.size = "tiny"  # D 128, 4 blocks, 4 heads
    c.model.patch = 1  # one transformer token per VQ token (8x8 per frame)
    c.model.action_cond = True  # condition on the moves (5 codes, see maskflow_jax/data/topdown.py)
    c.model.num_actions = 5  # west, east, north, south, stay
    c.model.action_align = "both"  # frame f gets the move out of it (actions[f]) and the move into it (actions[f - 1])
    c.model.rope = "spatiotemporal"  # rotary q/k: a per-frame query selects a relative offset (a one-token move)
    c.model.head_init_std = 0.02  # a small random head: the body gets gradients from step 0
    c.model.fusion_barrier = False  # here its copies cost ~10 % of a step (docs/performance.md §8)

    c.flow.noise_level = "prefix_shared"  # half the clips: clean prefix, the rest at one shared t
    c.flow.prefix_prob = 0.5  # share of clips with a clean prefix

    c.train.steps = 1680  # denoiser steps (~11 minutes on an idle 2-core CPU); see the docstring
    c.train.lr = 2e-3  # AdamW learning rate
    c.train.warmup_steps = 50  # linear warm-up
    c.train.warmup_init = 0.1  # ... from 0.1 x lr
    c.train.ema_decay = 0.995  # EMA of the weights (used for sampling)
    c.train.ema_warmup = True  # EMA decay min(0.995, (1 + step) / (10 + step)) for a short run
    c.train.log_every = 50  # steps between metric lines
    c.train.ckpt_every = 250  # steps between checkpoints

    c.sampling.sampler = "fm"  # FM keeps the world moving over 160 frames; MGM freezes it (docs/experiments)
    c.sampling.steps = 12  # sampling steps (NFE) per chunk
    c.sampling.randomize = "linear"  # with `sampler=mgm`: confidence log p + annealed Gumbel noise
    c.sampling.context = 2  # m: chunk-wise rollouts, 2 context frames then 14 new frames per chunk
    c.sampling.stride = 14  # s
    c.sampling.horizon = 160  # 10x the clip length
    c.eval.protocol = "maze"  # held-out videos of the built-in world (another seed) as the reference
    c.eval.num_videos = 24  # every held-out video
    c.eval.horizons = (1, 2, 5, 10)  # FVD at 16, 32, 80 and 160 frames

    variant = base.parse_variant(arg)
    if variant.pop("noactions", False):
        c.model.action_cond = c.data.use_actions = False
    if variant.pop("accel", False):
        set_accel(c)
    if variant.pop("smoke", False):  # after accel: `accel,smoke` is the accelerator run at toy size (its dry run)
        set_smoke(c)
    unused = base.apply_common_variants(c, variant)
    if unused:
        raise ValueError(f"configs/topdown.py: unknown variant keys {sorted(unused)}")
    return c


def set_accel(c):
    """One accelerator chip for a fixed time: 4x the trajectories, 8x the batch, as many steps as
    `train.max_seconds` allows, bf16 on accelerators (dtype auto: float32 on a CPU). The denoiser keeps
    the tiny width (1.3M parameters) so a run's weights stay small enough to ship (docs/accelerators.md)."""
    c.data.topdown.num_train = 512  # training trajectories (~20 s to generate on one CPU core)
    c.data.batch_size = 64  # clips per denoiser step
    c.tokenizer.train.batch_size = 64  # frames per tokenizer step
    c.model.dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU
    c.train.steps = 1_000_000  # an upper bound: train.max_seconds ends the run
    c.train.max_seconds = 150.0  # training time (benchmarks/accelerator.py sets it from its budget)
    c.train.warmup_steps = 200  # linear warm-up
    c.train.ema_decay = 0.999  # thousands of steps: a longer average than the CPU run's 0.995
    c.train.log_every = 250  # steps between metric lines
    c.train.ckpt_every = 5000  # steps between checkpoints (and one when the time is up)
    c.train.keep_checkpoints = 1  # only the newest: the run is packed and shipped


def set_smoke(c):
    """Every pipeline stage at toy sizes: 8-frame clips, 8x8 tokens, 64 codes."""
    c.data.frames, c.data.batch_size = 8, 8
    c.data.topdown.num_train, c.data.topdown.num_test, c.data.topdown.length = 8, 4, 34
    t = c.tokenizer
    t.ch, t.z_channels, t.embed_dim, t.n_embed = 32, 8, 8, 64
    t.train.steps, t.train.batch_size, t.train.log_every, t.train.image_every, t.train.ckpt_every = 30, 8, 10, 30, 30
    c.model.hidden, c.model.depth, c.model.heads = 64, 2, 2
    c.train.steps, c.train.log_every, c.train.ckpt_every, c.train.warmup_steps = 30, 10, 15, 0
    c.sampling.steps, c.sampling.context, c.sampling.stride, c.sampling.horizon = 4, 2, 6, 34
    c.sampling.batch_size = 2
    c.eval.num_videos, c.eval.horizons, c.eval.batch_size = 4, (2,), 4
    ef = c.eval.efficiency
    ef.mgm_steps, ef.fm_steps, ef.num_videos, ef.lengths = (2, 4), (4,), 4, (3,)
