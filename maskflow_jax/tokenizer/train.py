"""Tokenizer training (`--mode=train_tokenizer`): L1 + L2 reconstruction, codebook and commitment
losses, an optional hinge PatchGAN switched on at `disc_start`, Adam, EMA, dead-code restarts,
orbax checkpoints with the data position, metrics (losses, PSNR, usage, perplexity) and
reconstruction PNGs in `<workdir>/tokenizer/`. No perceptual loss (it would need downloaded weights).
"""

import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from maskflow_jax import checkpoint
from maskflow_jax.data import loader
from maskflow_jax.eval import metrics as image_metrics
from maskflow_jax.parallel.mesh import batch_sharding, batch_shards, make_mesh
from maskflow_jax.tokenizer import convert_ldm
from maskflow_jax.tokenizer.api import Tokenizer, to_unit
from maskflow_jax.tokenizer.model import make_vq_model
from maskflow_jax.tokenizer.quantizer import code_usage, restart_dead_codes
from maskflow_jax.train import loop
from maskflow_jax.train.metrics import MetricWriter
from maskflow_jax.train.state import ema_decay_at, ema_update

RESTART_EVERY = 100  # steps between dead-code restarts (codes unused over that window restart)
STATE_VERSION = (
    2  # of TokState: bump when its fields or the checkpoint layout change; saved with and checked on every checkpoint
)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: images (N, H, W, 3) in [-1, 1] -> patch logits (N, H/4, W/4, 1)."""

    ch: int = 64

    @nn.compact
    def __call__(self, x):
        x = nn.leaky_relu(nn.Conv(self.ch, (4, 4), strides=2, padding=1)(x), 0.2)
        x = nn.leaky_relu(nn.GroupNorm(num_groups=32)(nn.Conv(2 * self.ch, (4, 4), strides=2, padding=1)(x)), 0.2)
        return nn.Conv(1, (3, 3), padding=1)(x)


@flax.struct.dataclass
class TokState:
    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    disc_params: dict
    disc_opt_state: optax.OptState
    usage: jax.Array  # (K,) code counts since the last restart
    rng: jax.Array


def init_params(tok_cfg, rng, resolution):
    """The tokenizer's parameters for frames of `resolution` x `resolution` (only sizes the dummy input)."""
    return make_vq_model(tok_cfg).init(rng, jnp.zeros((1, resolution, resolution, 3)))["params"]


