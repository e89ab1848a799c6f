"""`--mode=tokenize`: the token cache of the train and eval splits (data/tokens.py), with the run's tokenizer.

The tokenizer is the one trained in `<workdir>/tokenizer/` or imported via `tokenizer.init_from`; the
pixel splits are prepared first if needed. Resumable per part of 16 videos.
"""

from maskflow_jax.data import tokens
from maskflow_jax.tokenizer.train import load_tokenizer


def run(cfg, workdir):
    """Writes the token cache, prints one summary line; returns {"summary", "counts"}."""
    out = tokens.tokenize_dataset(cfg, workdir, load_tokenizer(cfg, workdir).encode)
    print(out["summary"], flush=True)
    return out
