"""`--mode=sample`: long videos from held-out contexts (inference.sample_heldout).

Writes `<workdir>/samples/sample_*.gif`, `grid.png` and `info.json`, and prints one summary line.
"""

from maskflow_jax import inference


def run(cfg, workdir):
    """Generates sampling.batch_size videos of sampling.horizon frames; returns the summary dict."""
    summary = inference.sample_heldout(cfg, workdir)
    print(summary["summary"], flush=True)
    return summary