def make_tokenizer_trainer(tok_cfg, resolution):
    """(model, init(rng) -> TokState, step(state, frames uint8 (N, H, W, 3)) -> (state, metrics)).

    The model comes from tok_cfg alone; `resolution` (H = W of the training frames) only sizes init's dummy input.
    """
    model = make_vq_model(tok_cfg)
    disc = PatchDiscriminator()
    tcfg = tok_cfg.train
    tx, dtx = optax.adam(tcfg.lr, b1=0.5, b2=0.9), optax.adam(tcfg.lr, b1=0.5, b2=0.9)

    def init(rng):
        k1, k2, k3 = jax.random.split(rng, 3)
        params = init_params(tok_cfg, k1, resolution)
        disc_params = disc.init(k2, jnp.zeros((1, resolution, resolution, 3)))["params"]
        return TokState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=params,
            opt_state=tx.init(params),
            disc_params=disc_params,
            disc_opt_state=dtx.init(disc_params),
            usage=jnp.zeros((tok_cfg.n_embed,), jnp.float32),
            rng=k3,
        )

    def step(state, frames):
        x = to_unit(frames)
        use_disc = tcfg.disc_start >= 0  # static: with no GAN the discriminator is never run (saves its cost)
        adv_on = use_disc & (state.step >= tcfg.disc_start)

        def gen_loss(params):
            recon, aux = model.apply({"params": params}, x)
            rec = tcfg.l1_weight * jnp.mean(jnp.abs(recon - x)) + tcfg.l2_weight * jnp.mean((recon - x) ** 2)
            loss = rec + aux["codebook_loss"] + aux["commit_loss"]
            if use_disc:
                g_adv = -jnp.mean(disc.apply({"params": state.disc_params}, recon))
                loss = loss + jnp.where(adv_on, tcfg.disc_weight * g_adv, 0.0)
            else:
                g_adv = jnp.zeros((), jnp.float32)
            return loss, (recon, aux, rec, g_adv)

        (loss, (recon, aux, rec, g_adv)), grads = jax.value_and_grad(gen_loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def disc_loss(dp):
            real = disc.apply({"params": dp}, x)
            fake = disc.apply({"params": dp}, jax.lax.stop_gradient(recon))
            return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))

        if use_disc:
            d_loss, d_grads = jax.value_and_grad(disc_loss)(state.disc_params)
            d_grads = jax.tree.map(lambda g: jnp.where(adv_on, g, 0.0), d_grads)
            d_updates, disc_opt_state = dtx.update(d_grads, state.disc_opt_state, state.disc_params)
            disc_params = optax.apply_updates(state.disc_params, d_updates)
        else:
            d_loss, disc_params, disc_opt_state = jnp.zeros((), jnp.float32), state.disc_params, state.disc_opt_state

        counts, used, perplexity = code_usage(aux["ids"], tok_cfg.n_embed)
        usage = state.usage + counts
        rng, k_restart = jax.random.split(state.rng)
        restart_now = tok_cfg.restart_dead_codes & ((state.step + 1) % RESTART_EVERY == 0)

        def restart(p):
            emb, n = restart_dead_codes(p["quantize"]["embedding"], usage, aux["latents"], k_restart, threshold=0.5)
            return {**p, "quantize": {**p["quantize"], "embedding": emb}}, n

        params, restarted = jax.lax.cond(restart_now, restart, lambda p: (p, jnp.zeros((), jnp.int32)), params)
        usage = jnp.where(restart_now, jnp.zeros_like(usage), usage)
        # EMA with the usual warm-up, so short runs are not dominated by the initialisation.
        ema = ema_update(state.ema_params, params, ema_decay_at(state.step, tcfg.ema_decay, warmup=True))
        metrics = {
            "loss": loss,
            "recon_loss": rec,
            "codebook_loss": aux["codebook_loss"],
            "commit_loss": aux["commit_loss"],
            "psnr": jnp.mean(image_metrics.psnr(jnp.clip(recon, -1, 1)[None], x[None], max_val=2.0)),  # [-1, 1] images
            "code_usage": used,
            "perplexity": perplexity,
            "disc_loss": d_loss,
            "gen_adv": g_adv,
            "restarted": restarted,
        }
        new = TokState(
            step=state.step + 1,
            params=params,
            ema_params=ema,
            opt_state=opt_state,
            disc_params=disc_params,
            disc_opt_state=disc_opt_state,
            usage=usage,
            rng=rng,
        )
        return new, metrics

    return model, init, step


def tokenizer_dir(workdir):
    return os.path.join(workdir, "tokenizer")


def _frame_iterator(cfg, workdir, split, batch_size):
    """Shuffled single frames at data.resize_to: batches {"video": (b, 1, H, W, 3)}."""
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.frames, data_cfg.frame_skip, data_cfg.batch_size = 1, 1, batch_size
    return loader.make_train_iterator(data_cfg, split, seed=cfg.seed + 1, workdir=workdir)


