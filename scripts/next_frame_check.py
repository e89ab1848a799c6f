"""The pipeline's next-frame check on a trained run, printed as the REPORT.md table and saved as JSON.

    python scripts/next_frame_check.py runs/topdown [--out runs/topdown/next_frame.json]

Runs `maskflow_jax.eval.prediction.check_run` (teacher-forced next-frame accuracy and cross-entropy at
m = sampling.context and m = F - 1, both time inputs, the future-visible control, a split by action)
on the held-out videos of the run's eval split, with the run's saved config and EMA weights. Used for
the ablations in docs/experiments/, which train denoisers without running the whole pipeline.
"""

import argparse
import json
import os

from maskflow_jax import inference
from maskflow_jax.data import heldout
from maskflow_jax.eval import prediction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--out", default=None, help="JSON path (default <workdir>/next_frame.json)")
    args = parser.parse_args(argv)
    cfg = inference.saved_config(args.workdir)
    run = inference.load_run(args.workdir, cfg=cfg, use_ema=cfg.eval.use_ema)
    tokens, _, actions = heldout.load(cfg, args.workdir, cfg.eval.num_videos, max(cfg.eval.horizons) * cfg.data.frames)
    checks = prediction.check_run(cfg, run, tokens, actions)
    print("\n".join(prediction.report_lines(checks, cfg.sampling.time_input)))
    out = args.out or os.path.join(args.workdir, "next_frame.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"step": run.step, "checks": checks}, fh, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
