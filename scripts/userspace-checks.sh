#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Userspace Rust tests and the style gates. Appends pass/fail/skip lines to RESULTS.
#   scripts/userspace-checks.sh RESULTS
source "$(dirname "$0")/lib.sh"
set +e
results=$1

record() {
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"
	printf '  %-4s %s %s\n' "$(echo "$1" | tr a-z A-Z)" "$2" "$3"
}
gate() {	# gate NAME CMD...
	local name=$1 log=$HPS_LOGS/gate-${1//\//_}.log
	shift
	if "$@" >"$log" 2>&1; then
		record pass "$name" ""
	else
		record fail "$name" "(log $log)"
		tail -n 20 "$log" | sed 's/^/    | /'
	fi
}

checkpatch=$HPS_KSRC/scripts/checkpatch.pl
cp_flags=(--strict --no-tree --quiet --show-types --ignore SPDX_LICENSE_TAG)

# Every cargo crate under rust/: its tests (each case counts), rustfmt and clippy.
for manifest in "$HPS_TOP"/rust/*/Cargo.toml; do
	[ -f "$manifest" ] || continue
	dir=$(dirname "$manifest") name=$(basename "$(dirname "$manifest")")
	log=$HPS_LOGS/cargo-test-$name.log
	(cd "$dir" && cargo test --quiet --locked) >"$log" 2>&1
	rc=$?
	passed=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
	failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
	for _ in $(seq 1 "$passed"); do printf 'pass\tcargo-test:%s\t\n' "$name" >>"$results"; done
	for _ in $(seq 1 "$failed"); do printf 'fail\tcargo-test:%s\t\n' "$name" >>"$results"; done
	if [ $rc -ne 0 ] && [ "$failed" -eq 0 ]; then
		record fail "cargo-test:$name" "(did not build or run; log $log)"
		tail -n 20 "$log" | sed 's/^/    | /'
	else
		echo "  cargo test $name: $passed passed, $failed failed (log $log)"
	fi
	gate "rustfmt:$name" sh -c "cd '$dir' && cargo fmt --check"
	[ -f "$dir/fuzz/Cargo.toml" ] && gate "rustfmt:$name-fuzz" sh -c "cd '$dir/fuzz' && cargo fmt --check"
	gate "clippy:$name" sh -c "cd '$dir' && cargo clippy --quiet --locked --all-targets -- -D warnings"
	[ -x "$dir/check-kernel-build.sh" ] && gate "kernel-flags-build:$name" "$dir/check-kernel-build.sh"
done

gate "rustfmt:hyperps.ko" "$HPS_TOP/scripts/module.sh" fmt

# The backend's exhaustive explorer to depth 4 (cargo test above goes to 3), and the same
# explorer against the old release-on-unmap rule, which it must catch: there its two
# memory-isolation tests expect a counterexample, and fail if none is found.
verifier=$HPS_TOP/rust/verifier
gate "explore:depth-4" sh -c "cd '$verifier' &&
	HYPERPS_EXPLORE_DEPTH=4 cargo test --release --quiet --locked --test explore"
gate "explore:catches-release-on-unmap" sh -c "cd '$verifier' &&
	HYPERPS_EXPLORE_DEPTH=4 cargo test --release --quiet --locked --features release-on-unmap --test explore"

# The bench judge's own tests: each case counts.
log=$HPS_LOGS/judge-tests.log
python3 -m unittest -v "$HPS_TOP/scripts/tests/test_tap_judge.py" >"$log" 2>&1
grep -E ' \.\.\. ok$' "$log" | sed -E 's/^(test_[a-z_]+).*/pass\tjudge:\1\t/' >>"$results"
grep -E ' \.\.\. (FAIL|ERROR)$' "$log" | sed -E 's/^(test_[a-z_]+).*/fail\tjudge:\1\t/' >>"$results"
echo "  tap-judge tests: $(grep -cE ' \.\.\. ok$' "$log") passed," \
	"$(grep -cE ' \.\.\. (FAIL|ERROR)$' "$log") failed (log $log)"
grep -q '^OK' "$log" || record fail "judge-tests" "(log $log)"

for series in "$HPS_TOP/patches/series" "$HPS_TOP/patches/bench/series"; do
	dir=$(dirname "$series") label=checkpatch:${series#"$HPS_TOP"/}
	mapfile -t patches < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$series")
	if [ ${#patches[@]} -eq 0 ]; then
		record skip "$label" "# SKIP the series is empty"
	else
		gate "$label" perl "$checkpatch" "${cp_flags[@]}" "${patches[@]/#/$dir/}"
	fi
done
mapfile -t csources < <(cd "$HPS_TOP" && git ls-files '*.c' '*.h' 2>/dev/null ||
	find selftests hyperps -name '*.[ch]')
[ ${#csources[@]} -gt 0 ] &&
	gate "checkpatch:c-sources" sh -c "cd '$HPS_TOP' && perl '$checkpatch' ${cp_flags[*]} -f ${csources[*]}"
exit 0
