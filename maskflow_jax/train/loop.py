"""The one training loop (resume -> steps -> log -> checkpoint), used by the denoiser (`--mode=train`,
`train_denoiser` below) and the tokenizer (`tokenizer/train.py`).

`resume` restores the newest readable checkpoint (state and data position) or initialises; `fit` runs
steps with metrics to stdout / JSONL / TensorBoard and a progress bar, checks every step's loss for
NaN/inf (before any checkpoint of that state), and checkpoints every `ckpt_every` steps, at the end,
and on SIGTERM/SIGINT. With `max_seconds` > 0 the run also stops (checkpointed, resumable) at the first
step that ends past that many seconds of wall time since its first step began (compilation included):
a run of a fixed duration, as on a lent accelerator (benchmarks/accelerator.py).
"""

import contextlib
import os
import signal
import time

import flax.linen as nn
import jax
import numpy as np
from absl import logging

from maskflow_jax import checkpoint
from maskflow_jax.data import tokens as token_data
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.metrics import MetricWriter
from maskflow_jax.train.setup import build_trainer
from maskflow_jax.train.state import STATE_VERSION


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks, so it can checkpoint before exiting."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):  # noqa: ARG002 - signal handler signature
        logging.warning("received signal %d: saving a checkpoint and stopping", signum)
        self.requested = True

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. inside a notebook worker): no handler
                pass
        return self

    def __exit__(self, *exc):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


def _progress(total, initial, enabled, desc=None):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, mininterval=2.0)


def resume(manager, target, init, data_iter=None, version=None):
    """The newest readable checkpoint's state (restored onto `target`, the data iterator's position
    with it), else `init()`."""
    restored = checkpoint.restore_latest(manager, target, data_iter=data_iter, version=version)
    if restored is None:
        logging.info("no checkpoint in %s: starting from scratch", manager.directory)
        return init()
    logging.info("resumed from step %d", restored[0])
    return restored[1]


def _check_finite(step, metrics, manager, hint):
    if all(np.isfinite(metrics[k]) for k in ("loss", "grad_norm") if k in metrics):
        return
    good = manager.latest_step()
    where = (
        f"the last good checkpoint is step {good} in {manager.directory}"
        if good is not None
        else f"no checkpoint was written yet in {manager.directory}"
    )
    norm = f" (grad norm {metrics['grad_norm']})" if "grad_norm" in metrics else ""
    raise NonFiniteLossError(f"non-finite loss {metrics['loss']}{norm} at step {step}; {where}. {hint}")


def fit(
    state,
    step_fn,
    batches,
    to_device,
    *,
    steps,
    manager,
    writer,
    meta,
    version,
    log_every,
    ckpt_every,
    max_seconds=0.0,
    per_step=None,
    after_step=None,
    hint="Lower the learning rate or raise the warm-up, then rerun to resume.",
    desc=None,
):
    """Runs `state, metrics = step_fn(state, to_device(next(batches)))` from int(state.step) to `steps`.

    metrics: a dict of device scalars with "loss" (and "grad_norm" if the step has one), checked for
    NaN/inf at every step. Every `log_every` steps the latest metrics are written with steps_per_sec
    and, for each (name, count) of `per_step`, name = count * steps_per_sec. after_step(done, state,
    host_batch) runs after each step (e.g. image dumps). Checkpoints (state, `meta`, `version`, the data
    position of `batches`) go to `manager`. Returns the final state (stopped early on a signal or
    `max_seconds`; a rerun resumes).
    """
    is_main = jax.process_index() == 0
    start = int(state.step)
    began = time.perf_counter()
    pending = []  # (step, metrics on device): fetched in groups to avoid a sync per step
    last_time, last_step = time.perf_counter(), start

    def flush():
        nonlocal last_time, last_step
        if not pending:
            return
        host = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, host):
            _check_finite(s, m, manager, hint)
        now = time.perf_counter()
        s, m = pending[-1][0], host[-1]
        rate = (s - last_step) / max(now - last_time, 1e-9)
        scalars = {k: float(v) for k, v in m.items()}
        scalars["steps_per_sec"] = rate
        for name, count in (per_step or {}).items():
            scalars[name] = rate * count
        writer.write(s, scalars)
        last_time, last_step = now, s
        pending.clear()

    with StopRequest() as stop, _progress(steps, start, is_main, desc) as bar:
        for step in range(start, steps):
            batch = next(batches)
            state, metrics = step_fn(state, to_device(batch))
            done = step + 1
            pending.append((done, metrics))
            if bar is not None:
                bar.update(1)
            if after_step is not None:
                after_step(done, state, batch)
            out_of_time = max_seconds > 0 and time.perf_counter() - began > max_seconds
            last = done == steps or out_of_time
            if done % log_every == 0 or last or stop.requested:
                flush()
            if done % ckpt_every == 0 or last or stop.requested:
                flush()  # never checkpoint a state whose loss was not checked
                checkpoint.save(manager, done, state, meta, data_iter=batches, version=version)
            if stop.requested:
                logging.warning("stopped at step %d on request; resume by running the same command", done)
                break
            if out_of_time:
                logging.warning("stopped at step %d after max_seconds=%g s", done, max_seconds)
                break
    return state


def train_denoiser(cfg, workdir, batches=None, mesh=None):
    """Trains the denoiser in `workdir`; returns the final TrainState.

    batches: an iterator of host-local dicts {"tokens": (b, F, H, W) int32[, "actions": (b, F)]}
      with `get_state`/`set_state` (a grain iterator) so its position is checkpointed; None reads
      the token cache of the config (see `maskflow_jax.data.tokens`).
    """
    mesh = mesh if mesh is not None else make_mesh(cfg.mesh)
    trainer = build_trainer(cfg, mesh)
    if batches is None:
        batches = token_data.make_token_iterator(cfg, workdir, split=cfg.data.train_split)
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"), keep=cfg.train.keep_checkpoints)
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)

    def to_device(batch):
        return {
            k: jax.make_array_from_process_local_data(trainer.batch_sharding, np.asarray(v)) for k, v in batch.items()
        }

    try:
        with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
            target = checkpoint.abstract_target(trainer.abstract_state, trainer.state_shardings)
            state = resume(
                manager,
                target,
                lambda: trainer.init(jax.random.key(cfg.seed)),
                data_iter=batches,
                version=STATE_VERSION,
            )
            return fit(
                state,
                trainer.step,
                batches,
                to_device,
                steps=cfg.train.steps,
                manager=manager,
                writer=writer,
                meta={"config": cfg.to_dict()},
                version=STATE_VERSION,
                log_every=cfg.train.log_every,
                ckpt_every=cfg.train.ckpt_every,
                max_seconds=float(cfg.train.get("max_seconds", 0) or 0),
                per_step={"tokens_per_sec": cfg.data.batch_size * cfg.data.frames * trainer.tokens_per_frame},
                hint="Lower train.lr or raise train.warmup_steps, then rerun to resume.",
            )
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
