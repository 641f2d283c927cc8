//! Contributed hooks and tools (DESIGN §8).
//!
//! - [`retention`]: the retention engine (`retentions`' decisions), pure;
//! - [`store`], [`dirlock`], [`companions`], [`glob`], [`calendar`]: the engine on a
//!   directory: candidates, locking, companion rules, name patterns, local time;
//! - [`retain_cli`]: `hookrun-retain`, the engine as a `retentions`-compatible tool;
//! - [`vzdump`], [`encrypt`], [`cer`]: `hookrun-copy-encrypt-retain`, the seed's
//!   copy-encrypt-retain hook done right.

pub mod calendar;
pub mod cer;
pub mod companions;
pub mod dirlock;
pub mod encrypt;
/// The checks the `retention` fuzz target runs (tests and the `fuzzing` feature only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod retain_cli;
pub mod retention;
pub mod store;
pub mod vzdump;
