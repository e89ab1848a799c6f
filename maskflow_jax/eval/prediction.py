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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from maskflow_jax.report import cell

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
        raise ValueError(
            f"context={context} must be in [1, F) = [1, {f}) (the frame to predict must exist "
            "and follow at least one clean frame)"
        )
    frames = jnp.arange(f)
    visible = (frames != context) if visible_future else (frames < context)
    t = _frame_times(time_input, visible, b)
    x = jnp.where(visible[None, :, None, None], tokens, jnp.asarray(mask_id, tokens.dtype)).astype(jnp.int32)
    logits = logits_fn(x, t) if actions is None else logits_fn(x, t, jnp.asarray(actions, jnp.int32))
    return logits[:, context, ..., :mask_id]  # never predict MASK


def next_frame_predictions(logits_fn, tokens, context, mask_id, time_input="clean", actions=None, visible_future=False):
    """Argmax predictions int32 (B, H, W) of frame `context` (see next_frame_logits)."""
    logits = next_frame_logits(logits_fn, tokens, context, mask_id, time_input, actions, visible_future)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _scores(logits, truth):
    """(argmax ids (B, H, W), -log p(truth) (B, H, W)) from logits (B, H, W, V)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, truth[..., None], axis=-1)[..., 0]
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), nll


def next_frame_accuracy(
    logits_fn, tokens, context, mask_id, time_input="clean", batch_size=8, actions=None, visible_future=False
):
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
        raise ValueError(
            f"token ids must be in [0, {mask_id}) (mask_id = vocabulary size without MASK); got "
            f"[{tokens.min()}, {tokens.max()}]"
        )
    if actions is not None and np.shape(actions) != tokens.shape[:2]:
        raise ValueError(
            f"actions must be (N, F) = {tokens.shape[:2]}, one per clip frame; got shape {np.shape(actions)}"
        )
    preds, nlls = [], []
    for i in range(0, len(tokens), batch_size):
        clip = tokens[i : i + batch_size]
        act = None if actions is None else actions[i : i + batch_size]
        logits = next_frame_logits(logits_fn, clip, context, mask_id, time_input, act, visible_future)
        pred, nll = jax.device_get(_scores(logits, jnp.asarray(clip[:, context])))
        preds.append(np.asarray(pred))
        nlls.append(np.asarray(nll))
    pred, nll = np.concatenate(preds), np.concatenate(nlls)
    truth, previous = tokens[:, context], tokens[:, context - 1]
    res = dict(
        _tally(pred, truth, previous),
        num_clips=int(len(tokens)),
        context=int(context),
        time_input="unmasked_fraction" if time_input == "masked" else time_input,
        visible_future=bool(visible_future),
    )
    moved = truth != previous
    res["nll_changed"] = float(nll[moved].mean()) if moved.any() else float("nan")
    res["nll_unchanged"] = float(nll[~moved].mean()) if (~moved).any() else float("nan")
    if actions is not None:
        into = np.asarray(actions)[:, context - 1]
        res["by_action"] = {
            int(a): dict(_tally(pred[into == a], truth[into == a], previous[into == a]), count=int(np.sum(into == a)))
            for a in np.unique(into)
        }
    return res


def _tally(pred, truth, previous):
    """accuracy, copy_accuracy, changed_accuracy, changed_fraction of predictions against the truth."""
    moved = truth != previous
    total, changed = truth.size, int(np.sum(moved))
    return {
        "accuracy": float(np.mean(pred == truth)) if total else float("nan"),
        "copy_accuracy": float(np.mean(previous == truth)) if total else float("nan"),
        "changed_accuracy": float(np.sum((pred == truth) & moved) / changed) if changed else float("nan"),
        "changed_fraction": changed / total if total else float("nan"),
    }


def check_run(cfg, run, real_tokens, actions=None):
    """The next-frame checks of a run (an inference.Run: apply_fn and params) on every clip-length window
    of the held-out token videos (N, L, h, w) (with their actions (N, L) for an action-conditioned run),
    given m = sampling.context and m = F - 1 real frames: with both time inputs (the configured one
    first), and, for m < F - 1, the "future visible" control (frame m + 1 shown) with the configured one.
    Returns a list of next_frame_accuracy result dicts."""
    f = cfg.data.frames
    n, length = real_tokens.shape[:2]
    k = length // f
    clips = np.asarray(real_tokens)[:, : k * f].reshape((n * k, f) + real_tokens.shape[2:])
    clip_actions = None if actions is None else np.asarray(actions)[:, : k * f].reshape(n * k, f)
    apply = functools.partial(jax.jit(run.apply_fn()), run.params)
    configured = cfg.sampling.time_input
    inputs = [configured] + [x for x in TIME_INPUTS if x != configured]
    kw = dict(mask_id=cfg.tokenizer.n_embed, batch_size=cfg.eval.batch_size, actions=clip_actions)
    out = []
    for m in sorted({cfg.sampling.context, f - 1}):
        if not 1 <= m < f:
            continue
        out += [next_frame_accuracy(apply, clips, m, time_input=x, **kw) for x in inputs]
        if m < f - 1:
            out.append(next_frame_accuracy(apply, clips, m, time_input=configured, visible_future=True, **kw))
    return out


def report_lines(checks, configured):
    """REPORT.md lines (markdown) for the results of check_run; `configured` is the sampler's time input."""
    lines = [
        "",
        f"## Next-frame token prediction (teacher-forced, {checks[0]['num_clips']} held-out clips)",
        "",
        "The denoiser's argmax for frame m given m real frames (the rest masked), against repeating frame "
        "m - 1, and the cross-entropy (nats) of the true token on the tokens that change and on those that "
        "stay. A model that has learnt the motion beats the copy baseline and is right on a clear share "
        "of the changed tokens; a model at the copy baseline can only freeze or blur when sampled. "
        f"Time input: what the network is told about the frames' times (`{configured}` is the sampler's). "
        "'frame m + 1 shown' is a control the sampler never sees: how much the model leans on a visible "
        "later frame.",
        "",
        "| m | time input | frame m + 1 | accuracy | copy previous frame | accuracy on changed tokens | "
        "NLL changed | NLL unchanged | changed tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        lines.append(
            f"| {c['context']} | {c['time_input']} | {'shown' if c.get('visible_future') else 'masked'} | "
            f"{c['accuracy']:.3f} | {c['copy_accuracy']:.3f} | {c['changed_accuracy']:.3f} | "
            f"{cell(c, 'nll_changed', '.2f')} | {cell(c, 'nll_unchanged', '.2f')} | "
            f"{c['changed_fraction']:.3f} |"
        )
    split = [c for c in checks if c.get("by_action") and c["time_input"] == configured and not c.get("visible_future")]
    if split:
        lines += [
            "",
            f"By the move into frame m (actions[m - 1]; time input `{configured}`):",
            "",
            "| m | action | clips | accuracy | copy previous frame | accuracy on changed tokens | changed tokens |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in split:
            for a, r in sorted(c["by_action"].items()):
                lines.append(
                    f"| {c['context']} | {a} | {r['count']} | {r['accuracy']:.3f} | "
                    f"{r['copy_accuracy']:.3f} | {r['changed_accuracy']:.3f} | {r['changed_fraction']:.3f} |"
                )
    return lines
