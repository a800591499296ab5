#!/usr/bin/env python3
"""Turns scripts/bench.sh's raw results (scenario, K, ilp-load JSON per line) into a markdown
table (results.md) and a grouped bar chart of packets per second (chart.svg)."""
import json
import sys
from html import escape

rows_path, out, seconds, machine = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = []
with open(rows_path) as f:
    for line in f:
        scenario, k, raw = line.rstrip("\n").split("\t", 2)
        rows.append((scenario, int(k), json.loads(raw)))


def fmt(v, digits=2):
    return "–" if v is None else f"{v:,.{digits}f}".replace(",", " ")


lines = [
    f"Measured on {machine}; {seconds} s per run; ilp-load on the same machine.",
    "",
    "| scenario | K | packets/s | p50 ms | p90 ms | p99 ms | p99.9 ms | CPU µs/packet | fulfilled | rejected |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for scenario, k, r in rows:
    rejected = sum(r["rejected"].values()) if r["rejected"] else 0
    codes = ", ".join(f"{c} {n}" for c, n in sorted(r["rejected"].items()))
    lines.append(
        f"| {scenario} | {k} | {fmt(r['pps'], 0)} | {fmt(r['p50_ms'], 3)} | {fmt(r['p90_ms'], 3)} | "
        f"{fmt(r['p99_ms'], 3)} | {fmt(r['p999_ms'], 3)} | {fmt(r['cpu_us_per_packet'], 1)} | "
        f"{r['fulfilled']} | {rejected}{' (' + codes + ')' if codes else ''} |"
    )
with open(f"{out}/results.md", "w") as f:
    f.write("\n".join(lines) + "\n")

# Grouped bars: one group per K, one bar per scenario.
scenarios = list(dict.fromkeys(s for s, _, _ in rows))
ks = sorted(set(k for _, k, _ in rows))
value = {(s, k): r["pps"] for s, k, r in rows}
peak = max(value.values(), default=1) or 1
colors = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"]
width, height, left, bottom, top = 760, 360, 70, 60, 30
plot_w, plot_h = width - left - 20, height - bottom - top
group_w = plot_w / max(len(ks), 1)
bar_w = group_w * 0.8 / max(len(scenarios), 1)
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20 * len(scenarios)}" '
    f'font-family="sans-serif" font-size="12">',
    f'<rect width="100%" height="100%" fill="white"/>',
    f'<text x="{left}" y="18" font-size="14">Packets per second (fulfilled + rejected), by packets in flight K</text>',
]
for i in range(5):
    y = top + plot_h - plot_h * i / 4
    svg.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * i / 4:,.0f}</text>')
for gi, k in enumerate(ks):
    gx = left + gi * group_w + group_w * 0.1
    for si, s in enumerate(scenarios):
        v = value.get((s, k))
        if v is None:
            continue
        h = plot_h * v / peak
        x = gx + si * bar_w
        svg.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                   f'height="{h:.1f}" fill="{colors[si % len(colors)]}"/>')
        svg.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                   f'text-anchor="middle" font-size="10">{v:,.0f}</text>')
    svg.append(f'<text x="{left + gi * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" '
               f'text-anchor="middle">K = {k}</text>')
for si, s in enumerate(scenarios):
    y = height + 20 * si - 10
    svg.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{colors[si % len(colors)]}"/>')
    svg.append(f'<text x="{left + 18}" y="{y}">{escape(s)}</text>')
svg.append("</svg>")
with open(f"{out}/chart.svg", "w") as f:
    f.write("\n".join(svg) + "\n")
