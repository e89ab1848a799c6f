"""AdamW with global-norm clipping; a constant learning rate after an optional linear warm-up
(the release), or warm-up then cosine decay to zero at `train.steps` (for short runs)."""

import optax

LR_SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(train_cfg):
    """step -> learning rate.

    `lr_schedule="constant"` (docs/method.md §9): `lr`, reached linearly over `warmup_steps` when that is > 0,
    from `lr * warmup_init` at step 0 (warmup_init 0, the default, starts from zero).
    `lr_schedule="cosine"`: the same warm-up, then lr * (1 + cos(pi * k / K)) / 2 with
    K = steps - warmup_steps, reaching 0 at the last step.
    """
    kind = train_cfg.get("lr_schedule", "constant")
    if kind not in LR_SCHEDULES:
        raise ValueError(f"config.train.lr_schedule={kind!r}: expected one of {LR_SCHEDULES}")
    start = train_cfg.lr * train_cfg.get("warmup_init", 0.0)
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(
            start,
            train_cfg.lr,
            train_cfg.warmup_steps,
            decay_steps=max(train_cfg.steps, train_cfg.warmup_steps + 1),
            end_value=0.0,
        )
    if train_cfg.warmup_steps > 0:
        warm = optax.linear_schedule(start, train_cfg.lr, train_cfg.warmup_steps)
        return optax.join_schedules([warm, optax.constant_schedule(train_cfg.lr)], [train_cfg.warmup_steps])
    return optax.constant_schedule(train_cfg.lr)


def make_optimizer(train_cfg):
    """clip_by_global_norm(grad_clip) -> AdamW(lr schedule, b1, b2, weight_decay); docs/method.md §9 defaults."""
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.grad_clip),
        optax.adamw(
            learning_rate_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2, weight_decay=train_cfg.weight_decay
        ),
    )
