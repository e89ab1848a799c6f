"""A strictly local VQ encoder: each token is a function of its own f x f pixel patch only.

`tokenizer.encoder = "patch"` (beyond the paper; the LDM/taming convolutional encoder is "conv").
The frame is cut into non-overlapping f x f patches (f = 2^(len(ch_mult) - 1), the conv encoder's
downsampling factor), and each patch goes through the same per-position MLP: a linear patch
embedding, residual MLP blocks with per-position LayerNorm, and a projection to z_channels. No
convolution across patches, no GroupNorm (whose statistics span the whole frame), no attention.

Why: the conv encoder's receptive field, GroupNorm statistics and mid-block attention make every
token depend on the whole frame, so content that moves by a whole patch does not keep its token.
With this encoder it does exactly: shifting a frame by a multiple of f pixels shifts its token grid
(tested). The built-in top-down world (configs/topdown.py) is drawn in tiles of one patch, so its
moves are exact token shifts. The decoder is the usual conv decoder (decoding may use context).

Shapes: x (N, H, W, 3) in [-1, 1] with H, W divisible by f -> (N, H/f, W/f, z_channels).
"""

from collections.abc import Sequence

import flax.linen as nn


class PatchEncoder(nn.Module):
    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    z_channels: int

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        f = 2 ** (len(self.ch_mult) - 1)
        if h % f or w % f:
            raise ValueError(
                f"frames of {h}x{w} pixels do not split into {f}x{f} patches: use a size divisible by "
                f"{f} (config.data.resize_to)"
            )
        patches = (
            x.reshape(n, h // f, f, w // f, f, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // f, w // f, f * f * c)
        )
        width = self.ch * self.ch_mult[-1]
        y = nn.Dense(width, name="patch_in")(patches)
        for j in range(self.num_res_blocks + 1):
            r = nn.Dense(4 * width, name=f"block_{j}_fc1")(nn.silu(nn.LayerNorm(name=f"block_{j}_norm")(y)))
            y = y + nn.Dense(width, name=f"block_{j}_fc2")(nn.silu(r))
        return nn.Dense(self.z_channels, name="out")(nn.silu(nn.LayerNorm(name="norm_out")(y)))
