"""Next-frame prediction diagnostic (maskflow_jax/eval/prediction.py) with fake models: a copying
model scores exactly the copy baseline and 0 on changed tokens, an oracle scores 1, MASK is never
predicted, and the time input follows the requested convention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskflow_jax.eval import prediction

V = 12  # codes; MASK = V


def _clips(seed=0, n=5, f=6, h=3, w=4):
    rng = np.random.default_rng(seed)
    first = rng.integers(0, V, (n, 1, h, w))
    # Each frame keeps about half of the previous frame's tokens, so copying is partly right.
    steps = [first]
    for _ in range(f - 1):
        keep = rng.random((n, 1, h, w)) < 0.5
        steps.append(np.where(keep, steps[-1], rng.integers(0, V, (n, 1, h, w))))
    return np.concatenate(steps, axis=1).astype(np.int32)


def _copy_model(context):
    def logits_fn(x, t):
        last = jax.nn.one_hot(x[:, context - 1], V + 1)  # (B, H, W, V + 1)
        return jnp.broadcast_to(last[:, None], x.shape + (V + 1,))

    return logits_fn


@pytest.mark.parametrize("context", [1, 2, 4])
def test_copy_model_scores_exactly_the_copy_baseline(context):
    clips = _clips()
    res = prediction.next_frame_accuracy(_copy_model(context), clips, context, mask_id=V, batch_size=2)
    truth, prev = clips[:, context], clips[:, context - 1]
    assert res["copy_accuracy"] == pytest.approx(np.mean(truth == prev))
    assert res["accuracy"] == pytest.approx(res["copy_accuracy"])
    assert res["changed_accuracy"] == 0.0
    assert res["changed_fraction"] == pytest.approx(np.mean(truth != prev))
    assert 0.2 < res["copy_accuracy"] < 0.9  # the fixture really mixes kept and changed tokens
    assert res["num_clips"] == 5 and res["context"] == context


def test_oracle_scores_one_and_mask_is_never_predicted():
    clips = _clips(seed=1)
    context = 3

    def oracle(x, t):
        # MASK gets the largest logit everywhere; the true token the second largest.
        assert bool(jnp.all(x[:, context:] == V)) and bool(jnp.all(x[:, :context] == clips[:, :context]))
        return jax.nn.one_hot(jnp.asarray(clips), V + 1) + 5.0 * jax.nn.one_hot(jnp.full(x.shape, V), V + 1)

    res = prediction.next_frame_accuracy(oracle, clips, context, mask_id=V, batch_size=len(clips))
    assert res["accuracy"] == 1.0 and res["changed_accuracy"] == 1.0
    assert res["copy_accuracy"] < 1.0


@pytest.mark.parametrize("time_input,expected", [("clean", [1, 1, 1, 1, 1, 1]), ("masked", [1, 1, 0, 0, 0, 0])])
def test_time_input_conventions(time_input, expected):
    seen = []

    def fake(x, t):
        seen.append(np.asarray(t))
        return jax.nn.one_hot(x, V + 1)

    prediction.next_frame_predictions(fake, _clips(n=2), 2, mask_id=V, time_input=time_input)
    np.testing.assert_array_equal(seen[0], np.tile(np.asarray(expected, np.float32), (2, 1)))


def test_errors_name_the_field():
    clips = _clips(n=2)
    with pytest.raises(ValueError, match="context=6"):
        prediction.next_frame_predictions(_copy_model(1), clips, 6, mask_id=V)
    with pytest.raises(ValueError, match="context=0"):
        prediction.next_frame_predictions(_copy_model(1), clips, 0, mask_id=V)
    with pytest.raises(ValueError, match=r"\(B, F, H, W\)"):
        prediction.next_frame_predictions(_copy_model(1), clips[0], 1, mask_id=V)
    with pytest.raises(ValueError, match="time_input"):
        prediction.next_frame_predictions(_copy_model(1), clips, 1, mask_id=V, time_input="noisy")
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 12\)"):
        prediction.next_frame_accuracy(_copy_model(1), np.full_like(clips, V), 1, mask_id=V)


def test_nll_on_changed_and_unchanged_tokens_of_a_copying_model():
    """A model putting probability q on the previous frame's token and (1 - q)/(V - 1) elsewhere has NLL
    -log q on unchanged tokens and -log((1 - q)/(V - 1)) on changed ones."""
    clips, context, q = _clips(seed=2), 2, 0.7
    logit = np.log(q / ((1 - q) / (V - 1)))

    def soft_copy(x, t):
        last = logit * jax.nn.one_hot(x[:, context - 1], V + 1)
        return jnp.broadcast_to(last[:, None], x.shape + (V + 1,))

    res = prediction.next_frame_accuracy(soft_copy, clips, context, mask_id=V, batch_size=2)
    assert res["nll_unchanged"] == pytest.approx(-np.log(q), rel=1e-5)
    assert res["nll_changed"] == pytest.approx(-np.log((1 - q) / (V - 1)), rel=1e-5)
    assert res["changed_accuracy"] == 0.0 and res["time_input"] == "clean" and not res["visible_future"]


def test_future_visible_control_shows_the_next_frame_to_the_model():
    clips, context = _clips(seed=3), 2

    def copy_next(x, t):  # predicts frame m from frame m + 1 when it is visible
        nxt = jax.nn.one_hot(x[:, context + 1], V + 1)
        return jnp.broadcast_to(nxt[:, None], x.shape + (V + 1,))

    hidden = prediction.next_frame_accuracy(copy_next, clips, context, mask_id=V)
    shown = prediction.next_frame_accuracy(copy_next, clips, context, mask_id=V, visible_future=True)
    truth, nxt = clips[:, context], clips[:, context + 1]
    # hidden: frame m + 1 is MASK, whose logit is cut off, so every argmax is code 0
    assert hidden["accuracy"] == pytest.approx(np.mean(truth == 0))
    assert np.mean(truth == 0) < np.mean(truth == nxt)
    assert shown["accuracy"] == pytest.approx(np.mean(truth == nxt)) and shown["visible_future"]
    seen = []
    prediction.next_frame_predictions(
        lambda x, t: seen.append(np.asarray(t)) or jax.nn.one_hot(x, V + 1),
        clips[:1],
        context,
        V,
        time_input="unmasked_fraction",
        visible_future=True,
    )
    np.testing.assert_array_equal(seen[0][0], [1, 1, 0, 1, 1, 1])


def test_split_by_the_action_into_the_predicted_frame():
    clips, context = _clips(seed=4, n=6), 3
    actions = np.zeros((6, clips.shape[1]), np.int32)
    actions[:3, context - 1] = 1  # the move into frame m; other frames' actions must not matter
    actions[:, context] = 2

    def oracle_if_moved(x, t, a):  # right on clips whose move into frame m is 1, copies elsewhere
        right = jax.nn.one_hot(jnp.asarray(clips[:, context]), V + 1)
        copy = jax.nn.one_hot(x[:, context - 1], V + 1)
        out = jnp.where((a[:, context - 1] == 1)[:, None, None, None], right, copy)
        return jnp.broadcast_to(out[:, None], x.shape + (V + 1,))

    res = prediction.next_frame_accuracy(oracle_if_moved, clips, context, mask_id=V, batch_size=6, actions=actions)
    assert sorted(res["by_action"]) == [0, 1]
    assert res["by_action"][1]["accuracy"] == 1.0 and res["by_action"][1]["changed_accuracy"] == 1.0
    assert res["by_action"][0]["changed_accuracy"] == 0.0 and res["by_action"][0]["count"] == 3
