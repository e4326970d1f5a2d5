#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge a bench serial log: its TAP results and the kernel's own messages.

Usage: tap-judge.py SERIAL_LOG [--results FILE]

A run fails on any `not ok`, a result missing from the plan, no plan at all, `Bail out!`, or an
oops, BUG, WARN or panic anywhere in the kernel log. With --results, one line per check is
written: `pass|fail|skip<TAB>name<TAB>detail`.
"""
import argparse
import os
import re
import sys

RESULT = re.compile(r"^(not ok|ok) (\d+) (\S+)(?:\s*#\s*(.*))?$")
PLAN = re.compile(r"^1\.\.(\d+)$")
TIME = re.compile(r"^# HPS-TIME (\d+) (\S+) ([\d.]+)$")
RETRY = re.compile(r"^# HPS-RETRY (\d+) ")
KERNEL_PROBLEMS = re.compile(
    r"(------------\[ cut here \]------------|WARNING: CPU: \d+|\bBUG: |kernel BUG at|"
    r"Oops: |Kernel panic - not syncing|general protection fault|UBSAN: |"
    r"rust_kernel: panicked|Call Trace:|RIP: 00)"
)
CUT_HERE = "------------[ cut here ]------------"
END_TRACE = re.compile(r"---\[ end trace [0-9a-f]+ \]---")
WARNING_LINE = re.compile(r"WARNING: CPU: \d+ PID: (\d+) at (\S+)")
KNOWN_WARNINGS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "selftests", "bench", "known-kernel-warnings"
)


def load_known_warnings():
    known = []
    with open(KNOWN_WARNINGS) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                location, _, reason = line.rstrip("\n").partition("\t")
                known.append((location, reason))
    return known


def known_warning(block, known):
    """A WARN block is a known bench artifact only if it is from PID 0 at a listed location."""
    for line in block:
        m = WARNING_LINE.search(line)
        if m:
            return m.group(1) == "0" and any(m.group(2).startswith(loc) for loc, _ in known)
    return False


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
    retries = {}  # test number -> times the bench hung in it and was restarted
    known = load_known_warnings()
    known_seen = 0
    block = None  # lines of the WARN block being read, or None
    for line in lines:
        if CUT_HERE in line:
            block = [line]
            continue
        if block is not None:
            block.append(line)
            if END_TRACE.search(line):
                if known_warning(block, known):
                    known_seen += 1
                else:
                    problems.extend(b.strip() for b in block if KERNEL_PROBLEMS.search(b))
                block = None
            continue
        m = PLAN.match(line)
        if m and plan is None:
            plan = int(m.group(1))
        m = RESULT.match(line)
        if m:
            results[int(m.group(2))] = (m.group(1), m.group(3), m.group(4) or "")
        m = TIME.match(line)
        if m:
            times[int(m.group(1))] = float(m.group(3))
        m = RETRY.match(line)
        if m:
            retries[int(m.group(1))] = retries.get(int(m.group(1)), 0) + 1
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
        if n in retries:
            t += f" (bench hung {retries[n]}x in it; result from the retry)"
        if verdict == "ok" and directive.upper().startswith("SKIP"):
            checks.append(("skip", name, directive + t))
        elif verdict == "ok":
            checks.append(("pass", name, t.strip()))
        else:
            checks.append(("fail", name, directive + t))
    if block is not None:
        problems.extend(b.strip() for b in block if KERNEL_PROBLEMS.search(b))
        problems.append("(a WARN block never ended)")
    for b in bail:
        checks.append(("fail", "bail-out", b))
    if problems:
        shown = "; ".join(problems[:5])
        checks.append(("fail", "kernel-log-clean", f"{len(problems)} problem line(s): {shown}"))
    else:
        note = f" ({known_seen} known Bochs boot warning(s) ignored)" if known_seen else ""
        checks.append(("pass", "kernel-log-clean", "no oops, BUG, WARN or panic" + note))

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
