"""Entry point: `python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze [--mode=...]`.

Parses flags, validates the config, initialises (multi-process) JAX, logs the topology and calls
the library function of the mode. All logic lives in importable modules.
"""
import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from maskflow_jax import config_validation, runtime

# mode -> "module:function(config, workdir)".
MODES = {
    "pipeline": "maskflow_jax.pipeline:run_pipeline",
    "prepare_data": "maskflow_jax.data.pipeline:prepare_data",
    "train_tokenizer": "maskflow_jax.tokenizer.train:train_tokenizer",
    "tokenize": "maskflow_jax.data.tokens:tokenize_dataset",
    "train": "maskflow_jax.train.loop:train_and_evaluate",
    "sample": "maskflow_jax.inference:sample_mode",
    "eval": "maskflow_jax.evaluate:eval_mode",
    "efficiency": "maskflow_jax.efficiency:efficiency_mode",
}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant], e.g. configs/maze.py:runlocal",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
_MODE = flags.DEFINE_enum("mode", None, list(MODES), "What to run; default: the config's `mode` field.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "Multi-process JAX: auto-detect from the environment, force, or skip.")
flags.mark_flags_as_required(["config", "workdir"])


def resolve_mode(cfg, mode_flag):
    """Returns (mode, function) for --mode or the config's `mode` field."""
    mode = mode_flag or cfg.get("mode", "train")
    if mode not in MODES:
        raise config_validation.ConfigError(f"config.mode: got {mode!r}; expected one of {list(MODES)}")
    module, _, fn = MODES[mode].partition(":")
    return mode, getattr(importlib.import_module(module), fn)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cfg = _CONFIG.value
    runtime.initialize(_DISTRIBUTED.value)
    topo = runtime.log_topology()
    try:
        config_validation.validate(cfg, num_devices=topo["global_devices"])
    except config_validation.ConfigError as err:
        sys.exit(f"invalid config: {err}")
    runtime.check_hosts_agree("config", cfg.to_dict())
    mode, fn = resolve_mode(cfg, _MODE.value)
    logging.info("mode=%s workdir=%s", mode, _WORKDIR.value)
    fn(cfg, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
