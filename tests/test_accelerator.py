"""benchmarks/accelerator.py: the budget, the report, packing the trained run, train.max_seconds, the
topdown `accel` variant, and the --dry-run of every part on this CPU."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from factories import structured_tokens, tiny_config, token_iterator
from jax.sharding import AxisType

from benchmarks import accelerator, accelerator_parts
from configs import topdown
from maskflow_jax import checkpoint
from maskflow_jax.config_validation import validate
from maskflow_jax.train import loop

ROOT = Path(__file__).resolve().parents[1]


def test_peak_table_matches_device_kinds():
    assert accelerator_parts.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert accelerator_parts.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert accelerator_parts.peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert accelerator_parts.peak_bf16_tflops("TPU v5 lite") == 197.0
    assert accelerator_parts.peak_bf16_tflops("cpu") is None
    assert accelerator_parts.PEAK_SOURCE == "vendor datasheet"


def test_deadlines_keep_later_parts_their_planned_shares():
    plan = {"a": 10, "b": 20, "c": 30}
    ends = accelerator.deadlines(["a", "b", "c"], 100.0, 120.0, plan)  # the plan scaled x2 to the budget
    assert ends == {"c": 220.0, "b": 160.0, "a": 120.0}
    ends = accelerator.deadlines(["c", "a"], 0.0, 40.0, plan)
    assert ends == {"a": 40.0, "c": 30.0}
    assert sum(accelerator.PLAN_SECONDS.values()) <= 540  # 9 minutes on the device, with the wheels' install


def test_markdown_reports_measured_and_skipped_cases():
    row = {
        "size": "B",
        "F": 36,
        "dtype": "bfloat16",
        "remat": False,
        "masked_head": True,
        "B": 2,
        "status": "ok",
        "attention": "cudnn",
        "step_s": 0.05,
        "tokens_per_s": 1.5e6,
        "tflops": 400.0,
        "mfu": 0.404,
        "compile_s": 12.0,
    }
    skipped = dict(row, size="XL", status="skipped", reason="out of time: 3 s left in the part")
    report = {
        "date": "2026-12-02",
        "dry_run": False,
        "budget_s": 525,
        "command": "python -m benchmarks.accelerator",
        "total_s": 500,
        "parts": {"train": {"status": "ok", "rows": [row, skipped], "seconds": 170}},
    }
    text = accelerator.markdown(report)
    assert "| B | 36 | bfloat16 | False | True | 2 | cudnn | 50.0 | 1500000 | 400.0 | 40.4% | 12.0 |" in text
    assert "| XL | 36 | bfloat16 | False | True | 2 | skipped: out of time: 3 s left in the part |" in text


def test_pack_run_keeps_the_newest_checkpoints_and_the_held_out_split(tmp_path, monkeypatch):
    work = tmp_path / "run"
    files = {
        "checkpoints/3/state/a": b"old",
        "checkpoints/10/state/a": os.urandom(3000),
        "tokenizer/checkpoints/5/state/b": b"tok",
        "tokenizer/summary.json": b"{}",
        "tokens/test-00000.array_record": b"t",
        "tokens/test.json": b"{}",
        "tokens/train-00000.array_record": b"x",
        "data/prepared/test.json": b"{}",
        "data/prepared/train.json": b"{}",
        "train_metrics.jsonl": b"{}\n",
    }
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    monkeypatch.setattr(accelerator_parts, "TAR_PART_BYTES", 1024)
    parts, size = accelerator_parts.pack_run(str(work), str(tmp_path / "out" / "run"))
    assert len(parts) == -(-size // 1024) > 1 and all(os.path.getsize(p) <= 1024 for p in parts)
    accelerator_parts.unpack_run(parts, str(tmp_path / "back"))
    back = {str(p.relative_to(tmp_path / "back")) for p in (tmp_path / "back").rglob("*") if p.is_file()}
    assert back == {k for k in files if "train-" not in k and "/3/" not in k and "prepared/train" not in k}
    assert (tmp_path / "back" / "checkpoints/10/state/a").read_bytes() == files["checkpoints/10/state/a"]


def test_train_max_seconds_stops_with_a_checkpoint(tmp_path):
    cfg = tiny_config(train__steps=50, train__ckpt_every=100, train__max_seconds=1e-6)
    mesh = jax.make_mesh(
        (1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3, devices=jax.devices()[:1]
    )
    batches = token_iterator(structured_tokens(16, 4, 4, 16), 8)
    state = loop.train_denoiser(cfg, str(tmp_path), batches=batches, mesh=mesh)
    assert int(state.step) == 1  # the first step ends past any positive limit
    manager = checkpoint.make_manager(str(tmp_path / "checkpoints"))
    assert manager.latest_step() == 1
    manager.close()


def test_topdown_accel_variant():
    cfg = topdown.get_config("accel")
    validate(cfg, num_devices=1)
    assert (cfg.data.batch_size, cfg.model.dtype, cfg.train.keep_checkpoints) == (64, "auto", 1)
    assert cfg.train.max_seconds > 0 and cfg.train.steps > 100_000  # the time limit ends the run
    assert (cfg.model.hidden, cfg.model.depth) == (None, None) and cfg.model.size == "tiny"  # small enough to ship
    toy = topdown.get_config("accel,smoke")
    validate(toy, num_devices=1)
    assert toy.data.frames == 8 and toy.train.steps == 30 and toy.train.max_seconds > 0


def _dry_run(tmp_path, *args, timeout):
    out = tmp_path / "out"
    start = time.time()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.accelerator",
            "--dry-run",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "accelerator.json").read_text())
    assert (out / "accelerator.md").read_text().startswith("# Accelerator run")
    return report, out, time.time() - start


def test_dry_run_orchestrates_parts_into_json_and_markdown(tmp_path):
    report, out, _ = _dry_run(tmp_path, "--parts", "peak", "--budget", "40", timeout=120)
    assert list(report["parts"]) == ["peak"] and report["dry_run"] and report["total_s"] < 45
    peak = report["parts"]["peak"]
    assert peak["status"] == "ok" and peak["device"]["platform"] == "cpu" and peak["matmul_float32_tflops"] > 0
    assert "Device: cpu" in (out / "accelerator.md").read_text()


@pytest.mark.parametrize("quadratic", [0.0, 0.05])
def test_largest_batch_search_fits_the_limit(quadratic):
    compiles = []

    def bytes_at(b):  # a stand-in for XLA's compiled count: fixed + linear (+ a superlinear term)
        compiles.append(b)
        return 100 + 10 * b + quadratic * b * b

    best, got, b1, slope, checked = accelerator_parts.largest_batch(bytes_at, limit=1000)
    searched = len(compiles)
    assert checked and got == bytes_at(best) <= 950 and (b1, slope) == (bytes_at(1), bytes_at(2) - bytes_at(1))
    assert bytes_at(best + 1) > 950 or quadratic  # exact for a linear count
    assert best >= (85 if not quadratic else 50) and searched <= 2 + 4
    # Out of time after B = 1 and 2: the line's prediction, not compiled.
    line = int((950 - (b1 - slope)) // slope)  # 85 for the linear count, 83 with the quadratic term
    assert accelerator_parts.largest_batch(bytes_at, 1000, more_time=lambda: False)[::4] == (line, False)
    nothing = accelerator_parts.largest_batch(lambda b: 2000 + b, limit=1000)  # not even B = 1 fits
    assert nothing[0] == 1 and nothing[1] > 950 and nothing[4]


@pytest.mark.slow
def test_dry_run_of_every_part_under_three_minutes(tmp_path):
    """The whole --dry-run: every part finishes with results in < 3 minutes, and the packed topdown run
    unpacks into a fresh directory that --mode=sample loads and samples from."""
    report, out, seconds = _dry_run(tmp_path, timeout=400)
    assert seconds < 180, seconds
    parts = report["parts"]
    assert list(parts) == list(accelerator.PLAN_SECONDS)
    assert {k: v["status"] for k, v in parts.items()} == {k: "ok" for k in parts}
    for name in ("train", "sampling", "i3d"):
        assert any(r["status"] == "ok" for r in parts[name]["rows"]), (name, parts[name])
    search = parts["batch"]["rows"][0]  # compiled at B = 1 and 2 at least; checked and run when time allows
    assert search["status"] in ("predicted", "compiled", "ran") and search["max_batch"] >= 2, search
    top = parts["topdown"]
    assert top["unpacked_sample_ok"] and top["train_last_metrics"]["step"] >= 1
    assert all((out / p).exists() for p in top["packed"]["parts"] + top["packed"]["gifs"])
    assert len([p for p in out.iterdir() if p.is_file()]) <= 8  # what the device tool brings back
    assert np.isfinite(top["train_last_metrics"]["loss"])
