// SPDX-License-Identifier: GPL-2.0

//! Host page-table roots: the frames `CR3` and `HOST_CR3` may name.
//!
//! While the module registers, the kernel reports every root that exists (the kernel is still
//! trusted then). Afterwards a root is accepted only from `pgd_alloc()` and only in the state
//! `pgd_alloc()` leaves it in: no user mapping, the kernel half of the kernel's root. The page
//! tables below a root are not checked at this level.

use super::super::denial::{CheckClass, Denial};
use super::super::records::FrameState;
use super::super::types::Pfn;
use super::{Backend, Handle, Platform};

impl<'a> Backend<'a> {
    /// `pgd_add`: the `pages` frames from `first` on form a page-table root. Returns whether it
    /// was accepted; the caller then lets `CR3` name it.
    pub fn pgd_add(&mut self, p: &mut impl Platform, first: Pfn, pages: u32) -> Result<(), Denial> {
        let verdict = self.pgd_verdict(p, first, pages);
        if let Err(d) = verdict {
            let d = self.refuse_op(
                p,
                CheckClass::Registration,
                d,
                (first.0, 0, u64::from(pages)),
                Handle::NONE,
            );
            return Err(d);
        }
        for i in 0..u64::from(pages) {
            let Some(f) = first.checked_add(i) else {
                break;
            };
            if self.v.frame_state(f) == Some(FrameState::HostPgd) {
                continue;
            }
            if let Err(d) = self.v.register_host_pgd(f, 1) {
                Self::anomaly(p, d, f.0);
            }
        }
        Ok(())
    }

    fn pgd_verdict(&self, p: &impl Platform, first: Pfn, pages: u32) -> Result<(), Denial> {
        if pages == 0 || pages > 2 {
            return Err(Denial::BadRange);
        }
        let mut known = 0u32;
        for i in 0..u64::from(pages) {
            let f = first.checked_add(i).ok_or(Denial::BadRange)?;
            match self.v.frame_state(f) {
                Some(FrameState::Host) => {}
                Some(FrameState::HostPgd) => known = known.saturating_add(1),
                Some(_) => return Err(Denial::WrongState),
                None => return Err(Denial::FrameOutOfRange),
            }
        }
        if self.registering {
            return Ok(());
        }
        // Reported again (registration raced with pgd_alloc()): nothing changes.
        if known == pages {
            return Ok(());
        }
        if !p.pgd_is_new(first, pages) {
            return Err(Denial::PgdNotNew);
        }
        Ok(())
    }

    /// `pgd_remove`: the root is about to be freed.
    pub fn pgd_remove(&mut self, p: &mut impl Platform, first: Pfn, pages: u32) {
        for i in 0..u64::from(pages.min(2)) {
            let Some(f) = first.checked_add(i) else {
                break;
            };
            if self.v.frame_state(f) == Some(FrameState::HostPgd) {
                if let Err(d) = self.v.unregister_host_pgd(f, 1) {
                    Self::anomaly(p, d, f.0);
                }
            }
        }
    }
}
