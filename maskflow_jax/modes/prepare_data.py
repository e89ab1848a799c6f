"""`--mode=prepare_data`: a built-in world generated, or DMLab `.npz` / video folders read, into ArrayRecord clips.

Writes `<workdir>/data/` (or `data.prepared_dir`); a finished split is not rebuilt (data/loader.py).
"""

from maskflow_jax.data import loader


def run(cfg, workdir):
    """Prepares the train and eval splits, prints one summary line; returns {split: metadata}."""
    out = loader.prepare_data(cfg, workdir)
    print(f"prepared { ({k: v.get('count') for k, v in out.items() if isinstance(v, dict)}) }", flush=True)
    return out
