"""Teacher-forced next-frame token prediction: does the denoiser predict motion, or only copy?

FVD on a handful of videos is noisy and says little about *why* samples look the way they do. This
diagnostic asks the denoiser for frame m given m clean real frames (frames m.. fully masked, as the
first frame of a chunk-wise rollout sees them) and scores its argmax against the real frame m:

* `accuracy`: over all H×W tokens of frame m;
* `copy_accuracy`: the same for repeating frame m−1 (a model that only copies scores exactly this);
* `changed_accuracy`: over the tokens of frame m that differ from frame m−1 only — the motion. A
  copying model scores 0 here; `changed_fraction` is the share of such tokens.

A model that has learnt camera motion beats `copy_accuracy` and has a clearly positive
`changed_accuracy`; one at `accuracy ≈ copy_accuracy` and `changed_accuracy ≈ 0` can only freeze or
blur when sampled.
"""
import numpy as np

import jax
import jax.numpy as jnp


TIME_INPUTS = ("clean", "unmasked_fraction")  # the sampler's conventions (config.sampling.time_input)


def _frame_times(time_input, visible, b):
    """t (B, F): "clean" t = 1 everywhere (the MGM sampler's default, docs/method.md §11); "unmasked_fraction"
    (alias "masked") t = 1 on visible frames and 0 on fully masked ones (kappa^-1 of the unmasked share,
    as the first step of a sampler with that time input sees them)."""
    if time_input not in TIME_INPUTS + ("masked",):
        raise ValueError(f"time_input={time_input!r}: expected one of {TIME_INPUTS} (or 'masked')")
    if time_input == "clean":
        return jnp.ones((b, visible.shape[0]), jnp.float32)
    return jnp.broadcast_to(visible.astype(jnp.float32), (b, visible.shape[0]))


def next_frame_logits(logits_fn, tokens, context, mask_id, time_input="clean", actions=None, visible_future=False):
    """Logits (B, H, W, mask_id) over the codes (MASK excluded) of frame `context` (m) given frames
    [0, m) clean and frame m masked; frames after m are masked too, or clean with visible_future (a
    control: how much the model leans on a visible later frame, which sampling never shows it).

    logits_fn(tokens (B, F, H, W), t (B, F)[, actions (B, F)]) -> logits (B, F, H, W, V); tokens int
    (B, F, H, W) with 1 <= m < F; actions int (B, F) for an action-conditioned model (passed on).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (B, F, H, W); got shape {tokens.shape}")
    b, f = tokens.shape[:2]
    if not 1 <= context < f:
        raise ValueError(f"context={context} must be in [1, F) = [1, {f}) (the frame to predict must exist "
                         "and follow at least one clean frame)")
    frames = jnp.arange(f)
    visible = (frames != context) if visible_future else (frames < context)
    t = _frame_times(time_input, visible, b)
    x = jnp.where(visible[None, :, None, None], tokens, jnp.asarray(mask_id, tokens.dtype)).astype(jnp.int32)
    logits = logits_fn(x, t) if actions is None else logits_fn(x, t, jnp.asarray(actions, jnp.int32))
    return logits[:, context, ..., :mask_id]  # never predict MASK


def next_frame_predictions(logits_fn, tokens, context, mask_id, time_input="clean", actions=None,
                           visible_future=False):
    """Argmax predictions int32 (B, H, W) of frame `context` (see next_frame_logits)."""
    logits = next_frame_logits(logits_fn, tokens, context, mask_id, time_input, actions, visible_future)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _scores(logits, truth):
    """(argmax ids (B, H, W), -log p(truth) (B, H, W)) from logits (B, H, W, V)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, truth[..., None], axis=-1)[..., 0]
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), nll


def next_frame_accuracy(logits_fn, tokens, context, mask_id, time_input="clean", batch_size=8, actions=None,
                        visible_future=False):
    """Scores frame m = `context` of clips tokens (N, F, H, W) (with their actions (N, F) for an
    action-conditioned model) in batches; returns a dict:

    accuracy, copy_accuracy, changed_accuracy, changed_fraction (see the module doc); nll_changed and
    nll_unchanged: mean cross-entropy (nats) of the true token on the tokens that change / stay (argmax
    accuracy hides a model drifting towards copying, NLL does not); num_clips, context, time_input,
    visible_future; with actions, by_action: {a: {count, accuracy, copy_accuracy, changed_accuracy,
    changed_fraction}} grouped by actions[:, m - 1], the move from frame m - 1 into frame m.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (N, F, H, W); got shape {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= mask_id:
        raise ValueError(f"token ids must be in [0, {mask_id}) (mask_id = vocabulary size without MASK); got "
                         f"[{tokens.min()}, {tokens.max()}]")
    if actions is not None and np.shape(actions) != tokens.shape[:2]:
        raise ValueError(f"actions must be (N, F) = {tokens.shape[:2]}, one per clip frame; got shape {np.shape(actions)}")
    preds, nlls = [], []
    for i in range(0, len(tokens), batch_size):
        clip = tokens[i:i + batch_size]
        act = None if actions is None else actions[i:i + batch_size]
        logits = next_frame_logits(logits_fn, clip, context, mask_id, time_input, act, visible_future)
        pred, nll = jax.device_get(_scores(logits, jnp.asarray(clip[:, context])))
        preds.append(np.asarray(pred))
        nlls.append(np.asarray(nll))
    pred, nll = np.concatenate(preds), np.concatenate(nlls)
    truth, previous = tokens[:, context], tokens[:, context - 1]
    res = dict(_tally(pred, truth, previous), num_clips=int(len(tokens)), context=int(context),
               time_input="unmasked_fraction" if time_input == "masked" else time_input,
               visible_future=bool(visible_future))
    moved = truth != previous
    res["nll_changed"] = float(nll[moved].mean()) if moved.any() else float("nan")
    res["nll_unchanged"] = float(nll[~moved].mean()) if (~moved).any() else float("nan")
    if actions is not None:
        into = np.asarray(actions)[:, context - 1]
        res["by_action"] = {int(a): dict(_tally(pred[into == a], truth[into == a], previous[into == a]),
                                         count=int(np.sum(into == a))) for a in np.unique(into)}
    return res


def _tally(pred, truth, previous):
    """accuracy, copy_accuracy, changed_accuracy, changed_fraction of predictions against the truth."""
    moved = truth != previous
    total, changed = truth.size, int(np.sum(moved))
    return {"accuracy": float(np.mean(pred == truth)) if total else float("nan"),
            "copy_accuracy": float(np.mean(previous == truth)) if total else float("nan"),
            "changed_accuracy": float(np.sum((pred == truth) & moved) / changed) if changed else float("nan"),
            "changed_fraction": changed / total if total else float("nan")}
