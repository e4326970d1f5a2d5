#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the VT-x bench (Bochs, corei7_skylake_x) on an initramfs and collect its serial log.
#
#   scripts/bench.sh NAME INITRAMFS [--megs N] [--budget SECONDS]
#   scripts/bench.sh --print-config [--megs N]
#
# The serial output of every boot is appended to build/logs/NAME.serial.log. A bench that
# stops printing (no heartbeat for HPS_HANG_SECONDS) is killed; the test it was running is
# retried once on a fresh boot; a second hang records it as "not ok ... # HANG" and the bench
# boots again from the next test, so a hang never loses the results of the other tests. Exit
# status 0 means the plan ran to its end marker; judging the TAP is scripts/tap-judge.py's job.
#
# --print-config prints what the guest sees of the bench (the Bochs configuration, the boot
# loader's, the debugger script) with the build paths left out: make test keys its cached
# results on it.
source "$(dirname "$0")/lib.sh"

# Bochs counts instructions: ips=200M means the guest TSC must be told it runs at 200 MHz.
bochs_config() {	# bochs_config WORK MEGS
	cat <<EOT
display_library: term
megs: $2
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model=corei7_skylake_x, count=1, ips=200000000, reset_on_triple_fault=0
clock: sync=none, time0=local
pci: enabled=1, chipset=i440fx
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path=$1/boot.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$1/serial.out
log: $1/bochs.log
panic: action=fatal
error: action=report, cpu0=ignore
info: action=ignore
debug: action=ignore
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=0
EOT
}

isolinux_config() {	# isolinux_config START
	cat <<EOT
default hps
prompt 0
timeout 0
label hps
  kernel /bzImage
  append initrd=/initrd.gz console=ttyS0,115200 panic=-1 tsc_early_khz=200000 numa=fake=2 hps.start=$1
EOT
}

debugger_script() { printf 'c\nquit\n'; }

iso_args=(-as mkisofs -quiet -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot
	-boot-load-size 4 -boot-info-table)

megs=2048
if [ "${1:-}" = --print-config ]; then
	[ "${2:-}" != --megs ] || megs=$3
	bochs_config WORK "$megs"
	isolinux_config START
	debugger_script
	echo "xorriso ${iso_args[*]}"
	exit 0
fi

name=$1 initramfs=$2
shift 2
budget=3000				# wall seconds for all boots together
hang_seconds=${HPS_HANG_SECONDS:-240}	# a 1 GiB VM teardown can be silent for minutes
while [ $# -gt 0 ]; do
	case "$1" in
	--megs) megs=$2; shift 2 ;;
	--budget) budget=$2; shift 2 ;;
	*) hps_die "bench.sh: unknown option $1" ;;
	esac
done

bzimage=$HPS_KOBJ/arch/x86/boot/bzImage
[ -f "$bzimage" ] || hps_die "no kernel at $bzimage; run scripts/kernel.sh"
[ -f "$initramfs" ] || hps_die "no initramfs at $initramfs"
command -v bochs >/dev/null || hps_die "bochs is not installed; run scripts/deps.sh"

work=$HPS_BUILD/bench/$name
log=$HPS_LOGS/$name.serial.log
rm -rf "$work"
mkdir -p "$work/iso/isolinux"
: >"$log"

isolinux_bin=/usr/lib/ISOLINUX/isolinux.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
cp "$isolinux_bin" "$ldlinux" "$work/iso/isolinux/"
cp "$bzimage" "$work/iso/bzImage"
cp "$initramfs" "$work/iso/initrd.gz"
# Plan entries and the guest seconds each is expected to take, for the progress lines.
gzip -dc "$initramfs" | cpio -i --quiet --to-stdout 'hps/plan.secs' >"$work/plan.secs" 2>/dev/null ||
	true
plan_total=$(grep -c . "$work/plan.secs" || true)
[ -n "$plan_total" ] && [ "$plan_total" != 0 ] || { plan_total="?"; echo 0 >"$work/plan.secs"; }

bochs_config "$work" "$megs" >"$work/bochsrc"
debugger_script >"$work/debugger.rc"

make_iso() {
	isolinux_config "$1" >"$work/iso/isolinux/isolinux.cfg"
	xorriso "${iso_args[@]}" -o "$work/boot.iso" "$work/iso" 2>"$work/xorriso.log" ||
		hps_die "xorriso failed; see $work/xorriso.log"
}

