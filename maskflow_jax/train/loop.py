"""`--mode=train`: the MaskFlow training loop (resume -> train -> log -> checkpoint).

Stages: mesh and trainer -> data iterator over token clips -> resume (latest readable checkpoint,
else a fresh init) -> steps with metrics to stdout / JSONL / TensorBoard and a progress bar ->
checkpoints every `train.ckpt_every` steps, at the end, and on SIGTERM/SIGINT. With
`train.max_seconds` > 0 the run also stops (checkpointed, resumable) at the first step that ends past
that many seconds of wall time since its first step began (compilation included): a run of a fixed
duration, as on a lent accelerator (benchmarks/accelerator.py).
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


def _progress(total, initial, enabled):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=2.0)


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
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, enabled=is_main)
    meta = {"config": cfg.to_dict()}

    try:
        return _run(cfg, trainer, batches, manager, writer, is_main, meta)
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()


def _run(cfg, trainer, batches, manager, writer, is_main, meta):
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules), StopRequest() as stop:
        target = checkpoint.abstract_target(trainer.abstract_state, trainer.state_shardings)
        restored = checkpoint.restore_latest(manager, target, data_iter=batches, version=STATE_VERSION)
        if restored is None:
            state = trainer.init(jax.random.key(cfg.seed))
            logging.info("no checkpoint in %s: starting from scratch", manager.directory)
        else:
            _, state, _ = restored
            logging.info("resumed from step %d", int(state.step))
        start = int(state.step)
        max_seconds = float(cfg.train.get("max_seconds", 0) or 0)
        began = time.perf_counter()
        pending = []  # (step, metrics on device): fetched in groups to avoid a sync per step
        last_time, last_step = time.perf_counter(), start

        def flush():
            nonlocal last_time, last_step
            if not pending:
                return
            host = jax.device_get([m for _, m in pending])
            for (s, _), m in zip(pending, host):
                if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
                    good = manager.latest_step()
                    where = (
                        f"the last good checkpoint is step {good} in {manager.directory}"
                        if good is not None
                        else f"no checkpoint was written yet in {manager.directory}"
                    )
                    raise NonFiniteLossError(
                        f"non-finite loss {m['loss']} (grad norm {m['grad_norm']}) at step {s}; {where}. "
                        "Lower train.lr or raise train.warmup_steps, then rerun to resume."
                    )
            now = time.perf_counter()
            s, m = pending[-1][0], host[-1]
            rate = (s - last_step) / max(now - last_time, 1e-9)
            scalars = {k: float(v) for k, v in m.items()}
            scalars["steps_per_sec"] = rate
            b, f = cfg.data.batch_size, cfg.data.frames
            scalars["tokens_per_sec"] = rate * b * f * trainer.tokens_per_frame
            writer.write(s, scalars)
            last_time, last_step = now, s
            pending.clear()

        with _progress(cfg.train.steps, start, is_main) as bar:
            for step in range(start, cfg.train.steps):
                batch = next(batches)
                batch = {
                    k: jax.make_array_from_process_local_data(trainer.batch_sharding, np.asarray(v))
                    for k, v in batch.items()
                }
                state, metrics = trainer.step(state, batch)
                done = step + 1
                pending.append((done, metrics))
                if bar is not None:
                    bar.update(1)
                out_of_time = max_seconds > 0 and time.perf_counter() - began > max_seconds
                last = done == cfg.train.steps or out_of_time
                if done % cfg.train.log_every == 0 or last or stop.requested:
                    flush()
                if done % cfg.train.ckpt_every == 0 or last or stop.requested:
                    flush()  # never checkpoint a state whose loss was not checked
                    checkpoint.save(manager, done, state, meta, data_iter=batches, version=STATE_VERSION)
                if stop.requested:
                    logging.warning("stopped at step %d on request; resume by running the same command", done)
                    break
                if out_of_time:
                    logging.warning("stopped at step %d after train.max_seconds=%g s", done, max_seconds)
                    break
    return state
