#!/usr/bin/env python3
"""Bar chart of a benches/run.sh run: python3 benches/chart.py results.json chart.png

Left: every fio job, the metadata job and pgbench, each system's figure relative to
native (log scale; native = 1). Right: snapshot and clone time against volume size
(Tessera), when the snapshot job ran.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"tessera": "#d62728", "native": "#7f7f7f", "juicefs": "#1f77b4", "juicefs-redis": "#9467bd",
          "bindfs": "#2ca02c"}
NAMES = {"tessera": "Tessera", "native": "native", "juicefs": "JuiceFS (SQLite)", "juicefs-redis": "JuiceFS (Redis)",
         "bindfs": "bindfs"}
SHORT = {
    "seq-write-1m": "seq write 1M", "seq-read-1m": "seq read 1M",
    "rand-read-4k-psync": "rand read 4k psync", "rand-read-4k-libaio16": "rand read 4k aio16",
    "rand-write-4k-psync": "rand write 4k psync", "rand-write-4k-libaio16": "rand write 4k aio16",
    "randrw-70-30-4k-libaio16": "70/30 mix 4k aio16", "fsync-4k": "4k + fdatasync",
}


def label(job_id):
    if job_id == "metadata":
        return "metadata"
    if job_id == "pgbench":
        return "pgbench TPC-B, 4 clients"
    base, _, nj = job_id.rpartition("-")
    return "%s, %s" % (SHORT.get(base, base), nj)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip())
    with open(sys.argv[1]) as f:
        res = json.load(f)
    jobs = [j for j in res["jobs"] if j["kind"] in ("fio", "metadata", "pgbench")]
    systems = [s for s in ("tessera", "juicefs", "juicefs-redis", "bindfs", "native") if s in res["measured_systems"]]

    snap = next((j for j in res["jobs"] if j["id"] == "snapshot"), {})
    pts = snap.get("points", [])
    if pts:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(16, 7), gridspec_kw={"width_ratios": [3, 1]})
    else:  # no snapshot job in this run (--jobs): the jobs alone
        fig, ax = plt.subplots(1, 1, figsize=(max(6, 1 + len(jobs)), 7))
    width = 0.8 / max(1, len(systems))
    for k, s in enumerate(systems):
        xs, ys = [], []
        for i, j in enumerate(jobs):
            v = j["results"].get(s, {}).get("value")
            n = j["results"].get("native", {}).get("value")
            if v and n:
                xs.append(i + (k - (len(systems) - 1) / 2) * width)
                ys.append(v / n)
        ax.bar(xs, ys, width, label=NAMES[s], color=COLORS[s])
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(jobs)))
    ax.set_xticklabels([label(j["id"]) for j in jobs], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("relative to native (log scale; higher is better)")
    mode = res["env"].get("mode", "")
    kinds = [k for k in ("fio", "metadata", "pgbench") if any(j["kind"] == k for j in jobs)]
    ax.set_title("%s jobs (%s mode)" % (", ".join(kinds), mode))
    ax.legend()

    if pts:
        xs = range(len(pts))
        for k, op in enumerate(("snapshot", "clone")):
            ys = [p[op + "_median_ms"] or 0 for p in pts]
            ax2.bar([x + (k - 0.5) * 0.4 for x in xs], ys, 0.4, label=op,
                    color=("#d62728", "#ff9896")[k])
        ax2.axhline(100, color="black", linestyle="--", linewidth=0.8, label="target 100 ms")
        ax2.set_xticks(list(xs))
        ax2.set_xticklabels(["%s\n%s files" % (p["size"], "{:,}".format(p["files"])) for p in pts], fontsize=8)
        ax2.set_ylabel("ms (median)")
        ax2.set_title("Tessera snapshot / clone time")
        ax2.legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
