"""The strictly local VQ encoder (tokenizer.encoder = "patch"): a token depends on its own patch only,
so a frame shifted by whole patches has its token grid shifted; the conv encoder does not do that."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from maskflow_jax.tokenizer.model import make_vq_model


def _cfg(encoder):
    return ml_collections.ConfigDict(
        dict(
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            resolution=None,
            z_channels=8,
            embed_dim=8,
            n_embed=64,
            beta=0.25,
            l2_normalize=False,
            encoder=encoder,
        )
    )


def _encode(encoder, frames):
    model = make_vq_model(_cfg(encoder))
    params = model.init(jax.random.key(0), frames[:1])["params"]
    latents = model.apply({"params": params}, frames, method=model.encode_latents)
    return np.asarray(latents), np.asarray(model.apply({"params": params}, frames, method=model.encode))


def test_patch_encoder_tokens_shift_with_whole_patch_shifts():
    big = jax.random.uniform(jax.random.key(1), (1, 48, 48, 3), minval=-1, maxval=1)
    a, b = big[:, :32, :32], big[:, 8:40, 4:36]  # b is a shifted by 2 patches down, 1 right (f = 4)
    lat, ids = _encode("patch", jnp.concatenate([a, b]))
    assert ids.shape == (2, 8, 8)
    np.testing.assert_array_equal(lat[1, :6, :7], lat[0, 2:, 1:])  # the overlap, bit for bit
    np.testing.assert_array_equal(ids[1, :6, :7], ids[0, 2:, 1:])
    # a change inside one patch changes that token's latent only
    c = a.at[:, 12:16, 20:24].set(0.9)
    lat_c, _ = _encode("patch", jnp.concatenate([a, c]))
    diff = np.abs(lat_c[1] - lat_c[0]).max(-1) > 0
    assert diff[3, 5] and diff.sum() == 1
    conv, _ = _encode("conv", jnp.concatenate([a, b]))  # the conv encoder mixes patches (for contrast)
    assert np.abs(conv[1, :6, :7] - conv[0, 2:, 1:]).max() > 1e-3


def test_patch_encoder_rejects_sizes_that_do_not_split_and_unknown_encoders():
    with pytest.raises(ValueError, match="config.data.resize_to"):
        _encode("patch", jnp.zeros((1, 30, 30, 3)))
    with pytest.raises(ValueError, match="config.tokenizer.encoder"):
        make_vq_model(_cfg("mlp"))
