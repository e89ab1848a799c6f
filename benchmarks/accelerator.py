"""One prepared accelerator run (docs/accelerators.md): train-step speed and MFU, the largest batch, sampler
windows, I3D throughput and a fixed-time training run of the built-in world, as JSON and a markdown table.

    python -m benchmarks.accelerator [--out DIR] [--budget 525] [--parts peak,train,...] [--dry-run]
    bash benchmarks/accelerator.sh      # on a bare device machine: installs the carried wheels, then this

Parts, run in this order (benchmarks/accelerator_parts.py):
  peak      the chip, its bf16 datasheet peak (PEAK_BF16_TFLOPS) and measured bf16 / fp32 matmul rates;
  train     train-step time, tokens/s, TFLOP/s and MFU for Latte-S/B/L/XL at 32x32 tokens, V 16385,
            F 16 and 36: bf16 vs fp32, remat, model.masked_head (Latte-B/2 at the DMLab shape first);
  topdown   configs/topdown.py:accel trained for the time left to it, its checkpoint (tar parts) and GIFs;
  sampling  20-step MGM and FM windows and seconds per generated frame at 10x the window (B/2, XL/2);
  i3d       I3D clips/s;
  batch     the largest per-device batch per size (compiled memory, then a run at that batch).

Budget: the whole run ends within --budget seconds. Each part gets a deadline that leaves the later
parts their planned shares (PLAN_SECONDS, scaled to the budget), so time one part does not use goes
to the next; a part runs in its own process (the whole device, no leftover allocations), is stopped
at its deadline, and keeps what it measured (each result is written as it comes). Cases that would
not finish in time are recorded as skipped, with the reason. --dry-run runs every part at toy sizes
on the CPU in under 3 minutes, compiled at XLA's backend optimisation level 0 (half the compile time;
its timings mean nothing) (tests/test_accelerator.py).

Writes <out>/accelerator.json, <out>/accelerator.md (printed last), <out>/accelerator.log, the topdown
run's GIFs and <out>/topdown_run.tar.gz.partNN (at most 8 files: what the device tool brings back).
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PLAN_SECONDS = {"peak": 15, "train": 140, "topdown": 180, "sampling": 40, "i3d": 30, "batch": 120}
DRY_PLAN_SECONDS = {"peak": 5, "train": 22, "topdown": 90, "sampling": 18, "i3d": 12, "batch": 23}
GRACE_SECONDS = 5  # a part past its deadline by this much is killed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results/accelerator")
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (525; dry run 170)")
    parser.add_argument("--parts", default=",".join(PLAN_SECONDS), help="comma-separated subset, in run order")
    parser.add_argument("--dry-run", action="store_true", help="every part at toy size (a CPU, < 3 minutes)")
    parser.add_argument("--scratch", default=None, help="work files (default: a temporary folder)")
    parser.add_argument(
        "--memory-limit-gib", type=float, default=0.05, help="batch search limit when the device reports none (a CPU)"
    )
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)  # internal: run one part
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def deadlines(parts, start, budget, plan):
    """{part: absolute deadline}: the budget end minus the planned shares of the parts after it, with the
    plan scaled to the budget."""
    scale = budget / sum(plan[p] for p in parts)
    out, later = {}, 0.0
    for p in reversed(parts):
        out[p] = start + budget - later
        later += plan[p] * scale
    return out


def run_part(args):
    """The child process of one part: runs it and writes {"status", ...results} to args.result."""
    if args.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from benchmarks import accelerator_parts  # noqa: PLC0415 - imports JAX, only in the child

    result = {"status": "running"}

    def sink(key, value):
        result[key] = value
        tmp = args.result + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(tmp, args.result)

    try:
        accelerator_parts.PARTS[args.part](args, sink)
        sink("status", "ok")
    except Exception as err:  # noqa: BLE001 - recorded, the other parts still run
        sink("reason", f"{type(err).__name__}: {err}"[:2000])
        sink("status", "error")
        raise


def orchestrate(args):
    dry = args.dry_run
    plan = DRY_PLAN_SECONDS if dry else PLAN_SECONDS
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(plan))
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; expected some of {list(plan)}")
    budget = args.budget or (170.0 if dry else 525.0)
    os.makedirs(args.out, exist_ok=True)
    scratch = args.scratch or tempfile.mkdtemp(prefix="accelerator_")
    os.makedirs(scratch, exist_ok=True)
    start = time.time()
    ends = deadlines(parts, start, budget, plan)
    report = {
        "date": datetime.date.today().isoformat(),
        "dry_run": dry,
        "budget_s": budget,
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.accelerator", *sys.argv[1:]]),
        "parts": {},
    }
    log_path = os.path.join(args.out, "accelerator.log")
    # One compilation cache for the parts: the batch search and the samplers recompile programs of earlier parts.
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        JAX_COMPILATION_CACHE_DIR=os.path.join(scratch, "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
    )
    if dry:  # toy sizes check the plumbing, not the speed: XLA's backend at -O0 compiles in half the time
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    else:  # one process at a time has the device: let it use (nearly) all of its memory
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    with open(log_path, "w", encoding="utf-8") as log:
        for name in parts:
            t0 = time.time()
            result_path = os.path.join(scratch, f"{name}.json")
            if ends[name] - t0 < 3:
                report["parts"][name] = {"status": "skipped", "reason": "no time left in the budget"}
                continue
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.accelerator",
                "--part",
                name,
                "--deadline",
                str(ends[name]),
                "--result",
                result_path,
                "--out",
                args.out,
                "--scratch",
                scratch,
                "--memory-limit-gib",
                str(args.memory_limit_gib),
            ] + (["--dry-run"] if dry else [])
            log.write(f"\n===== {name} (deadline in {ends[name] - t0:.0f} s)\n")
            log.flush()
            # Its own process group: a part stopped at its deadline takes its children (the CLI modes) with it.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=max(1.0, ends[name] - time.time() + GRACE_SECONDS))
                killed = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code, killed = proc.wait(), True
            result = {"status": "no result written"}
            if os.path.exists(result_path):
                with open(result_path, encoding="utf-8") as f:
                    result = json.load(f)
            if killed:
                result.update(status="stopped at its deadline", reason="past its deadline: kept what it measured")
            elif code and result.get("status") == "ok":
                result["status"] = f"exited with {code}"
            result["seconds"] = round(time.time() - t0, 1)
            report["parts"][name] = result
            print(f"[{name}] {result['status']} in {result['seconds']:.0f} s", flush=True)
            with open(os.path.join(args.out, "accelerator.json"), "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1, default=str)
    report["total_s"] = round(time.time() - start, 1)
    with open(os.path.join(args.out, "accelerator.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, default=str)
    text = markdown(report)
    with open(os.path.join(args.out, "accelerator.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text, flush=True)
    return report


def _f(x, fmt):
    return "" if x is None else format(x, fmt)


def _skip_rows(rows, keys):
    return [
        f"| {' | '.join(str(r.get(k, '')) for k in keys)} | {r['status']}: {r.get('reason', '')[:80]} |"
        for r in rows
        if r.get("status") not in ("ok", "ran", "compiled")
    ]


def markdown(report):
    """The report as markdown: one table per part, skipped and failed cases with their reasons."""
    parts = report["parts"]
    peak = parts.get("peak", {})
    dev = peak.get("device", {})
    lines = [
        f"# Accelerator run {report['date']}" + (" (dry run: toy sizes on CPU)" if report["dry_run"] else ""),
        "",
        f"Command: `{report['command']}`; {report.get('total_s', 0):.0f} s of a {report['budget_s']:.0f} s budget.",
        "",
    ]
    if dev:
        lines += [
            f"Device: {dev.get('device_kind')} x{dev.get('devices')} ({dev.get('platform')}, "
            f"jax {dev.get('jax')}); bf16 peak {_f(dev.get('peak_bf16_tflops'), '.0f') or 'unknown'} TFLOP/s "
            f"({dev.get('peak_source')}); "
            f"measured {peak.get('matmul_n')}^3 matmul: bf16 {_f(peak.get('matmul_bfloat16_tflops'), '.1f')}, "
            f"fp32 {_f(peak.get('matmul_float32_tflops'), '.1f')} TFLOP/s.",
            "",
        ]
    lines += ["| part | status | seconds |", "|---|---|---|"]
    lines += [
        f"| {k} | {v.get('status')}{': ' + v['reason'][:100] if v.get('reason') else ''} | {v.get('seconds', '')} |"
        for k, v in parts.items()
    ]
    train = parts.get("train", {}).get("rows", [])
    if train:
        keys = ("size", "F", "dtype", "remat", "masked_head", "B")
        lines += [
            "",
            "## Train step (one device, 2 clips, 32x32 tokens, V 16385; MFU vs the bf16 peak)",
            "",
            "| size | F | dtype | remat | masked head | B | attention | step ms | tokens/s | TFLOP/s | MFU | "
            "compile s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['size']} | {r['F']} | {r['dtype']} | {r['remat']} | {r['masked_head']} | {r['B']} | "
            f"{r.get('attention', '')} | {1e3 * r['step_s']:.1f} | {r['tokens_per_s']:.0f} | {r['tflops']:.1f} | "
            f"{_f(r.get('mfu') and 100 * r['mfu'], '.1f')}{'%' if r.get('mfu') else ''} | {r['compile_s']:.1f} |"
            for r in train
            if r.get("status") == "ok"
        ]
        skipped = _skip_rows(train, keys)
        if skipped:
            lines += [
                "",
                "| size | F | dtype | remat | masked head | B | not measured |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += skipped
    batch = parts.get("batch", {}).get("rows", [])
    if batch:
        lines += [
            "",
            "## Largest batch per device (bf16, masked head; compiled memory <= 95% of "
            f"{_f((parts['batch'].get('memory_limit_bytes') or 0) / 2**30, '.1f')} GiB)",
            "",
            "| size | F | remat | max B | GiB at max B | GiB per clip | status | step ms | tokens/s | MFU |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in batch:
            if "max_batch" in r:
                lines.append(
                    f"| {r['size']} | {r['F']} | {r['remat']} | {r['max_batch']} | "
                    f"{_f(r.get('max_batch_bytes') and r['max_batch_bytes'] / 2**30, '.1f')} | "
                    f"{r['bytes_per_clip'] / 2**30:.2f} | "
                    f"{r['status']} | {_f(r.get('step_s') and 1e3 * r['step_s'], '.0f')} | "
                    f"{_f(r.get('tokens_per_s'), '.0f')} | {_f(r.get('mfu') and 100 * r['mfu'], '.1f')} |"
                )
            else:
                lines.append(
                    f"| {r['size']} | {r['F']} | {r['remat']} | | | | {r['status']}: {r.get('reason', '')[:80]} | | | |"
                )
    sampling = parts.get("sampling", {}).get("rows", [])
    if sampling:
        lines += [
            "",
            "## Sampling (bf16, batch 1, 20 steps per window; rollouts m 2, s F - 2)",
            "",
            "| size | F | ms / NFE | MGM window s | FM window s | MGM / 20 NFE | s per frame at 10x | status |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['size']} | {r['F']} | {_f(r.get('ms_per_nfe'), '.1f')} | {_f(r.get('mgm_window_s'), '.3f')} | "
            f"{_f(r.get('fm_window_s'), '.3f')} | {_f(r.get('mgm_vs_20_forwards'), '.2f')} | "
            f"{_f(r.get('rollout_10x_s_per_frame'), '.4f')} | {r['status']} {r.get('reason', '')[:60]} |"
            for r in sampling
        ]
    i3d = parts.get("i3d", {})
    if i3d.get("rows"):
        lines += [
            "",
            f"## I3D (weights: {i3d.get('weights')})",
            "",
            "| batch | frames | s / call | clips/s | status |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['batch']} | {r.get('frames', '')} | {_f(r.get('seconds'), '.3f')} | "
            f"{_f(r.get('clips_per_s'), '.1f')} | {r['status']} |"
            for r in i3d["rows"]
        ]
    top = parts.get("topdown", {})
    if top.get("train_last_metrics") or top.get("stage_seconds"):
        m = top.get("train_last_metrics", {})
        lines += [
            "",
            f"## Built-in world ({top.get('config')})",
            "",
            f"Stages (s): {top.get('stage_seconds')}; trained {m.get('step', '?')} steps (time limit "
            f"{_f(top.get('train_max_seconds'), '.0f')} s; final loss {_f(m.get('loss'), '.3f')}, "
            f"masked accuracy {_f(m.get('accuracy'), '.3f')}, {_f(m.get('steps_per_sec'), '.1f')} steps/s); "
            f"samples: {top.get('samples', {}).get('summary', '')}; packed: {top.get('packed')}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.part:
        return run_part(args)
    return orchestrate(args)


if __name__ == "__main__":
    main()
