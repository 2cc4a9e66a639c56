#!/usr/bin/env python3
"""Draws docs/images/edit-chart.svg from a fisedit-bench JSON report (stages edit and edit_sizes).

Left: one U-Net call against edit size (our sparse step alone, our sparse step inside a whole edit, our
dense step, PyTorch's dense step eager and compiled). Right: a whole 20-step edit against edit size
(ours, our dense reference route, our full dense generation). Plain SVG, no plotting library.

usage: docs/tools/edit_chart.py REPORT.json OUT.svg [--torch-eager MS] [--torch-compiled MS]
"""
import argparse
import json

W, H = 460, 300          # one panel
LEFT, BOTTOM, TOP, RIGHT = 56, 46, 34, 16
COLORS = {"ours": "#1f77b4", "ours_edit": "#17becf", "dense": "#d62728", "torch_eager": "#7f7f7f",
          "torch_compiled": "#bcbd22", "dense_ref": "#ff7f0e"}


def panel(x0, title, x_max, y_max, series, hlines, y_label):
    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{title}</text>']
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + pw * x / x_max

    def py(y):
        return TOP + ph * (1 - y / y_max)

    for i in range(6):  # grid and ticks
        y = y_max * i / 5
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.0f}</text>')
    for i in range(6):
        x = x_max * i / 5
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 16}" text-anchor="middle" font-size="11">{x:.0f}%</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 8}" text-anchor="middle" font-size="12">edit region (share of the latent)</text>')
    out.append(f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {TOP + ph / 2})">{y_label}</text>')
    legend_y = TOP + ph - 10 - 14 * (len(series) - 1)  # bottom right, below the curves
    last_y = None  # labels stacked upwards from the lowest line, 13 px apart at least
    for name, value, color in sorted(hlines, key=lambda h: h[1]):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{py(value):.1f}" y2="{py(value):.1f}" stroke="{color}" '
                   f'stroke-dasharray="6 4" stroke-width="2"/>')
        y = py(value) - 4 if last_y is None else min(py(value) - 4, last_y - 13)
        last_y = y
        out.append(f'<text x="{LEFT + pw - 4}" y="{y:.1f}" text-anchor="end" font-size="11" fill="{color}">'
                   f'{name} {value:.1f} ms</text>')
    for name, points, color in series:
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>')
        out.append(f'<text x="{LEFT + pw - 8}" y="{legend_y}" text-anchor="end" font-size="11" fill="{color}">'
                   f'● {name}</text>')
        legend_y += 14
    out.append("</g>")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("out")
    ap.add_argument("--torch-eager", type=float, default=27.3, help="PyTorch eager U-Net step, ms (issue 4)")
    ap.add_argument("--torch-compiled", type=float, default=15.3, help="PyTorch compiled U-Net step, ms (issue 4)")
    args = ap.parse_args()
    report = json.load(open(args.report))
    res = report["results"]
    edit, sizes = res["edit"], res["edit_sizes"]["sizes"]
    dense_step = edit["dense_time_ms"]["median"]
    steps_alone = [(100 * r["edit_fraction"], r["time_ms"]["median"]) for r in edit["sparse"]]
    steps_in_edit = [(100 * r["edit_fraction"], r["sparse_step_ms"]["median"]) for r in sizes]
    whole = [(100 * r["edit_fraction"], r["edit_ms"]["median"]) for r in sizes]
    dense_ref = [(100 * r["edit_fraction"], r["dense_reference_edit_ms"]) for r in sizes]
    generation = res["generation"]["time_ms"]["median"]
    x_max = max(50.0, max(x for x, _ in steps_alone + whole))
    y1 = max([dense_step, args.torch_eager] + [y for _, y in steps_alone + steps_in_edit]) * 1.15
    y2 = max([generation] + [y for _, y in whole + dense_ref]) * 1.15
    device = report["device"]["name"]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 24}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W}" y="{H + 18}" text-anchor="middle" font-size="11" fill="#555">'
           f'{report["model"]["arch"]}, CFG batch 2, {report["date"][:10]}, {device}</text>']
    svg += panel(0, "One U-Net call", x_max, y1,
                 [("ours, sparse step alone", steps_alone, COLORS["ours"]),
                  ("ours, sparse step in a whole edit", steps_in_edit, COLORS["ours_edit"])],
                 [("ours dense", dense_step, COLORS["dense"]), ("PyTorch eager", args.torch_eager, COLORS["torch_eager"]),
                  ("PyTorch compiled", args.torch_compiled, COLORS["torch_compiled"])], "ms")
    svg += panel(W, "Whole edit (20 steps, prompt to pixels)", x_max, y2,
                 [("ours, sparse edit", whole, COLORS["ours"]),
                  ("ours, dense reference edit", dense_ref, COLORS["dense_ref"])],
                 [("ours dense generation", generation, COLORS["dense"])], "ms")
    svg.append("</svg>")
    with open(args.out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
