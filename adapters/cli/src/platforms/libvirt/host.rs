//! Where the host wires libvirt: `/etc/libvirt/hooks/<driver>` (and libvirt's own
//! `<driver>.d`), and which of its daemons are running, found like `pidof` in
//! `ROOT/proc`: libvirt looks for hook scripts only when a daemon starts.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::host::Host;

pub const LIBVIRT_HOOKS_DIR: &str = "/etc/libvirt/hooks";

/// The modular daemon that owns `driver` (with the monolithic `libvirtd` it is that).
pub fn modular_daemon(driver: &str) -> Option<&'static str> {
    match driver {
        "qemu" => Some("virtqemud"),
        "lxc" => Some("virtlxcd"),
        "network" => Some("virtnetworkd"),
        "libxl" => Some("virtxend"),
        "bhyve" => Some("virtbhyved"),
        _ => None,
    }
}

/// Every daemon built from libvirt's `remote_daemon.c`: all of them call the `daemon` hook.
pub const LIBVIRT_DAEMONS: &[&str] = &[
    "libvirtd",
    "virtqemud",
    "virtlxcd",
    "virtnetworkd",
    "virtxend",
    "virtbhyved",
    "virtproxyd",
    "virtstoraged",
    "virtnodedevd",
    "virtinterfaced",
    "virtnwfilterd",
    "virtsecretd",
    "virtchd",
    "virtvboxd",
];

#[derive(Debug, Clone)]
pub struct Daemon {
    pub pid: u32,
    pub name: String,
    pub started: Option<SystemTime>,
}

/// The running libvirt daemons, found like `pidof` in `ROOT/proc`; `None` when that
/// cannot be read (no `proc` in the root, or no `btime` in `proc/stat`).
pub fn libvirt_daemons(host: &Host) -> Option<Vec<Daemon>> {
    let proc_dir = host.path("/proc");
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    let mut out = Vec::new();
    for item in std::fs::read_dir(&proc_dir).ok()?.flatten() {
        let Some(pid) = item
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(item.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let name = &text[open + 1..close];
        if !LIBVIRT_DAEMONS.contains(&name) {
            continue;
        }
        // Field 22 (starttime, clock ticks after boot); fields after ')' start at 3.
        let started = text[close + 1..]
            .split_whitespace()
            .nth(19)
            .and_then(|t| t.parse::<u64>().ok())
            .map(|t| {
                UNIX_EPOCH + Duration::from_secs(btime) + Duration::from_millis(t * 1000 / ticks)
            });
        out.push(Daemon {
            pid,
            name: name.to_owned(),
            started,
        });
    }
    out.sort_by_key(|d| d.pid);
    Some(out)
}

/// When a file or symlink came into being (its birth time where the file system keeps
/// one, else its modification time), not following a final symlink.
pub fn created(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.created().ok().or_else(|| meta.modified().ok())
}
/// The running daemons that call `driver`'s hook.
pub fn owners<'a>(running: &'a [Daemon], driver: &str) -> Vec<&'a Daemon> {
    running
        .iter()
        .filter(|d| {
            driver == "daemon"
                || d.name == "libvirtd"
                || modular_daemon(driver) == Some(d.name.as_str())
        })
        .collect()
}
