"""A PNG line plot of FVD against horizon, drawn with Pillow (no plotting library needed).

plot_curves("eval/maze_fvd.png", {"MaskFlow": (x, y), "frozen": (x, y2)},
            xlabel="last generated frame", ylabel="FVD")
"""

import numpy as np

COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (127, 127, 127))


def _ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n)


def plot_curves(path, curves, *, title="", xlabel="", ylabel="", size=(720, 440)):
    """Writes a PNG of one polyline per named curve {name: (x (K,), y (K,))}; returns the path.

    Non-finite y values are dropped. The y axis starts at 0 (FVD and PSNR are non-negative).
    """
    from PIL import Image, ImageDraw  # noqa: PLC0415

    if not curves:
        raise ValueError("plot_curves needs at least one curve")
    w, h = size
    left, right, top, bottom = 70, 20, 30 if title else 14, 50
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    pts = {k: (np.asarray(x, np.float64), np.asarray(y, np.float64)) for k, (x, y) in curves.items()}
    xs = np.concatenate([x for x, _ in pts.values()])
    ys = np.concatenate([y[np.isfinite(y)] for _, y in pts.values()] + [np.zeros(1)])
    x0, x1 = float(xs.min()), float(xs.max())
    y1 = float(ys.max()) * 1.05 or 1.0
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1

    def to_px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right), h - bottom - y / y1 * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for t in _ticks(0, y1):
        px = to_px(x0, t)[1]
        d.line([left - 4, px, left, px], fill=(0, 0, 0))
        d.line([left, px, w - right, px], fill=(230, 230, 230))
        d.text((4, px - 6), f"{t:.0f}" if y1 >= 10 else f"{t:.2f}", fill=(0, 0, 0))
    for t in _ticks(x0, x1):
        px = to_px(t, 0)[0]
        d.line([px, h - bottom, px, h - bottom + 4], fill=(0, 0, 0))
        d.text((px - 10, h - bottom + 8), f"{t:.0f}", fill=(0, 0, 0))
    d.text((w // 2 - 4 * len(xlabel), h - 18), xlabel, fill=(0, 0, 0))
    d.text((4, 2 if not title else 14), ylabel, fill=(0, 0, 0))
    if title:
        d.text((left, 2), title, fill=(0, 0, 0))
    for i, (name, (x, y)) in enumerate(pts.items()):
        color = COLORS[i % len(COLORS)]
        keep = np.isfinite(y)
        line = [to_px(a, b) for a, b in zip(x[keep], y[keep])]
        if len(line) > 1:
            d.line(line, fill=color, width=2)
        for px, py in line:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        d.text((w - right - 200, top + 6 + 14 * i), f"- {name}", fill=color)
    img.save(path)
    return path


def fvd_by_horizon(path, result):
    """plot_curves of an eval/horizons.evaluate() result (or its JSON): FVD against the horizon per method."""
    rows = result["rows"]
    names = list(dict.fromkeys(r["method"] for r in rows))
    curves = {
        k: ([r["horizon"] for r in rows if r["method"] == k], [r["fvd"] for r in rows if r["method"] == k])
        for k in names
    }
    return plot_curves(
        path,
        curves,
        title=f"FVD by horizon ({result['record']['protocol']} protocol, {rows[0]['num_videos']} videos)",
        xlabel="frames generated",
        ylabel="FVD",
    )
