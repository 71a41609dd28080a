#!/usr/bin/python3
"""Plots and tabulates the learning-quality study (bench/quality_study.cc's JSON lines) for docs/quality.md.

  scripts/quality/plot.py RESULTS.jsonl [-o docs/quality]

Writes loss-vs-rounds.png, loss-vs-bytes.png, loss-vs-wall.png and rouge-vs-rounds.png into the output directory
and prints the table of final numbers (Markdown) on stdout. Needs matplotlib (Debian: python3-matplotlib).
Values are means over the seeds present; the table's +- is the sample standard deviation when there are several.
"""
import argparse
import collections
import json
import math
import os
import statistics
import sys


def load(path):
    rows = collections.defaultdict(lambda: collections.defaultdict(dict))  # method -> seed -> round -> row
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit("plot: %s:%d: %s" % (path, n, e))
            rows[r["method"]][r["seed"]][r["round"]] = r
    return rows


def mean_curve(by_seed, key):
    """(round, mean over seeds) for the rounds where every seed has a finite value of key."""
    rounds = sorted(set.intersection(*(set(s.keys()) for s in by_seed.values())))
    out = []
    for r in rounds:
        vals = [s[r].get(key) for s in by_seed.values()]
        if all(v is not None and math.isfinite(v) for v in vals):
            out.append((r, statistics.mean(vals)))
    return out


def cumulative_bytes(by_seed):
    seed = sorted(by_seed)[0]
    total, out = 0.0, {}
    for r in sorted(by_seed[seed]):
        total += by_seed[seed][r].get("up_bytes_per_client", 0)
        out[r] = total
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("-o", "--out", default="docs/quality")
    args = ap.parse_args()
    rows = load(args.results)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(args.out, exist_ok=True)
    # One colour per method in every figure.
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(sorted(rows))}

    # The coordinator's held-out loss after every round (central: `tributary eval`'s, the same measure).
    curves = {method: mean_curve(by_seed, "heldout_loss") for method, by_seed in rows.items()}

    figures = [("loss-vs-rounds.png", "round", "held-out loss", None),
               ("loss-vs-bytes.png", "uploaded bytes per client (cumulative, log)", "held-out loss", "bytes"),
               ("loss-vs-wall.png", "wall time on the 2-core machine (s)", "held-out loss", "wall")]
    for name, xlabel, ylabel, xkind in figures:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in sorted(curves):
            pts = curves[method]
            if not pts:
                continue
            by_seed = rows[method]
            if xkind == "bytes":
                if method == "central":
                    continue
                cum = cumulative_bytes(by_seed)
                xs = [cum[r] for r, _ in pts if r > 0]
                ys = [v for r, v in pts if r > 0]
                ax.set_xscale("log")
            elif xkind == "wall":
                seed = sorted(by_seed)[0]
                xs = [by_seed[seed][r]["wall_s"] for r, _ in pts]
                ys = [v for _, v in pts]
            else:
                xs = [r for r, _ in pts]
                ys = [v for _, v in pts]
            ax.plot(xs, ys, marker=".", label=method, color=colour[method])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, name), dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted(rows):
        pts = mean_curve(rows[method], "rouge_l")
        if pts:
            ax.plot([r for r, _ in pts], [v for _, v in pts], marker="o", label=method, color=colour[method])
    ax.set_xlabel("round")
    ax.set_ylabel("Rouge-L (greedy, held-out questions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "rouge-vs-rounds.png"), dpi=110)
    plt.close(fig)

    print("| method | seeds | final held-out loss | Rouge-L | exact match | uploaded bytes per client | wall s |")
    print("|---|---|---|---|---|---|---|")
    for method in sorted(rows):
        by_seed = rows[method]
        last = max(set.intersection(*(set(s.keys()) for s in by_seed.values())))
        def stat(key):
            vals = [s[last].get(key) for s in by_seed.values() if s[last].get(key) is not None]
            if not vals:
                return "—"
            m = statistics.mean(vals)
            return ("%.4f ± %.4f" % (m, statistics.stdev(vals))) if len(vals) > 1 else "%.4f" % m
        up = "—" if method == "central" else "{:,.0f}".format(cumulative_bytes(by_seed)[last])
        print("| %s | %d | %s | %s | %s | %s | %.0f |" % (method, len(by_seed), stat("eval_loss"), stat("rouge_l"),
                                                          stat("exact_match"), up,
                                                          statistics.mean(s[last]["wall_s"] for s in by_seed.values())))


if __name__ == "__main__":
    main()
