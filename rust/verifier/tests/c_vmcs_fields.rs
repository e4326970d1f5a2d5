// SPDX-License-Identifier: GPL-2.0

//! The C side's list of VMCS fields that need no call to HyperPS
//! (`arch/x86/kvm/vmx/hyperps_vmcs_fields.h`, added by a patch in `patches/`) must be exactly
//! the fields `field_policy()` lets take any value. A constant VMWRITE of such a field skips
//! the backend, so a field that drifts into the list would go unchecked.
//!
//! On a mismatch the test writes the header it expects to `target/hyperps_vmcs_fields.h`:
//! put that text into the patch (see `Documentation/hyperps/verifier.rst`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hyperps_verifier::policy::vmcs_fields::{field_policy, FieldPolicy};
use hyperps_verifier::VmcsField;

const HEADER: &str = "arch/x86/kvm/vmx/hyperps_vmcs_fields.h";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The named fields of `vmcs_fields.rs`, in source order: (name, encoding).
fn named_fields() -> Vec<(String, u32)> {
    let src = std::fs::read_to_string(crate_dir().join("src/policy/vmcs_fields.rs"))
        .expect("vmcs_fields.rs");
    src.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = l.split_once(": VmcsField = VmcsField(0x")?;
            let hex = rest.strip_suffix(");")?;
            Some((name.to_string(), u32::from_str_radix(hex, 16).ok()?))
        })
        .collect()
}

/// The header the C side must have.
fn expected_header() -> String {
    let mut free: Vec<(String, u32)> = named_fields()
        .into_iter()
        .filter(|&(_, e)| field_policy(VmcsField(e)) == Some(FieldPolicy::Free))
        .collect();
    free.sort_by_key(|&(_, e)| e);
    let mut h = String::new();
    h.push_str(
        "/* SPDX-License-Identifier: GPL-2.0 */\n\
         /*\n \
         * Generated from the HyperPS verifier's field_policy() by\n \
         * rust/verifier/tests/c_vmcs_fields.rs, which fails if the two differ.\n \
         */\n\
         #ifndef __KVM_X86_VMX_HYPERPS_VMCS_FIELDS_H\n\
         #define __KVM_X86_VMX_HYPERPS_VMCS_FIELDS_H\n\
         \n\
         #include <asm/vmx.h>\n\
         \n\
         /*\n \
         * Fields HyperPS lets take any value: guest state and controls that cannot\n \
         * break isolation.  Fields that name a page are not among them, whatever\n \
         * their encoding says.\n \
         */\n\
         static __always_inline bool hyperps_vmcs_field_is_free(unsigned long field)\n\
         {\n\
         \tswitch (field) {\n",
    );
    for (name, _) in &free {
        let _ = writeln!(h, "\tcase {name}:");
    }
    h.push_str(
        "\t\treturn true;\n\
         \tdefault:\n\
         \t\treturn false;\n\
         \t}\n\
         }\n\
         \n\
         #endif /* __KVM_X86_VMX_HYPERPS_VMCS_FIELDS_H */\n",
    );
    h
}

/// The header as the patch that adds it has it.
fn header_in_patches() -> Option<(PathBuf, String)> {
    let dir = crate_dir().join("../../patches");
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("patches/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    patches.sort();
    for p in patches {
        let text = std::fs::read_to_string(&p).expect("patch");
        let Some(start) = text.find(&format!("+++ b/{HEADER}\n")) else {
            continue;
        };
        let mut body = String::new();
        for line in text[start..].lines().skip(2) {
            let Some(added) = line.strip_prefix('+') else {
                break;
            };
            body.push_str(added);
            body.push('\n');
        }
        return Some((p, body));
    }
    None
}

#[test]
fn the_c_list_of_unchecked_fields_is_field_policys_free_fields() {
    let want = expected_header();
    let out = crate_dir().join("target/hyperps_vmcs_fields.h");
    let found = header_in_patches();
    if found.as_ref().map(|(_, h)| h) != Some(&want) {
        let _ = std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")));
        std::fs::write(&out, &want).expect("write the expected header");
        match found {
            Some((p, _)) => panic!(
                "{} has a {HEADER} that differs from field_policy(); the expected one is in {}",
                p.display(),
                out.display()
            ),
            None => panic!(
                "no patch adds {HEADER}; the expected one is in {}",
                out.display()
            ),
        }
    }
}

#[test]
fn every_free_encoding_has_a_name() {
    let named: Vec<u32> = named_fields().into_iter().map(|(_, e)| e).collect();
    for e in 0..=0xffffu32 {
        if field_policy(VmcsField(e)) == Some(FieldPolicy::Free) {
            assert!(
                named.contains(&e),
                "free field {e:#x} has no named constant"
            );
        }
    }
}
