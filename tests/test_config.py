"""Config parsing: dataset configs, variants, overrides, validation errors that name the field."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from configs import base, dmlab, ffs, maze, topdown
from maskflow_jax import config_validation
from maskflow_jax.config_validation import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [maze, topdown, dmlab, ffs])
def test_dataset_configs_validate(module):
    cfg = module.get_config()
    validate(cfg, num_devices=4)
    if module in (maze, topdown):  # and the toy-size variant the tests and newcomers run
        validate(module.get_config("smoke"), num_devices=4)


def test_paper_settings():
    d = dmlab.get_config()
    assert (d.data.frames, d.data.image_size, d.data.resize_to, d.model.size) == (36, 64, 256, "B")
    assert config_validation.token_grid(d) == (32, 32)
    assert d.tokenizer.n_embed == 16384
    f = ffs.get_config()
    assert (f.data.frames, f.data.resize_to, f.model.size) == (16, 256, "XL")
    assert (f.sampling.context, f.sampling.stride, f.sampling.horizon) == (2, 14, 160)
    assert (f.train.lr, f.train.grad_clip, f.train.ema_decay) == (1e-4, 2.0, 0.9999)


def test_variants():
    cfg = ffs.get_config("size=B,preset=ar,sampler=fm")
    assert cfg.model.size == "B" and cfg.sampling.sampler == "fm"
    assert (cfg.sampling.context, cfg.sampling.stride) == (15, 1)
    local = maze.get_config("runlocal")
    assert local.model.size == "tiny" and local.train.steps < 100
    assert not local.model.action_cond
    acting = maze.get_config("actions")
    assert acting.model.action_cond and acting.data.use_actions
    validate(acting)
    with pytest.raises(ValueError, match="unknown variant keys"):
        maze.get_config("sizee=B")
    with pytest.raises(ValueError, match="preset"):
        maze.get_config("preset=zigzag")


def test_every_topdown_field_has_a_comment_and_paper_configs_keep_the_paper_mixture():
    source = (ROOT / "configs" / "topdown.py").read_text()
    body = source.split("def get_config(arg=None):")[1].split("variant = base.parse_variant")[0]
    fields = [ln for ln in body.splitlines() if ln.strip().startswith("c.") and " = " in ln]
    missing = [ln for ln in fields if "#" not in ln]
    assert len(fields) > 30 and not missing, missing
    assert topdown.get_config("noactions").model.action_cond is False
    for module in (dmlab, ffs, maze):  # paper parity / the maze as it was: the release's mixture and init
        cfg = module.get_config()
        assert cfg.flow.noise_level == "random_all" and cfg.model.head_init_std == 0.0
        assert cfg.train.warmup_init == 0.0 and cfg.model.action_align == "after"


def test_topdown_actions_need_its_five_action_codes():
    cfg = topdown.get_config()
    cfg.model.num_actions = 3  # the maze's count: ids 3 and 4 would be clamped silently by the embedding
    with pytest.raises(ConfigError, match=r"config.model.num_actions.*records 5 action codes"):
        validate(cfg, num_devices=4)


def test_rope_choice_and_head_dim_are_validated():
    cfg = topdown.get_config()
    cfg.model.rope = "rotary"
    with pytest.raises(ConfigError, match=r"config.model.rope"):
        validate(cfg, num_devices=4)
    cfg.model.rope, cfg.model.hidden, cfg.model.heads = "spatial", 120, 4  # head dim 30
    with pytest.raises(ConfigError, match=r"config.model.rope.*divisible by 4; got 30"):
        validate(cfg, num_devices=4)
    cfg.model.hidden = 128
    validate(cfg, num_devices=4)


def test_every_base_field_has_a_comment():
    source = (ROOT / "configs" / "base.py").read_text()
    body = source.split("def get_base():")[1].split("\ndef ")[0]
    lines = [ln for ln in body.splitlines() if ln.startswith("    ") and not ln.startswith("     ")]
    fields = [
        ln
        for ln in lines
        if ln.strip().startswith(("d.", "t.", "m.", "f.", "s.", "tr.", "e.", "c."))
        and " = " in ln
        and "ConfigDict()" not in ln
        and not ln.strip().startswith("c.data = ")
    ]
    missing = [ln for ln in fields if "#" not in ln]
    assert fields and not missing, missing


def _leaves(d, prefix=""):
    for key, value in d.items():
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_every_config_leaf_is_read_by_the_library():
    """A setting that nothing reads is a lie: every leaf of every dataset config (variants included) must be
    read in maskflow_jax/ outside config_validation.py, as `.name`, `"name"` or `name=` (a static check on
    the leaf's name; validation alone does not count)."""
    sources = "\n".join(
        p.read_text() for p in (ROOT / "maskflow_jax").rglob("*.py") if p.name != "config_validation.py"
    )
    names = set()
    for module, variants in (
        (topdown, ("", "accel", "smoke", "noactions")),
        (maze, ("",)),
        (dmlab, ("",)),
        (ffs, ("", "smoke")),
    ):
        for variant in variants:
            names |= set(_leaves(module.get_config(variant or None)))
    unread = []
    for name in sorted(names):
        leaf = re.escape(name.rsplit(".", 1)[-1])
        if not re.search(rf"\.{leaf}\b|[\"']{leaf}[\"']|\b{leaf}=", sources):
            unread.append(name)
    assert len(names) > 100 and not unread, unread


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("data.name", "kinetics", "config.data.name"),
        ("sampling.stride", 15, "config.sampling.stride"),
        ("sampling.context", 16, "config.sampling.context"),
        ("sampling.window", 17, "config.sampling.window"),
        ("sampling.window", 2, "config.sampling.window"),  # not longer than the maze's context m = 2
        ("flow.kappa", "tanh", "config.flow.kappa"),
        ("model.size", "XXL", "config.model.size"),
        ("model.depth", 3, "config.model.depth"),
        ("data.resize_to", 66, "config.data.resize_to"),
        ("train.ema_decay", 1.0, "config.train.ema_decay"),
        ("train.lr_schedule", "linear", "config.train.lr_schedule"),
        ("model.action_cond", True, "config.model.action_cond.*data.use_actions=True"),
        ("mesh.shape", (-1, -1, 1), "config.mesh.shape"),
        ("mesh.rules", (("batch", "data"), ("embed", "fsdp")), "config.mesh.rules"),
        ("eval.num_videos", 25, r"config.eval.num_videos.*data.maze.num_test=24"),
    ],
)
def test_bad_fields_are_named(field, value, match):
    cfg = maze.get_config()
    section, name = field.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError, match=match):
        validate(cfg)


