"""`--mode=eval`: FVD / KVD per horizon of a trained run, under config.eval (eval/horizons.py).

The same evaluation as the pipeline's eval stage, so on a finished pipeline run it reproduces the FVD
table of REPORT.md; other protocols (`--config.eval.protocol=teco`, ...), horizons, baselines, seeds or
sampler settings are config overrides. Writes `<workdir>/eval/<protocol>.json` (rows and the record of
what was measured), `<workdir>/eval/<protocol>.md` (the table as in REPORT.md) and
`<workdir>/eval/<protocol>_fvd.png`, and prints the table.
"""

import os

from maskflow_jax import report
from maskflow_jax.eval import horizons, plot, protocols


def run(cfg, workdir, *, feature_fn=None, loaded_run=None):
    """Evaluates the run in `workdir` and writes the outputs; returns the JSON-able result.

    feature_fn, loaded_run: as eval/horizons.evaluate's feature_fn and run (tests pass a cheap feature function).
    """
    res = horizons.to_json(horizons.evaluate(cfg, workdir, run=loaded_run, feature_fn=feature_fn))
    out = os.path.join(workdir, "eval")
    name = cfg.eval.protocol
    path = protocols.write_result(os.path.join(out, f"{name}.json"), res)
    lines = report.fvd_table(res)
    with open(os.path.join(out, f"{name}.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines).lstrip("\n") + "\n")
    plot.fvd_by_horizon(os.path.join(out, f"{name}_fvd.png"), res)
    table = next(i for i, line in enumerate(lines) if line.startswith("| horizon |"))
    print("\n".join(lines[1:2] + lines[table:]))
    print(f"results: {path}", flush=True)
    return res
