# SPDX-License-Identifier: GPL-2.0
# Sourced by the bench's shell tests: check NAME COMMAND runs COMMAND and prints one TAP line;
# a test ends with "exit $failed".
n=0
failed=0
check() {
	n=$((n + 1))
	if eval "$2"; then echo "ok $n $1"; else echo "not ok $n $1"; failed=1; fi
}
