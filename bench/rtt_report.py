#!/usr/bin/env python3
"""The table and chart of bench/rtt.sh: RESULTS.tsv (rtt, case, ms per
line) -> OUT/rtt.md, OUT/rtt.json, OUT/rtt.svg (the chart needs matplotlib;
without it the script says so and writes the rest)."""
import json, math, statistics, sys
from collections import defaultdict

NAMES = {
    "direct": "direct (no proxy)",
    "socks5-sixsocks": "SOCKS5 (curl) → sixsocks",
    "socks5-sixsocks-password": "SOCKS5 + password (curl -U) → sixsocks",
    "socks5-danted": "SOCKS5 (curl) → danted",
    "socks6-client": "SOCKS 6 client → sixsocks, no TFO",
    "socks6-client-tfo": "SOCKS 6 client → sixsocks, TFO + token",
    "gateway-optimistic": "curl → gateway (optimistic) → SOCKS 6 → sixsocks",
    "gateway-optimistic-password": "curl → gateway (optimistic) → SOCKS 6 + password → sixsocks",
    "gateway-strict": "curl → gateway (strict) → SOCKS 6 → sixsocks",
}

results, out = sys.argv[1], sys.argv[2]
ms = defaultdict(list)
order = []
for line in open(results):
    rtt, case, v = line.split("\t")
    rtt = int(rtt)
    if case not in order:
        order.append(case)
    try:
        ms[(rtt, case)].append(float(v))
    except ValueError:
        pass
rtts = sorted({r for r, _ in ms})
summary = {}
rows = ["| case | " + " | ".join(f"RTT {r} ms" for r in rtts) + " |",
        "|---|" + "---|" * len(rtts)]
for case in order:
    cells = []
    for r in rtts:
        vals = [v for v in ms.get((r, case), []) if not math.isnan(v)]
        if not vals:
            cells.append("failed")
            continue
        med = statistics.median(vals)
        turns = round(med / r)
        summary.setdefault(case, {})[r] = {"ms": med, "turns": turns, "runs": vals}
        cells.append(f"{med:,.0f} ms ({turns})")
    rows.append(f"| {NAMES.get(case, case)} | " + " | ".join(cells) + " |")
table = "\n".join(rows) + "\n"
open(f"{out}/rtt.md", "w").write(
    "Time to the first response byte (median), and in brackets the round trips "
    "on the slow client–proxy link it took (median ÷ RTT, rounded; the TCP "
    "handshake counts as one).\n\n" + table)
json.dump(summary, open(f"{out}/rtt.json", "w"), indent=1)
print(table)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("rtt_report.py: matplotlib is missing: no chart (pip install matplotlib)", file=sys.stderr)
    sys.exit(0)
fig, ax = plt.subplots(figsize=(11, 5))
width = 0.8 / max(len(order), 1)
for i, case in enumerate(order):
    xs = [j + i * width for j in range(len(rtts))]
    ys = [summary.get(case, {}).get(r, {}).get("ms", 0) for r in rtts]
    bars = ax.bar(xs, ys, width, label=NAMES.get(case, case))
    for b, r in zip(bars, rtts):
        t = summary.get(case, {}).get(r, {}).get("turns")
        if t is not None:
            ax.annotate(str(t), (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rtts))])
ax.set_xticklabels([f"RTT {r} ms" for r in rtts])
ax.set_ylabel("ms to the first response byte (number: round trips)")
ax.set_title("Time to the first response byte over a slow client–proxy link")
ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
fig.savefig(f"{out}/rtt.svg")
fig.savefig(f"{out}/rtt.png", dpi=80)
print(f"chart: {out}/rtt.svg")
