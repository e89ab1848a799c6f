"""Entry point: `python -m maskflow_jax.main --config=configs/maze.py --workdir=runs/maze [--mode=...]`.

Parses flags, validates the config, initialises (multi-process) JAX, logs the topology and calls
`run(config, workdir)` of the mode's module in maskflow_jax/modes/ (docs/design.md).
"""

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from maskflow_jax import config_validation, runtime

# mode -> the module of maskflow_jax/modes/ whose `run(config, workdir)` it calls.
MODES = {
    "pipeline": "maskflow_jax.modes.pipeline",
    "prepare_data": "maskflow_jax.modes.prepare_data",
    "train_tokenizer": "maskflow_jax.modes.train_tokenizer",
    "tokenize": "maskflow_jax.modes.tokenize",
    "train": "maskflow_jax.modes.train",
    "sample": "maskflow_jax.modes.sample",
    "eval": "maskflow_jax.modes.evaluate",
    "efficiency": "maskflow_jax.modes.efficiency",
}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file[:variant], e.g. configs/maze.py:runlocal", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
_MODE = flags.DEFINE_enum("mode", None, list(MODES), "What to run; default: the config's `mode` field.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"], "Multi-process JAX: auto-detect from the environment, force, or skip."
)
flags.mark_flags_as_required(["config", "workdir"])


def resolve_mode(cfg, mode_flag):
    """Returns (mode, function) for --mode or the config's `mode` field."""
    mode = mode_flag or cfg.get("mode", "train")
    if mode not in MODES:
        raise config_validation.ConfigError(f"config.mode: got {mode!r}; expected one of {list(MODES)}")
    return mode, importlib.import_module(MODES[mode]).run


def quiet_logs():
    """Library INFO lines (orbax's option dumps on every checkpoint, our own progress notes) off unless
    --verbosity is given (e.g. --verbosity=0 for INFO, 1 for debug); warnings, errors, the progress bars
    and each stage's summary line (printed) stay."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quiet_logs()
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
