"""Markdown for REPORT.md and the evaluation outputs: table cells and the FVD-per-horizon table.

The pipeline's REPORT.md and `--mode=eval`'s `eval/<protocol>.md` print the rows of eval/horizons.py
with `fvd_table`, so the two show the same numbers the same way.
"""


def cell(row, key, fmt):
    """A report table cell: row[key] formatted with `fmt`, or empty when missing or None."""
    return "" if row.get(key) is None else format(row[key], fmt)


def _fvd(row):
    spread = row.get("fvd_std") and len(row.get("fvd_values") or ()) > 1
    return f"{row['fvd']:.1f} ± {row['fvd_std']:.1f}" if spread else f"{row['fvd']:.1f}"


def fvd_table(result):
    """Markdown lines of an eval/horizons.evaluate() result (or its JSON): a heading, what the numbers
    are and how to read them (the small-sample caveat), and one row per (horizon, method) after a row of
    the real clips' motion and contrast."""
    rec, rows = result["record"], result["rows"]
    real = {d["horizon"]: d for d in result.get("real_dynamics", [])}
    spans = ", ".join(f"{h}: [{a}, {z})" for h, a, z in rec["windows"])
    groups = (
        f"FVD per group of {rec['group_size']} videos, mean ± std over {rec['groups']} group(s) and "
        f"{len(rec['seeds'])} seed(s); "
        if rec.get("group_size")
        else ""
    )
    lines = [
        "",
        f"## FVD per horizon ({rec['protocol']} protocol, {rows[0]['num_videos']} videos per FVD, "
        f"{rec['frames']}-frame clips)",
        "",
        f"Reference: {rec['reference']}. Frames scored at each horizon: {spans} (after {rec['context']} real "
        f"context frames; {'with' if rec.get('actions') else 'without'} the real videos' actions). {groups}"
        f"With {rows[0]['num_videos']} videos and 400-d I3D features, FVD is biased upward, and most for sets "
        "with much spread: a set with little variety (a frozen frame, blur) gains. KVD (unbiased MMD² with the "
        "cubic polynomial kernel on the same features; 0 in expectation for matching sets) has no such bias "
        "but a large variance at this count. Read a score below the frozen frame with the next-frame check "
        "and the GIFs. How often each comparison holds on random subsets of the videos: "
        "`python -m maskflow_jax.eval.resample <workdir>`. Compare methods at one horizon, not across "
        "horizons. Motion: mean absolute change between consecutive frames; contrast: standard deviation of "
        "a frame's pixels (both in grey levels, eval/metrics.py).",
        "",
        "| horizon | method | FVD | KVD | motion | contrast | NFE | s / generated frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        if r["horizon"] in real and (i == 0 or rows[i - 1]["horizon"] != r["horizon"]):
            d = real[r["horizon"]]
            lines.append(
                f"| {r['horizon']} | real held-out videos (the reference) |  |  | {d['motion']:.1f} | "
                f"{d['contrast']:.1f} |  |  |"
            )
        lines.append(
            f"| {r['horizon']} | {r['method']} | {_fvd(r)} | {cell(r, 'kvd', '.1f')} | "
            f"{cell(r, 'motion', '.1f')} | {cell(r, 'contrast', '.1f')} | {cell(r, 'nfe', 'd')} | "
            f"{cell(r, 'seconds_per_frame', '.3f')} |"
        )
    return lines
