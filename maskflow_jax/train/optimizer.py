"""AdamW with global-norm clipping and a constant learning rate after an optional linear warm-up."""
import optax


def learning_rate_schedule(train_cfg):
    """Constant `lr` (SPEC §8), reached linearly over `warmup_steps` when that is > 0."""
    if train_cfg.warmup_steps > 0:
        warm = optax.linear_schedule(0.0, train_cfg.lr, train_cfg.warmup_steps)
        return optax.join_schedules([warm, optax.constant_schedule(train_cfg.lr)], [train_cfg.warmup_steps])
    return optax.constant_schedule(train_cfg.lr)


def make_optimizer(train_cfg):
    """clip_by_global_norm(grad_clip) -> AdamW(lr, b1, b2, weight_decay); SPEC §8 defaults."""
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.grad_clip),
        optax.adamw(learning_rate_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2,
                    weight_decay=train_cfg.weight_decay),
    )
