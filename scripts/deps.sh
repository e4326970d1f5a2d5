#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install what the build and the bench need, idempotently. Quiet when all is present.
# Usage: scripts/deps.sh [--check]   (--check only reports what is missing)
source "$(dirname "$0")/lib.sh"

BINDGEN_VERSION=0.69.5
# Host tools are cached per user, outside the clone, so a fresh clone on the same machine
# does not rebuild them.
HPS_TOOL_CACHE=${HPS_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperps}

APT_PACKAGES=(
	# kernel build
	build-essential flex bison bc libelf-dev libssl-dev cpio dwarves kmod rsync python3 ccache
	clang lld llvm libclang-dev
	# bench
	bochs bochs-term bochsbios vgabios busybox-static syslinux syslinux-common isolinux xorriso
	qemu-system-x86 util-linux
	# kernel source
	linux-source-6.12
)

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
	[ "$check_only" = 1 ] && hps_die "missing Debian packages: ${missing[*]}"
	hps_say "installing Debian packages: ${missing[*]}"
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || hps_die "need root (or sudo) to install: ${missing[*]}"
		sudo=sudo
	fi
	$sudo apt-get update -qq || hps_die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >"$HPS_LOGS/apt.log" 2>&1 ||
		hps_die "apt-get install failed; see $HPS_LOGS/apt.log"
fi

[ -f /usr/src/linux-source-6.12.tar.xz ] ||
	hps_die "/usr/src/linux-source-6.12.tar.xz is missing although linux-source-6.12 is installed"

# Rust: the kernel needs rustc, cargo, rust-src, rustfmt and clippy.
command -v rustc >/dev/null && command -v cargo >/dev/null ||
	hps_die "rustc/cargo not found; install Rust (rustup stable, 1.78 or newer) first"
sysroot_src="$(rustc --print sysroot)/lib/rustlib/src/rust/library"
if [ ! -d "$sysroot_src" ]; then
	if [ "$check_only" = 0 ] && command -v rustup >/dev/null; then
		hps_say "adding the rust-src component"
		rustup component add rust-src >"$HPS_LOGS/rustup.log" 2>&1 ||
			hps_die "rustup component add rust-src failed; see $HPS_LOGS/rustup.log"
	else
		hps_die "rust-src is missing ($sysroot_src); run: rustup component add rust-src"
	fi
fi
for comp in rustfmt clippy; do
	if ! cargo "$comp" --version >/dev/null 2>&1; then
		[ "$check_only" = 0 ] && command -v rustup >/dev/null &&
			rustup component add "$comp" >>"$HPS_LOGS/rustup.log" 2>&1 ||
			hps_die "cargo $comp is missing; run: rustup component add $comp"
	fi
done

# bindgen, pinned: the kernel's Rust support is known to build with this version.
bindgen_root="$HPS_TOOL_CACHE/bindgen-$BINDGEN_VERSION"
if [ ! -x "$bindgen_root/bin/bindgen" ]; then
	[ "$check_only" = 1 ] && hps_die "bindgen $BINDGEN_VERSION is missing"
	hps_step "installing bindgen-cli $BINDGEN_VERSION from crates.io (about a minute)" \
		"$HPS_LOGS/bindgen-install.log" cargo install --quiet --locked bindgen-cli --version "$BINDGEN_VERSION" \
		--root "$bindgen_root"
fi
mkdir -p "$HPS_TOOLS/bin"
ln -sfn "$bindgen_root/bin/bindgen" "$HPS_TOOLS/bin/bindgen"
"$HPS_TOOLS/bin/bindgen" --version >/dev/null || hps_die "bindgen does not run"
