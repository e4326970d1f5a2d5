#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge a bench serial log: its TAP results and the kernel's own messages.

Usage: tap-judge.py SERIAL_LOG [--results FILE]

A run fails on any `not ok`, a result missing from the plan, no plan at all, `Bail out!`, or an
oops, BUG, WARN or panic anywhere in the kernel log. With --results, one line per check is
written: `pass|fail|skip<TAB>name<TAB>detail`.
"""
import argparse
import re
import sys

RESULT = re.compile(r"^(not ok|ok) (\d+) (\S+)(?:\s*#\s*(.*))?$")
PLAN = re.compile(r"^1\.\.(\d+)$")
TIME = re.compile(r"^# HPS-TIME (\d+) (\S+) ([\d.]+)$")
KERNEL_PROBLEMS = re.compile(
    r"(------------\[ cut here \]------------|WARNING: CPU: \d+|\bBUG: |kernel BUG at|"
    r"Oops: |Kernel panic - not syncing|general protection fault|UBSAN: |"
    r"rust_kernel: panicked|Call Trace:|RIP: 00)"
)
# The kernel prefixes printk lines with a [ time ] stamp; TAP from /init has none.
PRINTK = re.compile(r"^\[\s*\d+\.\d+\]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--results")
    args = ap.parse_args()

    with open(args.log, "rb") as f:
        lines = f.read().decode("utf-8", "replace").replace("\r", "").split("\n")

    plan = None
    results = {}
    times = {}
    problems = []
    bail = []
    for line in lines:
        m = PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
        m = RESULT.match(line)
        if m:
            results[int(m.group(2))] = (m.group(1), m.group(3), m.group(4) or "")
        m = TIME.match(line)
        if m:
            times[int(m.group(1))] = float(m.group(3))
        if line.startswith("Bail out!"):
            bail.append(line)
        if KERNEL_PROBLEMS.search(line):
            problems.append(line.strip())

    checks = []  # (status, name, detail)
    if plan is None:
        checks.append(("fail", "tap-plan", "no TAP plan in the serial log"))
        plan = 0
    for n in range(1, plan + 1):
        if n not in results:
            checks.append(("fail", f"test-{n}", "no result (missing from the log)"))
            continue
        verdict, name, directive = results[n]
        t = f" [{times[n]:.2f}s guest]" if n in times else ""
        if verdict == "ok" and directive.upper().startswith("SKIP"):
            checks.append(("skip", name, directive + t))
        elif verdict == "ok":
            checks.append(("pass", name, t.strip()))
        else:
            checks.append(("fail", name, directive + t))
    for b in bail:
        checks.append(("fail", "bail-out", b))
    if problems:
        shown = "; ".join(problems[:5])
        checks.append(("fail", "kernel-log-clean", f"{len(problems)} problem line(s): {shown}"))
    else:
        checks.append(("pass", "kernel-log-clean", "no oops, BUG, WARN or panic"))

    for status, name, detail in checks:
        print(f"  {status.upper():4} {name} {detail}".rstrip())
    if args.results:
        with open(args.results, "w") as f:
            for status, name, detail in checks:
                f.write(f"{status}\t{name}\t{detail}\n")
    failed = sum(1 for c in checks if c[0] == "fail")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
