"""Metric sinks for training: stdout (absl), a JSONL file and TensorBoard event files."""

import json
import math
import os

from absl import logging


class MetricWriter:
    """Writes one record per call to `<workdir>/metrics.jsonl`, TensorBoard and the log (process 0 only)."""

    def __init__(self, workdir, enabled=True, tensorboard=True, prefix="train"):
        self.enabled = enabled
        self.prefix = prefix
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, f"{prefix}_metrics.jsonl"), "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter  # writes event files without TensorFlow

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard", prefix))

    def write(self, step, scalars):
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                if math.isfinite(v):
                    self._tb.add_scalar(f"{self.prefix}/{k}", v, step)
            self._tb.flush()
        logging.info("step %d | %s", step, " ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items())))

    def close(self):
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
