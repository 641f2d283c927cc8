//! hookrun adapter for libvirt daemon and driver hooks.
//!
//! Not built yet: this adapter arrives with its own issue. Until then the binary refuses
//! to run rather than guessing at the platform's calling convention.

pub const PLATFORM_PREFIX: &str = "libvirt-";

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    hookrun_core::logging::init("hookrun", false);
    tracing::error!("hookrun-libvirt is not implemented in this build; no hooks were run");
    70
}
