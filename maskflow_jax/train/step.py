"""The MaskFlow training step: frame-level corruption -> denoiser -> weighted masked CE -> AdamW + EMA.

Pure function of (state, batch); `make_train_step` closes over the model and the config and is
jitted by the caller with explicit shardings and state donation (see `maskflow_jax.train.setup`).
"""
import jax
import jax.numpy as jnp
import optax

from maskflow_jax.flow import corruption, losses
from maskflow_jax.train.optimizer import learning_rate_schedule, make_optimizer
from maskflow_jax.train.state import TrainState, ema_update


def corrupt_batch(rng, tokens, flow_cfg, mask_id):
    """Draws per-frame t (B, F), masks tokens (B, F, H, W); returns (x_t, mask, t, weights (B, F))."""
    k_t, k_mask = jax.random.split(rng)
    b, f = tokens.shape[:2]
    t = corruption.sample_times(k_t, b, f, mode=flow_cfg.noise_level, eps=flow_cfg.sampling_eps)
    x_t, mask = corruption.corrupt(k_mask, tokens, t, mask_id, flow_cfg.kappa)
    if flow_cfg.reweigh == "snr":
        weights = losses.frame_weights(t, kappa=flow_cfg.kappa, snr_clip=flow_cfg.snr_clip,
                                       decay=flow_cfg.snr_decay, fused=flow_cfg.fused_snr)
    else:
        weights = jnp.ones((b, f), jnp.float32)
    return x_t, mask, t, weights


def make_loss_fn(model, cfg, mask_id):
    """loss_fn(params, batch, rng) -> (loss, metrics); batch["tokens"] is (B, F, H, W) int32."""

    def loss_fn(params, batch, rng):
        tokens = batch["tokens"]
        x_t, mask, t, weights = corrupt_batch(rng, tokens, cfg.flow, mask_id)
        logits = model.apply({"params": params}, x_t, t, actions=batch.get("actions"))
        loss, metrics = losses.masked_cross_entropy(logits, tokens, mask, weights, mask_ce=cfg.flow.mask_ce)
        return loss, metrics

    return loss_fn


def make_train_step(model, cfg, mask_id):
    """Returns train_step(state, batch) -> (state, metrics) for the jitted training loop.

    The step's rng is `fold_in(state.rng, state.step)`, so a resumed run draws the same corruption
    as an uninterrupted one. Metrics: loss, masked accuracy, grad_norm (before clipping), lr.
    """
    tx = make_optimizer(cfg.train)
    schedule = learning_rate_schedule(cfg.train)
    loss_fn = make_loss_fn(model, cfg, mask_id)

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, cfg.train.ema_decay)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
        return new_state, metrics

    return train_step
