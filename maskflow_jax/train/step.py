"""The MaskFlow training step: frame-level corruption -> denoiser -> weighted masked CE -> AdamW + EMA.

Pure function of (state, batch); `make_train_step` closes over the model and the config and is
jitted by the caller with explicit shardings and state donation (see `maskflow_jax.train.setup`).
With `train.grad_accum = k` the batch is processed as k microbatches inside the step (a
`lax.scan`), and the result equals the full-batch step: the corruption is drawn for the whole
batch first, and the loss is renormalised by the global masked count (docs/method.md §4 step 4).
"""

import jax
import jax.numpy as jnp
import optax

from maskflow_jax.flow import corruption, losses
from maskflow_jax.train.optimizer import learning_rate_schedule, make_optimizer
from maskflow_jax.train.state import TrainState, ema_decay_at, ema_update


def corrupt_batch(rng, tokens, flow_cfg, mask_id):
    """Draws per-frame t (B, F), masks tokens (B, F, H, W); returns (x_t, mask, t, weights (B, F))."""
    k_t, k_mask = jax.random.split(rng)
    b, f = tokens.shape[:2]
    t = corruption.sample_times(
        k_t, b, f, mode=flow_cfg.noise_level, eps=flow_cfg.sampling_eps, prefix_prob=flow_cfg.get("prefix_prob", 0.5)
    )
    x_t, mask = corruption.corrupt(k_mask, tokens, t, mask_id, flow_cfg.kappa)
    if flow_cfg.reweigh == "snr":
        weights = losses.frame_weights(
            t, kappa=flow_cfg.kappa, snr_clip=flow_cfg.snr_clip, decay=flow_cfg.snr_decay, fused=flow_cfg.fused_snr
        )
    else:
        weights = jnp.ones((b, f), jnp.float32)
    return x_t, mask, t, weights


def _normaliser(mask, mask_ce):
    """The loss denominator of a (micro)batch: masked count (+1e-6) or the number of positions."""
    return jnp.sum(mask.astype(jnp.float32)) + 1e-6 if mask_ce else jnp.asarray(mask.size, jnp.float32)


def make_loss_fn(model, cfg):
    """loss_fn(params, micro) -> (loss, metrics) on an already corrupted (micro)batch dict with
    tokens, x_t, mask, t, weights (and optionally actions).

    With `model.masked_head` the output head runs only at the masked positions, in static chunks of
    `model.masked_head_chunk` x F H W / p^2 positions per clip and sub-patch position
    (flow/losses.py `masked_head_cross_entropy`): the same loss and gradients, without the
    (B, F, H, W, V) logits. It needs `flow.mask_ce` (the loss over masked positions only).
    """
    masked_head = bool(cfg.model.get("masked_head", False))
    if masked_head and not cfg.flow.mask_ce:
        raise ValueError(
            "config.model.masked_head=True evaluates the head at masked positions only, but "
            "config.flow.mask_ce=False puts every position in the loss: set one of them differently"
        )
    fraction = float(cfg.model.get("masked_head_chunk", 0.25))

    def loss_fn(params, micro):
        if masked_head:
            feats = model.apply(
                {"params": params}, micro["x_t"], micro["t"], actions=micro.get("actions"), features_only=True
            )
            b, f, h, w = micro["x_t"].shape
            chunk = losses.masked_head_chunk(fraction, f * h * w // model.patch**2)
            return losses.masked_head_cross_entropy(
                feats,
                params["head"]["kernel"],
                params["head"]["bias"],
                micro["tokens"],
                micro["mask"],
                micro["weights"],
                patch=model.patch,
                vocab_size=model.vocab_size,
                chunk=chunk,
                dtype=model.dtype,
            )
        logits = model.apply({"params": params}, micro["x_t"], micro["t"], actions=micro.get("actions"))
        return losses.masked_cross_entropy(
            logits, micro["tokens"], micro["mask"], micro["weights"], mask_ce=cfg.flow.mask_ce
        )

    return loss_fn


def make_train_step(model, cfg, mask_id):
    """Returns train_step(state, batch) -> (state, metrics) for the jitted training loop.

    batch: {"tokens": (B, F, H, W) int32, optional "actions": (B, F)}. The step's rng is
    `fold_in(state.rng, state.step)`, so a resumed run draws the same corruption as an
    uninterrupted one. Metrics: loss, accuracy (masked tokens), masked_fraction, grad_norm
    (before clipping), lr.
    """
    tx = make_optimizer(cfg.train)
    schedule = learning_rate_schedule(cfg.train)
    loss_fn = make_loss_fn(model, cfg)
    accum = int(cfg.train.get("grad_accum", 1))
    mask_ce = cfg.flow.mask_ce

    def grads_and_metrics(params, full):
        if accum == 1:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, full)
            return loss, metrics, grads
        b = full["tokens"].shape[0]
        if b % accum:
            raise ValueError(f"batch of {b} clips does not split into config.train.grad_accum={accum} microbatches")
        micro = jax.tree.map(lambda x: x.reshape(accum, b // accum, *x.shape[1:]), full)
        total = _normaliser(full["mask"], mask_ce)

        def body(carry, mb):
            g_acc, m_acc = carry
            (loss, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
            # Undo the microbatch normalisation; renormalise by the global count at the end.
            scale = _normaliser(mb["mask"], mask_ce)
            correct = metrics["accuracy"] * jnp.sum(mb["mask"].astype(jnp.float32))
            g_acc = jax.tree.map(lambda a, x: a + x * scale, g_acc, g)
            m_acc = {"loss": m_acc["loss"] + loss * scale, "correct": m_acc["correct"] + correct}
            return (g_acc, m_acc), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        init = (zeros, {"loss": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.float32)})
        (g_sum, m_sum), _ = jax.lax.scan(body, init, micro)
        grads = jax.tree.map(lambda x: x / total, g_sum)
        count = jnp.sum(full["mask"].astype(jnp.float32))
        metrics = {
            "accuracy": m_sum["correct"] / jnp.maximum(count, 1.0),
            "masked_fraction": jnp.mean(full["mask"].astype(jnp.float32)),
        }
        return m_sum["loss"] / total, metrics, grads

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        x_t, mask, t, weights = corrupt_batch(rng, batch["tokens"], cfg.flow, mask_id)
        full = dict(batch, x_t=x_t, mask=mask, t=t, weights=weights)
        loss, metrics, grads = grads_and_metrics(state.params, full)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(
            state.ema_params, params, ema_decay_at(state.step, cfg.train.ema_decay, cfg.train.get("ema_warmup", False))
        )
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state.replace(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state)
        return new_state, metrics

    return train_step
