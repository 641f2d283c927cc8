//! hookrun-core: everything platform-neutral about running a directory of hooks.
//!
//! - [`header`]: the comment header a hook describes itself with;
//! - [`discover`]: finding hooks and deciding which run;
//! - [`dispatch`]: running them in order with the `on-error` policy;
//! - [`process`]: one sync hook in its own process group, with timeouts, signals and a
//!   non-blocking output relay;
//! - [`contain`]: a hook's unit (everything below a subreaper) and the guard that
//!   outlives a killed worker;
//! - [`supervise`]: async hooks under detached supervisors;
//! - [`wrap`]: a command between pre and post hooks (the worker);
//! - [`running`]: running markers and `lost` runs;
//! - [`entry`]: the start every binary shares (supervisor, `--help`, `--version`);
//! - [`config`], [`record`], [`job`], [`lock`], [`perms`], [`privilege`], [`metrics`],
//!   [`mkjob`], [`logging`]: the supporting pieces.
//!
//! Adapters translate a platform's calling convention into a [`dispatch::Request`];
//! nothing here knows about Proxmox or libvirt.

pub mod config;
pub mod contain;
pub mod discover;
pub mod dispatch;
pub mod entry;
pub mod error;
/// The checks the fuzz targets in `fuzz/` run (tests and the `fuzzing` feature only).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod job;
pub mod lint;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod mkjob;
pub mod objects;
pub mod perms;
pub mod privilege;
pub mod process;
pub mod record;
pub mod running;
pub mod scancache;
pub mod signals;
pub mod supervise;
pub mod time;
pub mod wrap;

pub use config::{Config, Settings};
pub use dispatch::{Report, Request, dispatch, resolve_hooks_dir};
pub use error::{ConfigError, DispatchError};
pub use header::{Mode, OnError};
