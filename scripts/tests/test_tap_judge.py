# SPDX-License-Identifier: GPL-2.0
"""Tests for scripts/tap-judge.py: every way a bench run must fail, and the one way it passes."""
import os
import subprocess
import sys
import tempfile
import unittest

JUDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tap-judge.py")

CLEAN = """[    0.000000] Linux version 6.12.117
TAP version 13
1..2
# HPS-BEGIN 1 first
ok 1 first
# HPS-TIME 2 second 0.50
ok 2 second # SKIP no XSAVE
# HPS-END uptime=3.0
"""


def warn_block(pid, location):
    return (
        "[    0.100000] ------------[ cut here ]------------\n"
        f"[    0.100000] WARNING: CPU: 0 PID: {pid} at {location}:57 f+0x1/0x2\n"
        "[    0.100000] Call Trace:\n"
        "[    0.100000] ---[ end trace 0000000000000000 ]---\n"
    )


class TapJudgeTest(unittest.TestCase):
    def judge(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(text)
        try:
            res = subprocess.run(
                [sys.executable, JUDGE, f.name, "--results", f.name + ".res"],
                capture_output=True, text=True, check=False,
            )
            with open(f.name + ".res") as r:
                results = [line.split("\t")[:2] for line in r]
            return res.returncode, results
        finally:
            os.unlink(f.name)
            if os.path.exists(f.name + ".res"):
                os.unlink(f.name + ".res")

    def test_clean_run_passes(self):
        rc, results = self.judge(CLEAN)
        self.assertEqual(rc, 0)
        self.assertIn(["pass", "first"], results)
        self.assertIn(["skip", "second"], results)
        self.assertIn(["pass", "kernel-log-clean"], results)

    def test_not_ok_fails(self):
        rc, results = self.judge(CLEAN.replace("ok 1 first", "not ok 1 first # exit status 1"))
        self.assertEqual(rc, 1)
        self.assertIn(["fail", "first"], results)

    def test_missing_result_fails(self):
        rc, results = self.judge(CLEAN.replace("ok 1 first\n", ""))
        self.assertEqual(rc, 1)
        self.assertIn(["fail", "test-1"], results)

    def test_missing_plan_fails(self):
        rc, results = self.judge(CLEAN.replace("1..2\n", ""))
        self.assertEqual(rc, 1)
        self.assertIn(["fail", "tap-plan"], results)

    def test_bail_out_fails(self):
        rc, _ = self.judge(CLEAN + "Bail out! too many hangs\n")
        self.assertEqual(rc, 1)

    def test_unknown_warning_fails(self):
        rc, results = self.judge(warn_block(0, "arch/x86/kvm/vmx/vmx.c") + CLEAN)
        self.assertEqual(rc, 1)
        self.assertIn(["fail", "kernel-log-clean"], results)

    def test_known_boot_warning_is_ignored(self):
        rc, _ = self.judge(warn_block(0, "arch/x86/kernel/cpu/topology_common.c") + CLEAN)
        self.assertEqual(rc, 0)

    def test_known_location_from_a_task_fails(self):
        rc, _ = self.judge(warn_block(123, "arch/x86/kernel/cpu/topology_common.c") + CLEAN)
        self.assertEqual(rc, 1)

    def test_oops_and_bug_fail(self):
        for line in ("BUG: kernel NULL pointer dereference", "Oops: 0002 [#1] SMP",
                     "Kernel panic - not syncing: Fatal exception", "kernel BUG at mm/ksm.c:1"):
            rc, _ = self.judge(CLEAN + f"[    5.000000] {line}\n")
            self.assertEqual(rc, 1, line)

    def test_unterminated_warn_block_fails(self):
        rc, _ = self.judge(CLEAN + "[ 5.0] ------------[ cut here ]------------\n")
        self.assertEqual(rc, 1)

    def test_retried_hang_uses_the_retry_and_says_so(self):
        hung = CLEAN.replace("ok 1 first\n", "# HPS-RETRY 1 first: bench stopped (hang); retrying\n")
        rc, results = self.judge(hung + "TAP version 13\n1..2\nok 1 first\n")
        self.assertEqual(rc, 0)
        self.assertIn(["pass", "first"], results)
        res_detail = subprocess.run([sys.executable, JUDGE, "/dev/stdin"], input=hung + "ok 1 first\n",
                                    capture_output=True, text=True, check=False).stdout
        self.assertIn("bench hung 1x in it", res_detail)

    def test_second_hang_fails(self):
        hung = CLEAN.replace("ok 1 first\n", "# HPS-RETRY 1 first: bench stopped (hang); retrying\n")
        rc, results = self.judge(hung + "not ok 1 first # HANG: bench stopped (hang) twice\n")
        self.assertEqual(rc, 1)
        self.assertIn(["fail", "first"], results)


if __name__ == "__main__":
    unittest.main()
