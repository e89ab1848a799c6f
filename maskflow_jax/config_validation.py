"""Checks a config tree before anything expensive runs; errors name the field and the fix."""

import math

from maskflow_jax.data import topdown
from maskflow_jax.errors import ConfigError
from maskflow_jax.eval import i3d
from maskflow_jax.eval.protocols import BASELINES, PROTOCOLS, get_protocol
from maskflow_jax.flow import corruption, schedules
from maskflow_jax.models.latte import ACTION_ALIGNS, DTYPE_CHOICES, PRESETS, ROPE_CHOICES, resolve_dtype
from maskflow_jax.models.layers import ATTENTION_CHOICES, resolve_attention
from maskflow_jax.parallel.mesh import BATCH_MESH_AXES
from maskflow_jax.tokenizer.api import UINT8_RULES
from maskflow_jax.tokenizer.model import check_tokenizer_config, valid_sizes
from maskflow_jax.train.optimizer import LR_SCHEDULES


def _check(cond, field, msg):
    if not cond:
        raise ConfigError(f"config.{field}: {msg}")


def _one_of(value, field, choices):
    _check(value in choices, field, f"got {value!r}; expected one of {list(choices)} (--config.{field}=...)")


def token_grid(cfg):
    """(h, w) tokens per frame implied by data.resize_to and the tokenizer's downsampling."""
    factor = 2 ** (len(cfg.tokenizer.ch_mult) - 1)
    return cfg.data.resize_to // factor, cfg.data.resize_to // factor


