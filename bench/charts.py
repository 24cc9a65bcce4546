#!/usr/bin/env python3
"""SVG charts of a benchmark run: one per figure, every peer in each.

    bench/charts.py SUMMARY.json [--out DIR] [--format svg|png] [--if-available]

SUMMARY.json is what `sixsocks-bench report --json results.jsonl` prints
(bench/run.sh writes it as summary.json beside report.md). For each table of
the report this draws DIR/MODE_FIGURE.svg (e.g. throughput_gbps.svg,
connrate_latency_p99_us.svg): a group of bars per case, a bar per peer at
the median of the repetitions, a whisker over their spread (min-max). A
cell whose runs all stalled or failed has no bar but the word STALL or
FAIL; one where only some did carries "STALL 1/3" above its bar. DIR
defaults to charts/ beside SUMMARY.json.

Needs matplotlib (python3 -m pip install matplotlib, or Debian's
python3-matplotlib). Without it the script says so loudly and exits 1,
or 0 with --if-available (then it only warns: the tables are the results,
the charts a view of them).
"""

import argparse
import json
import os
import sys

# The same colour for a peer in every chart.
COLOURS = {
    "direct": "#9e9e9e",
    "floor": "#424242",
    "sixsocks": "#1f77b4",
    "danted": "#ff7f0e",
    "microsocks": "#2ca02c",
}
OTHERS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#d62728"]


def loud(msg):
    print("\n*** %s\n" % msg, file=sys.stderr)


def file_name(metric, fmt):
    ptr = metric["pointer"].strip("/").replace("/", "_")
    return "%s_%s.%s" % (metric["mode"], ptr, fmt)


def colour(label, others):
    if label in COLOURS:
        return COLOURS[label]
    if label not in others:
        others[label] = OTHERS[len(others) % len(OTHERS)]
    return others[label]


def draw(plt, metric, path, fmt, others):
    labels = metric["labels"]
    cases = metric["cases"]
    n = max(len(labels), 1)
    width = 0.8 / n
    fig_w = max(6.0, 1.2 + len(cases) * (0.35 * n + 0.5))
    fig, ax = plt.subplots(figsize=(min(fig_w, 22.0), 4.8))
    top = 0.0
    for ci, case in enumerate(cases):
        for li, label in enumerate(labels):
            c = case["cells"].get(label)
            if c and c["median"] is not None:
                top = max(top, c["max"] if c["max"] is not None else c["median"])
    top = top or 1.0
    for li, label in enumerate(labels):
        xs, ys, lo, hi = [], [], [], []
        for ci, case in enumerate(cases):
            c = case["cells"].get(label)
            if not c:
                continue
            x = ci + (li - (n - 1) / 2) * width
            what = "STALL" if c["stalled"] else "FAIL"
            if c["median"] is None:
                ax.text(x, top * 0.02, what, rotation=90, ha="center", va="bottom",
                        fontsize=7, color="#c62828", fontweight="bold")
                continue
            xs.append(x)
            ys.append(c["median"])
            lo.append(c["median"] - c["min"])
            hi.append(c["max"] - c["median"])
            if c["bad"]:
                ax.text(x, c["max"] + top * 0.01, "%s %d/%d" % (what, c["bad"], c["runs"]),
                        rotation=90, ha="center", va="bottom", fontsize=6, color="#c62828")
        ax.bar(xs, ys, width * 0.92, label=label, color=colour(label, others),
               yerr=[lo, hi], capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#000000"})
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c["case"] for c in cases], rotation=20 if len(cases) > 4 else 0,
                       ha="right" if len(cases) > 4 else "center", fontsize=8)
    ax.set_title(metric["title"], fontsize=10)
    ax.set_ylim(0, top * 1.15)
    ax.grid(axis="y", linewidth=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    ax.set_ylabel("median of the repetitions, whiskers min–max", fontsize=7, color="#616161")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description="SVG charts of a sixsocks benchmark run")
    ap.add_argument("summary", help="the output of sixsocks-bench report --json")
    ap.add_argument("--out", help="directory for the SVG files (default: charts/ beside SUMMARY)")
    ap.add_argument("--format", choices=["svg", "png"], default="svg",
                    help="file format (default svg; png to look at them where SVG cannot be shown)")
    ap.add_argument("--if-available", action="store_true",
                    help="without matplotlib, warn and exit 0 instead of 1")
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "sixsocks-bench"
        matplotlib.rcParams["svg.fonttype"] = "none"
        import matplotlib.pyplot as plt
    except ImportError as e:
        loud("charts: matplotlib is missing (%s): no charts drawn. Install it with "
             "`python3 -m pip install matplotlib` or `apt-get install python3-matplotlib`." % e)
        return 0 if a.if_available else 1
    with open(a.summary, encoding="utf-8") as f:
        summary = json.load(f)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.summary)), "charts")
    os.makedirs(out, exist_ok=True)
    others = {}
    written = []
    for metric in summary.get("metrics", []):
        if not metric.get("cases"):
            continue
        path = os.path.join(out, file_name(metric, a.format))
        draw(plt, metric, path, a.format, others)
        written.append(path)
    print("charts: %d %s files in %s" % (len(written), a.format.upper(), out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
