"""Built-in procedural maze: the whole MaskFlow pipeline with no download, on a laptop CPU.

    pip install -e . && python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze

Generates first-person maze trajectories in the DMLab format (maskflow_jax/data/maze.py), trains a
small VQ tokenizer (64x64 frames -> 16x16 tokens, 1024 codes), a small discrete Latte denoiser on
16-frame clips, and generates long videos with the MGM sampler.

Variants (`--config=configs/maze.py:size=S,sampler=fm,runlocal`): see configs/base.py.
"""
from configs import base


def get_config(arg=None):
    c = base.get_base()
    c.mode = "pipeline"
    c.data.name = "maze"
    c.data.frames = 16
    c.data.image_size = 64
    c.data.resize_to = 64
    c.data.batch_size = 8
    c.data.use_actions = False

    c.tokenizer.ch = 32
    c.tokenizer.ch_mult = (1, 2, 2)  # two downsamplings: 64x64 -> 16x16 tokens
    c.tokenizer.num_res_blocks = 1
    c.tokenizer.z_channels = 32
    c.tokenizer.embed_dim = 32
    c.tokenizer.n_embed = 1024  # vocabulary 1025 with MASK
    c.tokenizer.train.steps = 1500
    c.tokenizer.train.batch_size = 32

    c.model.size = "tiny"
    c.train.steps = 3000
    c.train.lr = 3e-4
    c.train.warmup_steps = 100
    c.train.ema_decay = 0.999
    c.train.log_every = 50
    c.train.ckpt_every = 500
    c.train.sample_every = 0

    c.sampling.preset = "chunk"
    c.sampling.context = 2
    c.sampling.stride = 14
    c.sampling.horizon = 160  # 10x the clip length
    c.eval.num_videos = 16
    c.eval.horizons = (1, 2, 5, 10)

    unused = base.apply_common_variants(c, base.parse_variant(arg))
    if unused:
        raise ValueError(f"configs/maze.py: unknown variant keys {sorted(unused)}")
    return c