def validate(cfg, num_devices=None):
    """Raises ConfigError on the first invalid field. `num_devices` enables the mesh checks."""
    d, t, m, f, s, tr, e = cfg.data, cfg.tokenizer, cfg.model, cfg.flow, cfg.sampling, cfg.train, cfg.eval
    _one_of(d.name, "data.name", ("maze", "topdown", "dmlab", "ffs", "video_folder"))
    _check(d.frames >= 2, "data.frames", f"got {d.frames}; a clip needs at least 2 frames")
    _check(d.frame_skip >= 1, "data.frame_skip", f"got {d.frame_skip}; use 1 for consecutive frames")
    _check(d.batch_size >= 1, "data.batch_size", f"got {d.batch_size}; must be positive")
    _check(d.image_size >= 8, "data.image_size", f"got {d.image_size}")
    factor = 2 ** (len(t.ch_mult) - 1)
    _check(
        d.resize_to >= factor and d.resize_to % factor == 0,
        "data.resize_to",
        f"{d.resize_to} is not a frame size the tokenizer takes (tokenizer.ch_mult={tuple(t.ch_mult)}): valid "
        f"sizes are the {valid_sizes(factor, d.resize_to)}",
    )
    try:
        check_tokenizer_config(t)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _one_of(t.get("decode_uint8", "round"), "tokenizer.decode_uint8", UINT8_RULES)
    h, w = token_grid(cfg)
    _check(h % m.patch == 0, "model.patch", f"the token grid {h}x{w} is not divisible by the patch size {m.patch}")
    _check(t.n_embed >= 2, "tokenizer.n_embed", f"got {t.n_embed}")
    _check(0 < t.beta, "tokenizer.beta", f"got {t.beta}; the commitment weight must be positive")

    _one_of(m.size, "model.size", tuple(PRESETS))
    if m.hidden is not None and m.heads is not None:
        _check(m.hidden % m.heads == 0, "model.hidden", f"{m.hidden} is not divisible by model.heads={m.heads}")
    if m.depth is not None:
        _check(
            m.depth >= 2 and m.depth % 2 == 0,
            "model.depth",
            f"got {m.depth}; blocks come in (spatial, temporal) pairs, so use an even number >= 2",
        )
    _one_of(m.dtype, "model.dtype", DTYPE_CHOICES)
    _one_of(m.param_dtype, "model.param_dtype", ("float32", "bfloat16"))
    _one_of(m.get("attention", "auto"), "model.attention", ATTENTION_CHOICES)
    if m.get("attention", "auto") == "cudnn" and m.size in PRESETS:  # a forced kernel must be able to run here
        _, hidden, heads = PRESETS[m.size]
        hidden, heads = m.hidden or hidden, m.heads or heads
        try:
            resolve_attention("cudnn", resolve_dtype(m.dtype), hidden // heads)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if m.get("masked_head", False):
        _check(
            f.mask_ce,
            "model.masked_head",
            "evaluates the head at masked positions only, but flow.mask_ce=False puts every position in the "
            "loss: set --config.flow.mask_ce=True or --config.model.masked_head=False",
        )
    _check(
        0 < m.get("masked_head_chunk", 0.25) <= 1,
        "model.masked_head_chunk",
        f"got {m.get('masked_head_chunk')}; a fraction of the positions of a clip in (0, 1]",
    )
    _one_of(m.remat_policy, "model.remat_policy", ("nothing", "dots"))
    if m.action_cond:
        _check(
            d.use_actions,
            "model.action_cond",
            "an action-conditioned model needs the clips' actions: also set config.data.use_actions=True",
        )
        _check(m.num_actions >= 1, "model.num_actions", f"got {m.num_actions}; DMLab and the maze use 3, topdown 5")
        codes = {"maze": 3, "topdown": topdown.NUM_ACTIONS}.get(d.name)  # the built-in worlds' action codes
        _check(
            codes is None or m.num_actions >= codes,
            "model.num_actions",
            f"got {m.num_actions}, but data.name={d.name!r} records {codes} action codes: set it to {codes}",
        )
    _one_of(m.get("action_align", "after"), "model.action_align", ACTION_ALIGNS)
    _one_of(m.get("rope", "none"), "model.rope", ROPE_CHOICES)
    if (
        m.get("rope", "none") != "none" and m.size in PRESETS
    ):  # 2-D rotary: the head dim's pairs split over rows, columns
        _, hidden, heads = PRESETS[m.size]
        head_dim = (m.hidden or hidden) // (m.heads or heads)
        _check(
            head_dim % 4 == 0,
            "model.rope",
            f"needs a head dim (model.hidden / model.heads) divisible by 4; got {head_dim}",
        )
    _check(m.get("head_init_std", 0.0) >= 0, "model.head_init_std", f"got {m.get('head_init_std')}; 0 (zeros) or a std")

    _one_of(f.kappa, "flow.kappa", schedules.NAMES)
    _one_of(f.noise_level, "flow.noise_level", corruption.NOISE_LEVELS)
    _check(0.0 <= f.get("prefix_prob", 0.5) <= 1.0, "flow.prefix_prob", f"got {f.get('prefix_prob')}; a probability")
    _one_of(f.reweigh, "flow.reweigh", ("snr", "none"))
    _check(0 < f.sampling_eps < 1, "flow.sampling_eps", f"got {f.sampling_eps}; must be in (0, 1)")
    _check(f.snr_clip > 0, "flow.snr_clip", f"got {f.snr_clip}")
    _check(0 <= f.snr_decay < 1, "flow.snr_decay", f"got {f.snr_decay}; must be in [0, 1)")

    _one_of(s.sampler, "sampling.sampler", ("mgm", "fm"))
    _check(s.steps >= 1, "sampling.steps", f"got {s.steps}")
    _check(s.temperature > 0, "sampling.temperature", f"got {s.temperature}")
    _one_of(s.mgm_mode, "sampling.mgm_mode", ("arccos", "cosine", "linear", "square", "root"))
    _one_of(s.randomize, "sampling.randomize", ("none", "linear"))
    _one_of(s.time_input, "sampling.time_input", ("clean", "unmasked_fraction"))
    _one_of(s.scheduling_matrix, "sampling.scheduling_matrix", ("full_sequence", "pyramid"))
    _check(
        0 <= s.context < d.frames,
        "sampling.context",
        f"got {s.context}; the context must be shorter than the window data.frames={d.frames}",
    )
    window = s.get("window", 0) or d.frames
    _check(
        0 <= s.get("window", 0) <= d.frames and s.context < window,
        "sampling.window",
        f"got {s.get('window', 0)}; 0 (= data.frames={d.frames}) or a window in (sampling.context, data.frames]",
    )
    _check(
        1 <= s.stride <= window - s.context,
        "sampling.stride",
        f"got {s.stride}; need 1 <= stride <= window - sampling.context = {window - s.context} "
        "(window: sampling.window, or data.frames when it is 0)",
    )
    _check(
        s.horizon >= max(s.context, 1),
        "sampling.horizon",
        f"got {s.horizon}; must be at least the context length {s.context}",
    )
    _check(s.batch_size >= 1, "sampling.batch_size", f"got {s.batch_size}")

    _check(tr.steps >= 1, "train.steps", f"got {tr.steps}")
    _check(tr.get("max_seconds", 0) >= 0, "train.max_seconds", f"got {tr.get('max_seconds')}; 0 (off) or seconds")
    _check(tr.lr > 0, "train.lr", f"got {tr.lr}")
    _check(tr.warmup_steps >= 0, "train.warmup_steps", f"got {tr.warmup_steps}")
    _check(
        0.0 <= tr.get("warmup_init", 0.0) <= 1.0,
        "train.warmup_init",
        f"got {tr.get('warmup_init')}; a fraction of train.lr in [0, 1]",
    )
    _check(
        tr.get("lr_schedule", "constant") in LR_SCHEDULES,
        "train.lr_schedule",
        f"got {tr.get('lr_schedule')!r}; expected one of {LR_SCHEDULES}",
    )
    _check(0 <= tr.ema_decay < 1, "train.ema_decay", f"got {tr.ema_decay}; must be in [0, 1)")
    _check(tr.grad_clip > 0, "train.grad_clip", f"got {tr.grad_clip}")
    _check(tr.grad_accum >= 1, "train.grad_accum", f"got {tr.grad_accum}")
    _check(
        d.batch_size % tr.grad_accum == 0,
        "train.grad_accum",
        f"data.batch_size={d.batch_size} does not split into {tr.grad_accum} microbatches",
    )
    _check(tr.log_every >= 1, "train.log_every", f"got {tr.log_every}")
    _check(tr.ckpt_every >= 1, "train.ckpt_every", f"got {tr.ckpt_every}")
    _check(tr.keep_checkpoints >= 1, "train.keep_checkpoints", f"got {tr.keep_checkpoints}")

    _one_of(e.protocol, "eval.protocol", tuple(PROTOCOLS))
    _check(
        set(e.get("baselines", ())) <= set(BASELINES),
        "eval.baselines",
        f"got {tuple(e.get('baselines', ()))}; each one of {tuple(BASELINES)}",
    )
    _check(len(e.get("seeds", (0,))) >= 1, "eval.seeds", "needs at least one seed")
    _check(e.fvd_frames >= i3d.MIN_FRAMES, "eval.fvd_frames", f"got {e.fvd_frames}; the I3D needs >= {i3d.MIN_FRAMES}")
    rule = get_protocol(e.protocol).decode_uint8
    _check(
        rule is None or t.get("decode_uint8", "round") == rule,
        "tokenizer.decode_uint8",
        f"got {t.get('decode_uint8', 'round')!r} but eval.protocol={e.protocol!r} compares videos decoded with the "
        f"{rule!r} rule: set --config.tokenizer.decode_uint8={rule} (or another eval.protocol)",
    )
    _check(e.num_videos >= 2, "eval.num_videos", f"got {e.num_videos}; FVD needs at least 2 videos")
    world = d.name if d.name in ("maze", "topdown") else None  # a built-in world's held-out split has exactly
    held_out = d[world].num_test if world else None  # data.<world>.num_test videos
    _check(
        held_out is None or e.num_videos <= held_out,
        "eval.num_videos",
        f"{e.num_videos} > data.{world}.num_test={held_out} held-out {world} videos: lower it or raise "
        f"data.{world}.num_test",
    )
    ef = e.get("efficiency")
    if ef is not None:
        steps = tuple(ef.mgm_steps) + tuple(ef.fm_steps)
        _check(
            steps and all(x >= 1 for x in steps),
            "eval.efficiency.mgm_steps",
            f"mgm_steps={tuple(ef.mgm_steps)}, fm_steps={tuple(ef.fm_steps)}: need at least one count, all >= 1",
        )
        _check(ef.num_videos >= 2, "eval.efficiency.num_videos", f"got {ef.num_videos}; FVD needs at least 2 videos")
        _check(
            held_out is None or ef.num_videos <= held_out,
            "eval.efficiency.num_videos",
            f"{ef.num_videos} > data.{world}.num_test={held_out} held-out {world} videos: lower it or raise "
            f"data.{world}.num_test",
        )
        _check(
            len(ef.lengths) and all(x >= 1 for x in ef.lengths),
            "eval.efficiency.lengths",
            f"got {tuple(ef.lengths)}; multiples of data.frames, each >= 1",
        )

    shape, axes = tuple(cfg.mesh.shape), tuple(cfg.mesh.axes)
    batch_rule = [tuple(r[1]) if not isinstance(r[1], str) else (r[1],) for r in cfg.mesh.rules if r[0] == "batch"]
    _check(
        batch_rule == [BATCH_MESH_AXES],
        "mesh.rules",
        f"the 'batch' rule must be ('batch', {BATCH_MESH_AXES}) (the data loader splits the batch that way); "
        f"got {batch_rule}",
    )
    _check(
        len(shape) == len(axes), "mesh.shape", f"{shape} has {len(shape)} entries but mesh.axes={axes} has {len(axes)}"
    )
    _check(sum(1 for x in shape if x == -1) <= 1, "mesh.shape", f"{shape}: at most one axis may be -1")
    _check(all(x == -1 or x >= 1 for x in shape), "mesh.shape", f"{shape}: sizes must be >= 1 or -1")
    if num_devices is not None:
        fixed = math.prod(x for x in shape if x != -1)
        _check(
            num_devices % fixed == 0,
            "mesh.shape",
            f"{shape} needs a multiple of {fixed} devices but {num_devices} are available",
        )
        full = tuple(num_devices // fixed if x == -1 else x for x in shape)
        _check(
            math.prod(full) == num_devices,
            "mesh.shape",
            f"{shape} covers {math.prod(full)} devices but {num_devices} are available; put -1 on one axis",
        )
        batch_devices = math.prod(n for n, a in zip(full, axes) if a in BATCH_MESH_AXES)
        _check(
            d.batch_size % batch_devices == 0,
            "data.batch_size",
            f"{d.batch_size} is not divisible by the {batch_devices} devices of the batch axes "
            f"(data x fsdp of mesh {full}); use a multiple of {batch_devices}",
        )
    return cfg
