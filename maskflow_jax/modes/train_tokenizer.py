"""`--mode=train_tokenizer`: trains the VQ tokenizer of config.tokenizer (tokenizer/train.py).

Writes `<workdir>/tokenizer/`: checkpoints (resumable), metrics, reconstruction PNGs, summary.json.
"""

from maskflow_jax.tokenizer.train import train_tokenizer


def run(cfg, workdir):
    """Trains (or resumes) the tokenizer, prints one summary line; returns its held-out PSNR and codebook usage."""
    summary = train_tokenizer(cfg, workdir)
    print(f"tokenizer: {summary['summary']}", flush=True)
    return summary