# Live progress on stderr: each plan entry's result as the serial log shows it, with its guest
# seconds, the wall time since the bench started and an estimate of what is left (the expected
# guest seconds of the entries not run yet, at the wall-per-guest-second pace so far). Only
# complete lines are read; $1 is how many were shown already, the new count is printed.
show_progress() {
	local seen=$1 lines
	lines=$(wc -l <"$work/serial.out")
	if [ "$lines" -gt "$seen" ]; then
		head -n "$lines" "$work/serial.out" |
			awk -v t0="$start_time" -v now="$(date +%s)" -v total="$plan_total" \
			    -v bench="$name" -v seen="$seen" -v prior="$guest_before" '
			NR == FNR { expect[FNR] = $1; next }
			/^# HPS-TIME / { secs[$3] = $NF; guest += $NF }
			FNR > seen && /^(not )?ok [0-9]+ / {
				n = ($1 == "not") ? $3 : $2
				name = ($1 == "not") ? $4 : $3
				verdict = ($1 == "not") ? "FAIL" : (/# SKIP/ ? "SKIP" : "PASS")
				el = now - t0
				left = 0
				for (i = n + 1; i in expect; i++)
					left += expect[i]
				# Until 20 guest s have run, boot time would skew the rate: take 3 wall s
				# per guest s, the usual pace of the bench.
				rate = (guest + prior >= 20) ? el / (guest + prior) : 3
				eta = sprintf("; about %d min left", left * rate / 60 + 0.5)
				printf "  [%s %s/%s] %s %s (%s guest s; bench %d min %02d s%s)\n", bench, n,
				       total, verdict, name, (n in secs) ? secs[n] : "?", el / 60,
				       el % 60, eta > "/dev/stderr"
			}' "$work/plan.secs" -
	fi
	echo "$lines"
}

# One boot. Prints why it ended: end | hang | panic | reboot | exit | budget.
boot_once() {
	local deadline=$1 pid size last_size=-1 last_change now screen drain="" shown=0 alive
	: >"$work/serial.out"
	TERM=xterm setsid script -qfec "bochs -q -f $work/bochsrc -rc $work/debugger.rc" /dev/null \
		</dev/null >"$work/term.out" 2>&1 &
	pid=$!
	last_change=$(date +%s)
	while :; do
		sleep 2
		now=$(date +%s)
		[ -n "${HPS_QUIET:-}" ] || shown=$(show_progress "$shown")
		# With the debugger built in, the term display draws the guest screen on a pty of its
		# own and blocks when nobody reads it: the whole bench then freezes after some minutes.
		if [ -z "$drain" ]; then
			screen=$(grep -ao 'connected to screen "/dev/pts/[0-9]*"' "$work/term.out" |
				grep -o '/dev/pts/[0-9]*')
			if [ -n "$screen" ]; then
				cat "$screen" >/dev/null 2>&1 &
				drain=$!
			fi
		fi
		# Bochs buffers the serial file: the end marker can reach it only as Bochs exits, so
		# look for it after finding out whether Bochs is still running.
		alive=1
		kill -0 "$pid" 2>/dev/null || alive=""
		if grep -q '^# HPS-END' "$work/serial.out"; then
			sleep 3	# let poweroff finish; Bochs exits by itself
			[ -n "${HPS_QUIET:-}" ] || shown=$(show_progress "$shown")	# lines flushed at exit
			stop_bochs "$pid" "$drain"; echo end; return
		fi
		if grep -q 'Kernel panic - not syncing' "$work/serial.out"; then
			sleep 2; stop_bochs "$pid" "$drain"; echo panic; return
		fi
		if [ "$(grep -c '^# HPS-BOOT' "$work/serial.out")" -gt 1 ]; then
			stop_bochs "$pid" "$drain"; echo reboot; return
		fi
		if [ -z "$alive" ]; then
			stop_bochs "$pid" "$drain"; echo exit; return
		fi
		size=$(stat -c %s "$work/serial.out")
		if [ "$size" != "$last_size" ]; then
			last_size=$size last_change=$now
		elif [ $((now - last_change)) -ge "$hang_seconds" ]; then
			stop_bochs "$pid" "$drain"; echo hang; return
		fi
		if [ "$now" -ge "$deadline" ]; then
			stop_bochs "$pid" "$drain"; echo budget; return
		fi
	done
}

# Bochs ignores SIGTERM; kill the whole session, then the screen drain ($2, if any).
stop_bochs() {
	kill -KILL -- "-$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	if [ -n "${2:-}" ]; then
		kill "$2" 2>/dev/null || true
		wait "$2" 2>/dev/null || true
	fi
}

start_time=$(date +%s)
guest_before=0
deadline=$((start_time + budget))
start=1
boot=0
status=1
retried=""
while :; do
	boot=$((boot + 1))
	make_iso "$start"
	hps_say "bench '$name': boot $boot (Bochs corei7_skylake_x, ${megs} MB), from test $start; serial log $log"
	t0=$(date +%s)
	why=$(boot_once "$deadline")
	cat "$work/serial.out" >>"$log"
	guest_before=$(grep -a '^# HPS-TIME ' "$log" | awk '{ s += $NF } END { printf "%.2f", s }')
	hps_say "bench '$name': boot $boot ended ($why) after $(( $(date +%s) - t0 ))s"
	[ "$why" = end ] && { status=0; break; }
	# Which test was running when it stopped?
	current=$(grep -a '^# HPS-BEGIN ' "$work/serial.out" | tail -1 | cut -d' ' -f3-4)
	num=${current%% *} tname=${current#* }
	if [ -z "$current" ] ||
	   grep -aqE "^(not )?ok $num " "$work/serial.out"; then
		hps_warn "bench '$name' stopped ($why) outside any test; giving up"
		echo "Bail out! bench stopped ($why) outside a test" >>"$log"
		break
	fi
	[ "$why" = budget ] && {
		echo "not ok $num $tname # HANG: bench stopped ($why)" >>"$log"
		echo "Bail out! wall-time budget of ${budget}s used up" >>"$log"
		break
	}
	# Bochs freezes now and then in a test that passes on a fresh boot (test-bench.md: IF=0
	# spins). A test gets one retry; a second hang is its failure. The judge reports retries.
	if [[ " $retried " == *" $num "* ]]; then
		echo "not ok $num $tname # HANG: bench stopped ($why) twice, serial silent or reset" >>"$log"
		start=$((num + 1))
	else
		echo "# HPS-RETRY $num $tname: bench stopped ($why); retrying once on a fresh boot" >>"$log"
		retried="$retried $num"
		start=$num
	fi
	[ "$boot" -ge 8 ] && { echo "Bail out! too many hangs" >>"$log"; break; }
done
hps_say "bench '$name' took $(( $(date +%s) - start_time ))s in $boot boot(s)"
exit $status
