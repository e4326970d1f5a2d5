#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the bench log of `make bench` into a table, CSV, JSON and a PNG plot.

    perf-report.py SERIAL_LOG OUT_DIR [CRITERION_DIR]

SERIAL_LOG holds the HPS-BENCH lines of hyperps_bench, run once labelled "without" and once
"with" (hyperps.ko registered) in the same boot. CRITERION_DIR is the verifier's
target/criterion directory after `cargo bench`. Writes OUT_DIR/results.csv, results.json and
overhead.png (the PNG only if matplotlib is importable), and prints the table. Exit status 1
if a benchmark is missing from either run.
"""
import csv
import glob
import json
import os
import re
import sys

ORDER = ["empty", "vmcall", "cpuid", "pio", "cold", "hot", "set_pt", "cpu", "apic_mode", "page_4k",
         "page_2m"]
# Targets of the performance issue, as the largest acceptable ratio.
TARGETS = {"vmcall": 1.05, "cpuid": 1.05, "pio": 1.05, "cold": 1.3, "cpu": 1.00}
LINE = re.compile(r"HPS-BENCH (.*)$")


def parse_log(path):
    runs = {}
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.search(raw.rstrip("\r\n"))
            if not m:
                continue
            fields = dict(kv.split("=", 1) for kv in m.group(1).split())
            runs.setdefault(fields["label"], {})[fields["name"]] = fields
    return runs


def verifier_costs(criterion_dir):
    costs = []
    if not criterion_dir:
        return costs
    for est in sorted(glob.glob(os.path.join(criterion_dir, "*", "*", "new", "estimates.json"))):
        with open(est) as f:
            mean = json.load(f)["mean"]["point_estimate"]
        with open(est.replace("estimates.json", "benchmark.json")) as f:
            meta = json.load(f)
        costs.append({"group": meta["group_id"], "check": meta["function_id"],
                      "ns_per_call": round(mean, 1)})
    return costs


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    log, out = sys.argv[1], sys.argv[2]
    crit = sys.argv[3] if len(sys.argv) > 3 else None
    runs = parse_log(log)
    without, with_ = runs.get("without", {}), runs.get("with", {})
    missing = [n for n in ORDER if n not in without or n not in with_]
    if missing:
        print(f"ERROR: benchmarks missing from the log {log}: {' '.join(missing)}",
              file=sys.stderr)
        return 1

    rows = []
    for name in ORDER:
        a, b = without[name], with_[name]
        ca, cb = float(a["cycles_per_op"]), float(b["cycles_per_op"])
        ratio = cb / ca if ca > 0 else float("nan")
        target = TARGETS.get(name)
        rows.append({
            "benchmark": name,
            "ops": int(a["ops"]),
            "cycles_per_op_without": ca,
            "cycles_per_op_with": cb,
            "ratio": round(ratio, 3),
            "target_ratio": target,
            "within_target": None if target is None else ratio <= target,
            "exits_per_op": float(b["exits_per_op"]),
            "verifier_calls_per_op": float(b["verifier_calls_per_op"]),
            # Which hooks made them: counter class -> calls per operation (non-zero only).
            "verifier_calls_by_class": " ".join(
                kv for kv in b.get("by_class", "").split(",")
                if kv and float(kv.split(":")[1]) > 0),
            # L1 has no HyperPS Space: the verifier is a direct call, no gate is crossed.
            "gate_crossings_per_op": 0.0,
        })

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    costs = verifier_costs(crit)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"unit": "guest TSC cycles per operation (Bochs: instructions)",
                   "security_level": "L1", "benchmarks": rows,
                   "verifier_ns_per_check": costs}, f, indent=2)

    print(f"{'benchmark':<10}{'ops':>9}{'without':>12}{'with':>12}{'ratio':>8}{'target':>8}"
          f"{'exits/op':>10}{'verifier/op':>13}{'gates/op':>10}  verifier calls by class")
    for r in rows:
        t = "" if r["target_ratio"] is None else (
            f"{r['target_ratio']:.2f}" + ("" if r["within_target"] else "!"))
        print(f"{r['benchmark']:<10}{r['ops']:>9}{r['cycles_per_op_without']:>12.1f}"
              f"{r['cycles_per_op_with']:>12.1f}{r['ratio']:>8.3f}{t:>8}"
              f"{r['exits_per_op']:>10.3f}{r['verifier_calls_per_op']:>13.2f}"
              f"{r['gate_crossings_per_op']:>10.1f}  {r['verifier_calls_by_class']}")
    print("(cycles: guest TSC per operation, the empty loop taken off; '!' marks a missed "
          "target; empty is the control itself)")
    if costs:
        print("\nverifier core, userspace (cargo bench), ns per check:")
        for c in costs:
            print(f"  {c['group'] + '/' + c['check']:<52}{c['ns_per_call']:>10.1f}")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no PNG written", file=sys.stderr)
        return 0
    shown = [r for r in rows if r["benchmark"] != "empty"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = range(len(shown))
    ax.bar(xs, [r["ratio"] for r in shown], color=[
        "tab:red" if r["within_target"] is False else "tab:blue" for r in shown])
    for x, r in zip(xs, shown):
        ax.text(x, r["ratio"], f"{r['ratio']:.2f}", ha="center", va="bottom", fontsize=9)
        if r["target_ratio"]:
            ax.plot([x - 0.4, x + 0.4], [r["target_ratio"]] * 2, color="black", lw=1)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(list(xs), [r["benchmark"] for r in shown])
    ax.set_ylabel("cycles with / without hyperps.ko")
    ax.set_title("HyperPS L1 overhead on the Bochs VT-x bench (black: target)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "overhead.png"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
