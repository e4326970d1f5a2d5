#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Prepare, configure and build the patched bench kernel, incrementally.
#
#   scripts/kernel.sh prepare   unpack Debian's linux-source-6.12 and apply patches/ in series order
#   scripts/kernel.sh config    tinyconfig + scripts/bench.config, checked
#   scripts/kernel.sh build     bzImage, modules, UAPI headers
#   scripts/kernel.sh all       the three above
#
# A changed series is handled by reverting the patches that changed (from the copies saved when
# they were applied) and applying the new ones, so only the touched files rebuild.
source "$(dirname "$0")/lib.sh"

SOURCE_TARBALL=/usr/src/linux-source-6.12.tar.xz
APPLIED=$HPS_BUILD/linux.applied	# copies of the applied patches, in order, plus metadata
PATCH_DIR=${HPS_PATCH_DIR:-$HPS_TOP/patches}
FRAGMENT=$HPS_TOP/scripts/bench.config
# The image must not depend on when, where or by whom it was built: make test keys its cached
# without-HyperPS results on its hash, so that a fresh clone on the same machine reuses them.
# C already drops the source path from __FILE__; Rust's panic locations need the remap.
export KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970" KBUILD_BUILD_USER=hyperps \
	KBUILD_BUILD_HOST=bench KBUILD_BUILD_VERSION=1
KMAKE=(make -s -C "$HPS_KSRC" O="$HPS_KOBJ" -j"$(hps_jobs)"
	KRUSTFLAGS="--remap-path-prefix=$HPS_KSRC/= --remap-path-prefix=$HPS_KOBJ/=")
# The C compiles go through ccache, with its cache outside the clone, so that a fresh clone
# on a machine that built the same tree before compiles nothing again. The base directory
# makes the clone's own paths relative, so that two clones share their entries. The compiler
# then sees the sources as ../linux/...: the second prefix map strips that from __FILE__ as
# kbuild's own strips the absolute path, so the image stays the one a plain gcc build makes.
HPS_CCACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/hyperps/ccache
if command -v ccache >/dev/null; then
	export CCACHE_DIR=${CCACHE_DIR:-$HPS_CCACHE_DIR} CCACHE_BASEDIR=$HPS_TOP
	export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
	KMAKE+=(CC="ccache gcc"
		KCPPFLAGS="-fmacro-prefix-map=$(realpath -m --relative-to="$HPS_KOBJ" "$HPS_KSRC")/=")
fi

# "N of M C compiles from ccache", counted since the last call with --zero.
ccache_summary() {
	command -v ccache >/dev/null || { echo "ccache not installed"; return; }
	[ "${1:-}" = --zero ] && { ccache -z >/dev/null; return; }
	ccache --print-stats | awk '
		/^(direct|preprocessed)_cache_hit\t/ { hit += $2 }
		/^cache_miss\t/ { miss += $2 }
		END { printf "%d of %d C compiles from ccache (%s)", hit, hit + miss, ENVIRON["CCACHE_DIR"] }'
}

source_package_version() { dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown; }

# The HyperPS series, then the bench-only series (bench/series), as paths under PATCH_DIR.
series_patches() {
	local series=$PATCH_DIR/series bench=$PATCH_DIR/bench/series
	[ -f "$series" ] || hps_die "$series is missing"
	sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$series" | grep -v '^$' || true
	if [ -f "$bench" ]; then
		sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$bench" | grep -v '^$' | sed 's|^|bench/|' || true
	fi
}

unpack_source() {
	local tmp=$HPS_BUILD/linux.unpack
	[ -f "$SOURCE_TARBALL" ] || hps_die "$SOURCE_TARBALL not found; run scripts/deps.sh"
	rm -rf "$tmp" "$HPS_KSRC" "$APPLIED"
	mkdir -p "$tmp"
	hps_step "unpacking $SOURCE_TARBALL" - tar -xJf "$SOURCE_TARBALL" -C "$tmp" --strip-components=1
	mv "$tmp" "$HPS_KSRC"
	mkdir -p "$APPLIED"
	source_package_version >"$APPLIED/.package-version"
	: >"$APPLIED/.order"
}

# Apply one patch with no fuzz; on failure name the patch and the hunks, change nothing.
apply_patch() {
	local name=$1 file=$PATCH_DIR/$1 out
	if ! out=$(patch -d "$HPS_KSRC" -p1 -N -F0 --dry-run --no-backup-if-mismatch <"$file" 2>&1); then
		printf 'ERROR: patch %s does not apply to linux-source-6.12 %s (%s)\n' \
			"$name" "$(source_package_version)" "$SOURCE_TARBALL" >&2
		printf '%s\n' "$out" | sed 's/^/  /' >&2
		printf 'ERROR: stopped at %s; nothing of it was applied. Rebase it onto the packaged tree.\n' \
			"$name" >&2
		return 1
	fi
	patch -d "$HPS_KSRC" -p1 -N -F0 -s --no-backup-if-mismatch <"$file" ||
		hps_die "patch $name passed its dry run but failed to apply"
	mkdir -p "$(dirname "$APPLIED/$name")"
	cp "$file" "$APPLIED/$name"
	echo "$name" >>"$APPLIED/.order"
}