def _save_recon_png(path, frames, recon):
    from PIL import Image

    top = np.concatenate(list(frames[:8]), axis=1)
    bottom = np.concatenate(list(recon[:8]), axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(path)


def train_tokenizer(cfg, workdir, mesh=None):
    """Trains the tokenizer of config.tokenizer on data.resize_to frames; returns a summary dict
    with the held-out PSNR and codebook usage of the EMA weights."""
    out = tokenizer_dir(workdir)
    mesh = mesh if mesh is not None else make_mesh(cfg.mesh)
    tcfg = cfg.tokenizer.train
    if tcfg.batch_size % batch_shards(mesh):
        raise ValueError(
            f"config.tokenizer.train.batch_size={tcfg.batch_size} does not split over {batch_shards(mesh)} devices"
        )
    res = cfg.data.resize_to
    _, init, step = make_tokenizer_trainer(cfg.tokenizer, res)
    replicated = NamedSharding(mesh, P())
    abstract = jax.eval_shape(init, jax.random.key(0))
    shardings = jax.tree.map(lambda _: replicated, abstract)
    init_j = jax.jit(init, out_shardings=shardings)
    step_j = jax.jit(
        step, in_shardings=(shardings, batch_sharding(mesh)), out_shardings=(shardings, replicated), donate_argnums=0
    )
    frames_it = _frame_iterator(cfg, workdir, cfg.data.train_split, tcfg.batch_size)
    manager = checkpoint.make_manager(os.path.join(out, "checkpoints"), keep=2)
    is_main = jax.process_index() == 0
    writer = MetricWriter(out, enabled=is_main, prefix="tokenizer")

    def to_device(batch):
        return jax.make_array_from_process_local_data(batch_sharding(mesh), batch["video"][:, 0])  # (b, H, W, 3)

    def save_images(done, state, batch):
        if done % tcfg.image_every == 0 and is_main:
            frames = batch["video"][:, 0]
            tok = Tokenizer(cfg.tokenizer, jax.device_get(state.ema_params), res)
            _save_recon_png(os.path.join(out, f"recon_{done:06d}.png"), frames, tok.decode(tok.encode(frames)))

    try:
        target = checkpoint.abstract_target(abstract, shardings)
        state = loop.resume(
            manager, target, lambda: init_j(jax.random.key(cfg.seed)), data_iter=frames_it, version=STATE_VERSION
        )
        state = loop.fit(
            state,
            step_j,
            frames_it,
            to_device,
            steps=tcfg.steps,
            manager=manager,
            writer=writer,
            meta={"kind": "tokenizer", "config": cfg.to_dict()},
            version=STATE_VERSION,
            log_every=tcfg.log_every,
            ckpt_every=tcfg.ckpt_every,
            per_step={"frames_per_sec": tcfg.batch_size},
            after_step=save_images,
            hint="Lower config.tokenizer.train.lr, then rerun to resume.",
            desc="tokenizer",
        )
        manager.wait_until_finished()
    finally:
        manager.close()
        writer.close()
    summary = evaluate_tokenizer(cfg, workdir, jax.device_get(state.ema_params))
    if jax.process_index() == 0:
        with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
    return summary


def evaluate_tokenizer(cfg, workdir, params, max_frames=512):
    """Held-out reconstruction PSNR and codebook usage/perplexity of `params` on data.eval_split."""
    tok = Tokenizer(cfg.tokenizer, params, cfg.data.resize_to)
    it = loader.make_eval_iterator(cfg.data, cfg.data.eval_split, batch_size=jax.process_count(), workdir=workdir)
    frames = []
    for batch in it:
        clips = np.asarray(batch["video"])[np.asarray(batch["valid"])]  # (b, F, H, W, 3)
        frames.append(clips.reshape((-1,) + clips.shape[2:]))
        if sum(len(f) for f in frames) >= max_frames:
            break
    frames = np.concatenate(frames)[:max_frames]
    ids = tok.encode(frames)
    recon = tok.decode(ids)
    mse = np.mean(((recon.astype(np.float64) - frames) / 255.0) ** 2)
    counts = np.bincount(ids.reshape(-1), minlength=cfg.tokenizer.n_embed)
    p = counts / counts.sum()
    return {
        "heldout_psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))),
        "frames": int(len(frames)),
        "code_usage": float(np.mean(counts > 0)),
        "perplexity": float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0])))),
        "summary": f"held-out PSNR {10 * np.log10(1.0 / max(mse, 1e-12)):.2f} dB over {len(frames)} frames, "
        f"{np.mean(counts > 0) * 100:.1f}% of codes used",
    }


def load_tokenizer(cfg, workdir):
    """The Tokenizer for a run: converted weights from tokenizer.init_from, else the EMA weights of
    the run's trained tokenizer."""
    res = cfg.data.resize_to
    if cfg.tokenizer.init_from:
        params, saved = convert_ldm.load_converted(cfg.tokenizer.init_from)
        convert_ldm.check_config(saved, cfg.tokenizer, cfg.tokenizer.init_from)
        return Tokenizer(cfg.tokenizer, params, res)
    shapes = jax.eval_shape(lambda: init_params(cfg.tokenizer, jax.random.key(0), res))
    target = checkpoint.single_device_target(shapes)
    manager = checkpoint.make_manager(os.path.join(tokenizer_dir(workdir), "checkpoints"))
    try:
        restored = checkpoint.restore_params(manager, target, item="ema", version=STATE_VERSION)
    finally:
        manager.close()
    if restored is None:
        raise FileNotFoundError(
            f"no trained tokenizer in {tokenizer_dir(workdir)}: run --mode=train_tokenizer first "
            "or set config.tokenizer.init_from"
        )
    return Tokenizer(cfg.tokenizer, jax.device_get(restored[1]), res)
