#!/usr/bin/env python3
"""REPRODUCTION.md's table and curve: KID×100 against iteration, both directions, ugatit-rs
(its run's metrics.csv, written by `train --eval-freq`) and UGATIT-pytorch (its checkpoints
scored with `ugatit eval --checkpoint ... --json`), next to the do-nothing baseline.

Standard library only. Usage:
  plot.py OURS_METRICS_CSV PT_SCORES_DIR BASELINE_A2B BASELINE_B2A OUT_SVG
PT_SCORES_DIR holds <step>_a2b.json and <step>_b2a.json. Prints the markdown table."""
import csv, glob, json, os, sys

ours_csv, pt_dir, base_a2b, base_b2a, out_svg = sys.argv[1:6]
baseline = {"a2b": float(base_a2b), "b2a": float(base_b2a)}

ours = {"a2b": {}, "b2a": {}}
with open(ours_csv) as f:
    for row in csv.DictReader(f):
        step = int(row["step"])
        for d in ("a2b", "b2a"):
            ours[d][step] = (float(row[f"kid_{d}_x100"]), float(row[f"kid_{d}_std_x100"]))
pt = {"a2b": {}, "b2a": {}}
for path in glob.glob(os.path.join(pt_dir, "*_*.json")):
    step, d = os.path.basename(path)[:-5].split("_")
    with open(path) as f:
        r = json.load(f)
    pt[d][int(step)] = (r["kid_x100"], r["kid_std_x100"])

steps = sorted(set(ours["a2b"]) | set(pt["a2b"]))
cell = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}" if v else "–"
print("| iteration | ours A→B | reference A→B | ours B→A | reference B→A |")
print("|---|---|---|---|---|")
for s in steps:
    print(f"| {s} | {cell(ours['a2b'].get(s))} | {cell(pt['a2b'].get(s))} | {cell(ours['b2a'].get(s))} | {cell(pt['b2a'].get(s))} |")
print(f"| do nothing (the source images as the fakes) | {baseline['a2b']:.2f} | | {baseline['b2a']:.2f} | |")

# Two panels side by side.
W, H, M = 420, 300, 50
values = [v[0] for d in ours for v in list(ours[d].values()) + list(pt[d].values())] + list(baseline.values())
lo, hi = min(values) - 2, max(values) + 2
x_max = max(steps)
def px(s, v, panel):
    return panel * W + M + (W - 1.5 * M) * s / x_max, (H - M) - (H - 2 * M) * (v - lo) / (hi - lo)
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{2 * W}" height="{H}" fill="white"/>']
for panel, (d, title) in enumerate([("a2b", "selfie → anime (A→B)"), ("b2a", "anime → selfie (B→A)")]):
    x0, y0 = px(0, lo, panel); x1, y1 = px(x_max, hi, panel)
    parts.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{y1 - 8}" text-anchor="middle">{title}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4; _, y = px(0, v, panel)
        parts.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{v:.0f}</text>')
    for s in steps:
        x, _ = px(s, lo, panel)
        parts.append(f'<text x="{x}" y="{y0 + 16}" text-anchor="middle">{s}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{y0 + 34}" text-anchor="middle">iteration</text>')
    parts.append(f'<text x="{x0 - 34}" y="{(y0 + y1) / 2}" transform="rotate(-90 {x0 - 34} {(y0 + y1) / 2})" text-anchor="middle">KID×100</text>')
    bx0, by = px(0, baseline[d], panel); bx1, _ = px(x_max, baseline[d], panel)
    parts.append(f'<line x1="{bx0}" y1="{by}" x2="{bx1}" y2="{by}" stroke="#999" stroke-dasharray="5,4"/>')
    for series, colour in ((ours[d], "#d62728"), (pt[d], "#1f77b4")):
        pts = " ".join("%.1f,%.1f" % px(s, series[s][0], panel) for s in sorted(series))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for s in sorted(series):
            x, y = px(s, series[s][0], panel)
            parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
lx = M + 10
for i, (name, colour, dash) in enumerate((("ugatit-rs", "#d62728", ""), ("UGATIT-pytorch", "#1f77b4", ""), ("do nothing", "#999", ' stroke-dasharray="5,4"'))):
    y = 16
    x = lx + i * 150
    parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" stroke="{colour}" stroke-width="2"{dash}/>')
    parts.append(f'<text x="{x + 30}" y="{y}">{name}</text>')
parts.append("</svg>")
with open(out_svg, "w") as f:
    f.write("\n".join(parts) + "\n")