def test_a_short_sampling_window_bounds_the_stride():
    cfg = maze.get_config()
    cfg.sampling.window, cfg.sampling.context, cfg.sampling.stride = 4, 3, 1
    validate(cfg)
    cfg.sampling.stride = 2
    with pytest.raises(ConfigError, match="config.sampling.stride.*window - sampling.context = 1"):
        validate(cfg)


def test_efficiency_videos_beyond_the_maze_held_out_split_are_named():
    cfg = maze.get_config()
    cfg.eval.efficiency.num_videos = cfg.data.maze.num_test + 1
    with pytest.raises(ConfigError, match=r"config.eval.efficiency.num_videos.*data.maze.num_test=24"):
        validate(cfg)
    cfg.eval.efficiency.num_videos = cfg.data.maze.num_test
    validate(cfg)


def test_vqf8_configs_input_sizes_and_uint8_rule():
    """vq-f8 is laid out for 256x256 (tokenizer.resolution) and takes any multiple of 8; the paper-parity
    configs decode with the release's trunc rule, which the maskflow protocol requires; the maze keeps round."""
    for module in (dmlab, ffs):
        cfg = module.get_config()
        assert (cfg.tokenizer.resolution, cfg.tokenizer.decode_uint8, cfg.eval.protocol) == (256, "trunc", "maskflow")
    assert maze.get_config().tokenizer.decode_uint8 == "round" and maze.get_config().tokenizer.resolution is None
    native = dmlab.get_config()
    native.data.resize_to = 64  # DMLab's native frames: 8x8 tokens from the same weights
    validate(native)
    assert config_validation.token_grid(native) == (8, 8)
    native.data.resize_to = 60
    with pytest.raises(
        ConfigError,
        match=r"config.data.resize_to: 60 .*multiples of the downsampling factor 8.*"
        r"56 and 64",
    ):
        validate(native)
    rounding = dmlab.get_config()
    rounding.tokenizer.decode_uint8 = "round"
    with pytest.raises(ConfigError, match=r"config.tokenizer.decode_uint8: got 'round' but eval.protocol='maskflow'"):
        validate(rounding)
    rounding.eval.protocol = "fvd2048_16f"  # a protocol that fixes no rule
    validate(rounding)
    odd = maze.get_config()
    odd.tokenizer.decode_uint8 = "nearest"
    with pytest.raises(ConfigError, match="config.tokenizer.decode_uint8"):
        validate(odd)
    attn = maze.get_config()
    attn.tokenizer.attn_resolutions = (16,)  # attention needs the layout size
    with pytest.raises(ConfigError, match="needs config.tokenizer.resolution"):
        validate(attn)
    attn.tokenizer.resolution = 32  # levels 32, 16, 8
    validate(attn)


def test_batch_must_divide_over_batch_devices():
    cfg = maze.get_config()
    cfg.data.batch_size = 6
    with pytest.raises(ConfigError, match="config.data.batch_size"):
        validate(cfg, num_devices=4)
    cfg.mesh.shape = (3, 1, 1)
    with pytest.raises(ConfigError, match="config.mesh.shape"):
        validate(cfg, num_devices=8)


def test_parse_variant():
    assert base.parse_variant("size=B, runlocal") == {"size": "B", "runlocal": True}
    assert base.parse_variant(None) == {}


def _main(*args):
    return subprocess.run(
        [sys.executable, "-m", "maskflow_jax.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def test_main_rejects_bad_config_naming_the_field(tmp_path):
    res = _main("--config=configs/maze.py", f"--workdir={tmp_path}", "--config.sampling.stride=20")
    assert res.returncode != 0
    assert "config.sampling.stride" in res.stderr


def test_main_eval_without_a_trained_run_names_the_fix(tmp_path):
    res = _main("--config=configs/maze.py:runlocal", f"--workdir={tmp_path}", "--mode=eval", "--config.train.steps=7")
    assert res.returncode != 0
    assert "no denoiser checkpoint" in res.stderr and "--mode=train" in res.stderr


def test_main_rejects_unknown_override(tmp_path):
    res = _main("--config=configs/maze.py", f"--workdir={tmp_path}", "--config.train.stepz=7")
    assert res.returncode != 0
    assert "stepz" in res.stderr
