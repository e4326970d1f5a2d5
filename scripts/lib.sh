# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the HyperPS build and bench scripts. Source it; do not run it.

set -euo pipefail

HPS_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HPS_BUILD=${HPS_BUILD:-$HPS_TOP/build}
HPS_KSRC=$HPS_BUILD/linux		# unpacked Debian source with patches/ applied
HPS_KOBJ=$HPS_BUILD/kobj		# kbuild output (O=), kept between runs
HPS_TOOLS=$HPS_BUILD/tools		# pinned host tools (bindgen)
HPS_LOGS=$HPS_BUILD/logs
export PATH="$HPS_TOOLS/bin:$PATH"

mkdir -p "$HPS_BUILD" "$HPS_LOGS"

hps_say()  { printf '==> %s\n' "$*" >&2; }
hps_warn() { printf 'WARNING: %s\n' "$*" >&2; }
hps_die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# hps_step NAME LOG CMD...: run a long step with its output in LOG (or - for the terminal),
# saying what it does and how long it took. On failure the end of LOG is shown.
hps_step() {
	local name=$1 log=$2 start rc=0
	shift 2
	start=$(date +%s)
	if [ "$log" = - ]; then
		hps_say "$name ..."
		"$@" || rc=$?
	else
		hps_say "$name (log: $log) ..."
		"$@" >"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		[ "$log" = - ] || tail -n 25 "$log" | sed 's/^/  | /' >&2
		printf 'ERROR: %s failed (exit %d) after %ds\n' "$name" "$rc" $(( $(date +%s) - start )) >&2
		return "$rc"
	fi
	hps_say "$name: done in $(( $(date +%s) - start ))s"
}

hps_jobs() { nproc 2>/dev/null || echo 2; }
