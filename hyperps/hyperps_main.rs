// SPDX-License-Identifier: GPL-2.0

//! HyperPS: privilege separation for KVM hosts.
//!
//! This is the module root. At this stage the module checks that the CPU offers what HyperPS
//! relies on (VMX with EPT and VPID) and reports the capabilities it read from the VMX
//! capability MSRs. The verifier core is compiled in from `rust/verifier`, the same source the
//! userspace tests exercise; the hooks that call it come with the L1 patch series.

use kernel::prelude::*;

// `pub` so that the kernel's unreachable_pub lint sees the policy's API as reachable.
#[path = "../rust/verifier/src/policy/mod.rs"]
#[deny(unsafe_code)]
pub mod policy;
mod vmx_caps;

/// Version of hyperps.ko; reported at load time.
const HYPERPS_VERSION: &str = "0.1.0";

module! {
    type: HyperPs,
    name: "hyperps",
    author: "The HyperPS developers",
    description: "HyperPS: verify VMCS, EPT and control-register writes of a KVM host",
    license: "GPL",
}

struct HyperPs;

impl kernel::Module for HyperPs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("version {}\n", HYPERPS_VERSION);
        let caps = vmx_caps::VmxCaps::read_boot_cpu().inspect_err(|_| {
            pr_err!("cannot read the VMX capability MSRs: this CPU has no usable VMX\n");
        })?;
        caps.report();
        if let Some(missing) = caps.missing_requirement() {
            pr_err!("this CPU lacks {}, which HyperPS requires\n", missing);
            return Err(ENODEV);
        }
        Ok(HyperPs)
    }
}

impl Drop for HyperPs {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
