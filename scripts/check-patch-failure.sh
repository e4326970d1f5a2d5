#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A patch that does not apply must stop the build with an error naming the patch and the hunk,
# and must leave the tree as it was. This appends a deliberately broken patch to a copy of the
# series and checks exactly that.
source "$(dirname "$0")/lib.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$HPS_TOP/patches/." "$tmp/"
broken=9999-deliberately-broken.patch
cat >"$tmp/$broken" <<'EOT'
From: HyperPS test <hyperps@localhost>
Subject: [PATCH] KVM: VMX: context that is not in the tree

---
 arch/x86/kvm/vmx/vmx.c | 1 +
 1 file changed, 1 insertion(+)

--- a/arch/x86/kvm/vmx/vmx.c
+++ b/arch/x86/kvm/vmx/vmx.c
@@ -1,3 +1,4 @@
 this line is not in vmx.c
 nor is this one
+/* never applied */
 nor this
EOT
# Append it to the series applied last, so that nothing before it has to be reverted.
mkdir -p "$tmp/bench"
mv "$tmp/$broken" "$tmp/bench/$broken"
echo "$broken" >>"$tmp/bench/series"
before=$(md5sum "$HPS_KSRC/arch/x86/kvm/vmx/vmx.c")

if HPS_PATCH_DIR=$tmp "$HPS_TOP/scripts/kernel.sh" prepare >"$tmp/out" 2>&1; then
	echo "FAIL: prepare succeeded with a broken patch"; cat "$tmp/out"; exit 1
fi
cat "$tmp/out"
grep -q "ERROR: patch bench/$broken does not apply" "$tmp/out" || { echo "FAIL: patch not named"; exit 1; }
grep -q 'Hunk #1 FAILED' "$tmp/out" || { echo "FAIL: hunk not named"; exit 1; }
[ "$(md5sum "$HPS_KSRC/arch/x86/kvm/vmx/vmx.c")" = "$before" ] ||
	{ echo "FAIL: the tree was changed"; exit 1; }
# The real series must still be in place and need nothing.
"$HPS_TOP/scripts/kernel.sh" prepare >"$tmp/again" 2>&1 || { cat "$tmp/again"; exit 1; }
echo "PASS: the broken patch was named with its hunk and the tree was left as it was"
