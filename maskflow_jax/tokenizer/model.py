"""The LDM/taming VQGAN encoder/decoder family in Flax (NHWC), layer for layer as LDM's (docs/vqf8.md).

Module names follow the PyTorch state_dict (`down_0_block_1` for `down.0.block.1`, `mid_attn_1`
for `mid.attn_1`, ...) so `convert_ldm` maps keys mechanically. Shapes: images x (N, H, W, 3) in
[-1, 1]; latents (N, h, w, embed_dim) with h = H / 2^(len(ch_mult) - 1); token ids (N, h, w).

The architecture is fixed by the config alone, as in LDM: `resolution` is the frame size the model
is laid out for, and a level carries self-attention when its nominal size (resolution / 2^level)
is in `attn_resolutions`, whatever the size of the frames it is given. Convolutions and attention
take any H, W divisible by the downsampling factor, so one set of parameters serves every such size
(vq-f8: laid out for 256x256, attention at its 32x32 level, also run on 64x64 frames -> 8x8 tokens).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from maskflow_jax.tokenizer.patch_encoder import PatchEncoder
from maskflow_jax.tokenizer.quantizer import VectorQuantizer

ENCODERS = ("conv", "patch")  # config.tokenizer.encoder: LDM/taming convolutional | strictly local per patch


def norm(name):
    # Two-pass variance like torch (as torch computes it): the fast E[x^2] - E[x]^2 form loses precision.
    return nn.GroupNorm(num_groups=32, epsilon=1e-6, use_fast_variance=False, name=name)


class ResnetBlock(nn.Module):
    out_ch: int

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.out_ch, (3, 3), padding=1, name="conv1")(nn.silu(norm("norm1")(x)))
        h = nn.Conv(self.out_ch, (3, 3), padding=1, name="conv2")(nn.silu(norm("norm2")(h)))
        if x.shape[-1] != self.out_ch:
            x = nn.Conv(self.out_ch, (1, 1), name="nin_shortcut")(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, width C (scale C^-1/2)."""

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        y = norm("norm")(x)
        q, k, v = (nn.Conv(c, (1, 1), name=name)(y).reshape(n, h * w, 1, c) for name in ("q", "k", "v"))
        o = jax.nn.dot_product_attention(q, k, v).reshape(n, h, w, c)
        return x + nn.Conv(c, (1, 1), name="proj_out")(o)


class Downsample(nn.Module):
    @nn.compact
    def __call__(self, x):
        # PyTorch pads only bottom/right by one pixel before a stride-2 valid conv.
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)), name="conv")(x)


