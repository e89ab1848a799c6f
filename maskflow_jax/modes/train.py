"""`--mode=train`: trains the denoiser on the token cache (train/loop.py); resumes from its last checkpoint.

Writes `<workdir>/checkpoints/` (state, EMA, optimizer, data position), `train_metrics.jsonl` and
TensorBoard events.
"""

from maskflow_jax.train.loop import train_denoiser


def run(cfg, workdir):
    """Trains (or resumes) the denoiser, prints one summary line; returns the final TrainState."""
    state = train_denoiser(cfg, workdir)
    print(f"denoiser at step {int(state.step)}; metrics in {workdir}/train_metrics.jsonl", flush=True)
    return state
