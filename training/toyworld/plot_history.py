#!/usr/bin/env python3
"""Draws a training history (history.json from train.py) as an SVG loss curve. Standard library only.

usage: plot_history.py HISTORY.json OUT.svg
"""
import json
import math
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    history = json.load(open(sys.argv[1]))
    series = {
        "VAE reconstruction L1": [(e["seconds"], e["l1"]) for e in history if e["stage"] == "vae"],
        "U-Net noise MSE": [(e["seconds"], e["mse"]) for e in history if e["stage"] == "unet" and e["step"] > 0],
    }
    w, h, pad = 640, 260, 48
    panels = []
    for k, (title, points) in enumerate(series.items()):
        x0 = k * (w // 2)
        xs = [p[0] for p in points]
        ys = [math.log10(p[1]) for p in points]
        lo, hi = math.floor(min(ys) * 2) / 2, math.ceil(max(ys) * 2) / 2
        span_x = max(xs) - min(xs) or 1

        def px(x):
            return x0 + pad + (x - min(xs)) / span_x * (w // 2 - 1.5 * pad)

        def py(y):
            return h - pad - (y - lo) / (hi - lo or 1) * (h - 2 * pad)

        path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(zip(xs, ys)))
        panels.append(f'<text x="{x0 + pad}" y="20" font-size="13">{title} (log scale) against training seconds</text>')
        panels.append(f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="1.8"/>')
        panels.append(f'<line x1="{x0 + pad}" y1="{h - pad}" x2="{x0 + w // 2 - pad // 2}" y2="{h - pad}" stroke="#444"/>')
        panels.append(f'<line x1="{x0 + pad}" y1="{pad}" x2="{x0 + pad}" y2="{h - pad}" stroke="#444"/>')
        tick = lo
        while tick <= hi + 1e-9:
            panels.append(f'<text x="{x0 + 4}" y="{py(tick) + 4:.1f}" font-size="10">{10 ** tick:.3g}</text>')
            tick += 0.5
        for x in (min(xs), max(xs)):
            panels.append(f'<text x="{px(x) - 10:.1f}" y="{h - pad + 14}" font-size="10">{x:.0f} s</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>' + "".join(panels) + "</svg>\n")
    open(sys.argv[2], "w").write(svg)


if __name__ == "__main__":
    main()