revert_patch() {
	local name=$1
	patch -d "$HPS_KSRC" -p1 -R -F0 -s --no-backup-if-mismatch <"$APPLIED/$name" || return 1
	rm -f "$APPLIED/$name"
	sed -i '$d' "$APPLIED/.order"
}

cmd_prepare() {
	local -a want have
	local i keep=0 name

	if [ ! -d "$HPS_KSRC" ] || [ ! -f "$APPLIED/.order" ] ||
	   [ "$(cat "$APPLIED/.package-version" 2>/dev/null)" != "$(source_package_version)" ]; then
		unpack_source
	fi
	mapfile -t want < <(series_patches)
	mapfile -t have <"$APPLIED/.order"

	for name in "${want[@]}"; do
		[ -f "$PATCH_DIR/$name" ] || hps_die "patches/series names $name, which does not exist"
	done
	# Longest common prefix of identical patches stays applied.
	while [ "$keep" -lt "${#have[@]}" ] && [ "$keep" -lt "${#want[@]}" ] &&
	      [ "${have[$keep]}" = "${want[$keep]}" ] &&
	      cmp -s "$APPLIED/${have[$keep]}" "$PATCH_DIR/${want[$keep]}"; do
		keep=$((keep + 1))
	done
	for ((i = ${#have[@]} - 1; i >= keep; i--)); do
		if ! revert_patch "${have[$i]}"; then
			hps_warn "could not revert ${have[$i]}; unpacking the source again"
			unpack_source
			keep=0
			break
		fi
	done
	for ((i = keep; i < ${#want[@]}; i++)); do
		apply_patch "${want[$i]}"
	done
	hps_say "kernel source: linux-source-6.12 $(source_package_version)," \
		"$(make -s -C "$HPS_KSRC" kernelversion), ${#want[@]} patches applied"
}

cmd_config() {
	local want_hash have_hash line opt val missing=()
	mkdir -p "$HPS_KOBJ"
	want_hash=$(cat "$FRAGMENT" "$APPLIED/.order" | sha256sum | cut -d' ' -f1)
	have_hash=$(cat "$HPS_KOBJ/.hyperps-config-hash" 2>/dev/null || true)
	if [ -f "$HPS_KOBJ/.config" ] && [ "$want_hash" = "$have_hash" ]; then
		return 0
	fi
	"${KMAKE[@]}" tinyconfig >/dev/null
	"$HPS_KSRC/scripts/kconfig/merge_config.sh" -m -O "$HPS_KOBJ" "$HPS_KOBJ/.config" "$FRAGMENT" \
		>"$HPS_LOGS/merge_config.log" 2>&1 || hps_die "merge_config failed; see $HPS_LOGS/merge_config.log"
	"${KMAKE[@]}" olddefconfig >/dev/null
	# olddefconfig silently drops what it cannot satisfy (RUST in particular): check each line.
	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -qx "# $opt is not set" "$HPS_KOBJ/.config" || missing+=("$line")
		else
			grep -qx "$opt=$val" "$HPS_KOBJ/.config" || missing+=("$line")
		fi
	done <"$FRAGMENT"
	if [ ${#missing[@]} -gt 0 ]; then
		rm -f "$HPS_KOBJ/.hyperps-config-hash"
		hps_die "olddefconfig dropped: ${missing[*]} (a dependency is missing; for RUST run 'make -C $HPS_KSRC O=$HPS_KOBJ rustavailable')"
	fi
	echo "$want_hash" >"$HPS_KOBJ/.hyperps-config-hash"
}

cmd_build() {
	"${KMAKE[@]}" rustavailable >"$HPS_LOGS/rustavailable.log" 2>&1 ||
		hps_die "the Rust toolchain is not usable for this kernel: $(tail -3 "$HPS_LOGS/rustavailable.log")"
	ccache_summary --zero
	hps_step "building the kernel: bzImage and modules (cold about 7 min, warm seconds)" \
		"$HPS_LOGS/kernel-build.log" "${KMAKE[@]}" bzImage modules ||
		hps_die "kernel build failed; see $HPS_LOGS/kernel-build.log"
	echo "  $(ccache_summary)"
	"${KMAKE[@]}" headers >>"$HPS_LOGS/kernel-build.log" 2>&1 || hps_die "make headers failed"
	rm -rf "$HPS_BUILD/modroot"
	"${KMAKE[@]}" INSTALL_MOD_PATH="$HPS_BUILD/modroot" INSTALL_MOD_STRIP=1 modules_install \
		>>"$HPS_LOGS/kernel-build.log" 2>&1 || hps_die "modules_install failed"
	hps_say "kernel $(cat "$HPS_KOBJ/include/config/kernel.release") built: $HPS_KOBJ/arch/x86/boot/bzImage"
}

case "${1:-all}" in
prepare) cmd_prepare ;;
config) cmd_config ;;
build) cmd_build ;;
all) cmd_prepare; cmd_config; cmd_build ;;
*) hps_die "usage: $0 prepare|config|build|all" ;;
esac