class Upsample(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest neighbour x2
        return nn.Conv(x.shape[-1], (3, 3), padding=1, name="conv")(x)


def level_resolutions(resolution, levels):
    """Nominal size of each level [resolution, resolution / 2, ...] (None when no resolution is set)."""
    return [None if resolution is None else resolution // 2**i for i in range(levels)]


def valid_sizes(factor, size=None):
    """Text listing the frame sizes a tokenizer with downsampling `factor` takes (those nearest `size`)."""
    text = f"multiples of the downsampling factor {factor} ({factor}, {2 * factor}, {3 * factor}, ...)"
    if size is not None and size > 0:
        lo = max(factor, size // factor * factor)
        hi = -(-size // factor) * factor
        text += f"; the nearest to {size} " + (f"is {lo}" if lo == hi else f"are {lo} and {hi}")
    return text


def check_input_size(height, width, factor):
    """Raises ValueError unless H and W are positive multiples of the downsampling factor."""
    for n in (height, width):
        if n < factor or n % factor:
            raise ValueError(
                f"frames of {height}x{width} pixels do not fit the tokenizer: config.data.resize_to "
                f"must be one of the {valid_sizes(factor, n)}"
            )


class Encoder(nn.Module):
    """x (N, H, W, 3) -> (N, H / f, W / f, z_channels), f = 2^(len(ch_mult) - 1); attention by `resolution`."""

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    attn_resolutions: Sequence[int]
    z_channels: int
    resolution: int | None

    @nn.compact
    def __call__(self, x):
        check_input_size(x.shape[1], x.shape[2], 2 ** (len(self.ch_mult) - 1))
        h = nn.Conv(self.ch, (3, 3), padding=1, name="conv_in")(x)
        for i, (mult, res) in enumerate(zip(self.ch_mult, level_resolutions(self.resolution, len(self.ch_mult)))):
            for j in range(self.num_res_blocks):
                h = ResnetBlock(self.ch * mult, name=f"down_{i}_block_{j}")(h)
                if res in self.attn_resolutions:
                    h = AttnBlock(name=f"down_{i}_attn_{j}")(h)
            if i != len(self.ch_mult) - 1:
                h = Downsample(name=f"down_{i}_downsample")(h)
        c = h.shape[-1]
        h = ResnetBlock(c, name="mid_block_1")(h)
        h = AttnBlock(name="mid_attn_1")(h)
        h = ResnetBlock(c, name="mid_block_2")(h)
        return nn.Conv(self.z_channels, (3, 3), padding=1, name="conv_out")(nn.silu(norm("norm_out")(h)))


class Decoder(nn.Module):
    """z (N, h, w, z_channels) -> (N, h * f, w * f, 3); attention by the nominal `resolution`, not by h."""

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    attn_resolutions: Sequence[int]
    resolution: int | None

    @nn.compact
    def __call__(self, z):
        levels = len(self.ch_mult)
        sizes = level_resolutions(self.resolution, levels)
        c = self.ch * self.ch_mult[-1]
        h = nn.Conv(c, (3, 3), padding=1, name="conv_in")(z)
        h = ResnetBlock(c, name="mid_block_1")(h)
        h = AttnBlock(name="mid_attn_1")(h)
        h = ResnetBlock(c, name="mid_block_2")(h)
        for i in reversed(range(levels)):  # lowest resolution first; stored under the level index
            for j in range(self.num_res_blocks + 1):
                h = ResnetBlock(self.ch * self.ch_mult[i], name=f"up_{i}_block_{j}")(h)
                if sizes[i] in self.attn_resolutions:
                    h = AttnBlock(name=f"up_{i}_attn_{j}")(h)
            if i != 0:
                h = Upsample(name=f"up_{i}_upsample")(h)
        return nn.Conv(3, (3, 3), padding=1, name="conv_out")(nn.silu(norm("norm_out")(h)))


class VQModel(nn.Module):
    """Encoder -> quant_conv -> VectorQuantizer -> post_quant_conv -> Decoder (docs/method.md §8).

    resolution: the frame size the architecture is laid out for (attention placement); None only
    when attn_resolutions is empty. Inputs may have any H, W divisible by 2^(len(ch_mult) - 1).
    """

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    attn_resolutions: Sequence[int]
    z_channels: int
    embed_dim: int
    n_embed: int
    resolution: int | None
    beta: float = 0.25
    l2_normalize: bool = False
    encoder_kind: str = "conv"

    def setup(self):
        if self.encoder_kind == "patch":  # tokens that depend on their own patch only (patch_encoder.py)
            self.encoder = PatchEncoder(self.ch, self.ch_mult, self.num_res_blocks, self.z_channels)
        else:
            self.encoder = Encoder(
                self.ch, self.ch_mult, self.num_res_blocks, self.attn_resolutions, self.z_channels, self.resolution
            )
        self.quant_conv = nn.Conv(self.embed_dim, (1, 1))
        self.quantize = VectorQuantizer(self.n_embed, self.embed_dim, beta=self.beta, l2_normalize=self.l2_normalize)
        self.post_quant_conv = nn.Conv(self.z_channels, (1, 1))
        self.decoder = Decoder(self.ch, self.ch_mult, self.num_res_blocks, self.attn_resolutions, self.resolution)

    def encode_latents(self, x):
        """x (N, H, W, 3) in [-1, 1] -> pre-quantization latents (N, h, w, embed_dim)."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x):
        """x (N, H, W, 3) -> token ids (N, h, w) int32."""
        return self.quantize.lookup(self.encode_latents(x))

    def decode_codes(self, z_q):
        return self.decoder(self.post_quant_conv(z_q))

    def decode(self, ids):
        """token ids (N, h, w) -> images (N, H, W, 3), not clamped."""
        return self.decode_codes(self.quantize.embed(ids))

    def __call__(self, x):
        """Training forward: (reconstruction, aux dict with losses, ids, latents)."""
        z = self.encode_latents(x)
        z_q, ids, losses = self.quantize(z)
        return self.decode_codes(z_q), {"ids": ids, "latents": z, **losses}


def downsampling_factor(tok_cfg):
    """f = 2^(len(ch_mult) - 1): pixels per token along each side."""
    return 2 ** (len(tok_cfg.ch_mult) - 1)


def check_tokenizer_config(tok_cfg):
    """Raises ValueError (naming the config.tokenizer field) when the config gives no valid VQModel."""
    if len(tok_cfg.ch_mult) < 1:
        raise ValueError("config.tokenizer.ch_mult must have at least one level")
    if tok_cfg.get("encoder", "conv") not in ENCODERS:
        raise ValueError(f"config.tokenizer.encoder={tok_cfg.get('encoder')!r}: expected one of {ENCODERS}")
    for c in (tok_cfg.ch * m for m in tok_cfg.ch_mult):
        if c % 32:
            raise ValueError(
                f"config.tokenizer.ch x ch_mult gives {c} channels, not divisible by the 32 GroupNorm groups"
            )
    resolution, attn, factor = tok_cfg.get("resolution"), tuple(tok_cfg.attn_resolutions), downsampling_factor(tok_cfg)
    if attn and resolution is None:
        raise ValueError(
            f"config.tokenizer.attn_resolutions={attn} needs config.tokenizer.resolution, the frame size "
            "the architecture is laid out for (vq-f8: 256)"
        )
    if resolution is not None and (resolution < factor or resolution % factor):
        raise ValueError(
            f"config.tokenizer.resolution={resolution} is not a positive multiple of the downsampling factor {factor}"
        )
    levels = level_resolutions(resolution, len(tok_cfg.ch_mult))
    stray = [r for r in attn if r not in levels]
    if stray:
        raise ValueError(
            f"config.tokenizer.attn_resolutions {stray} match no level of config.tokenizer.resolution="
            f"{resolution} (levels {levels}): no attention would be placed there"
        )


def make_vq_model(tok_cfg):
    """VQModel from config.tokenizer alone; `tokenizer.resolution` fixes where attention sits (LDM's rule),
    so the same parameters serve every input size divisible by the downsampling factor."""
    check_tokenizer_config(tok_cfg)
    return VQModel(
        ch=tok_cfg.ch,
        ch_mult=tuple(tok_cfg.ch_mult),
        num_res_blocks=tok_cfg.num_res_blocks,
        attn_resolutions=tuple(tok_cfg.attn_resolutions),
        z_channels=tok_cfg.z_channels,
        embed_dim=tok_cfg.embed_dim,
        n_embed=tok_cfg.n_embed,
        resolution=tok_cfg.get("resolution"),
        beta=tok_cfg.beta,
        l2_normalize=bool(tok_cfg.l2_normalize),
        encoder_kind=tok_cfg.get("encoder", "conv"),
    )
