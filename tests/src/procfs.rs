//! What `/proc` says about processes: the suites use it to find the processes a test
//! started (by a variable in their environment), their parents, states, descriptors and
//! peak memory, and to reap orphans as init would.

use std::path::Path;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`, ...
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the pid, it identifies the process.
    pub start: u64,
}

/// The process's `stat`, or `None` once it is gone. The command name in parentheses
/// may hold anything, so the fields are counted from the last `)`.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Every pid in `/proc` right now.
pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the environment of `pid` has the entry `entry` (`NAME=value`) exactly. A
/// zombie, or a process gone or not ours to read, has none.
pub fn environ_has(pid: i32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|e| e.split(|&b| b == 0).any(|kv| kv == entry.as_bytes()))
}

/// The command line of `pid`, its arguments joined by spaces (empty once it is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// Live (not zombie) processes other than this one whose environment has `entry`.
pub fn live_with_env(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| stat(p).is_some_and(|s| s.state != 'Z') && environ_has(p, entry))
        .collect()
}

/// The children of `pid` (processes whose parent it is).
pub fn children_of(pid: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&c| stat(c).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// Whether a file descriptor of `pid` points at `needle` (a path or part of one).
pub fn has_open(pid: i32, needle: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains(needle))
            })
        })
        .unwrap_or(false)
}

/// `VmHWM` (peak resident set, kB) of `pid`; `None` once it is gone or a zombie.
pub fn peak_rss_kb(pid: i32) -> Option<u64> {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// Makes this test process a child subreaper (once): orphans of the processes it starts
/// are re-parented to it instead of to PID 1 (which, in a container, may never reap).
pub fn become_subreaper() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen() {
        let me = std::process::id() as i32;
        let st = stat(me).expect("our own stat");
        assert_ne!(st.state, 'Z');
        assert_eq!(st.ppid, nix::unistd::getppid().as_raw());
        assert!(pids().contains(&me));
        assert!(children_of(st.ppid).contains(&me));
        assert!(!cmdline(me).is_empty());
        assert!(peak_rss_kb(me).is_some_and(|kb| kb > 0));
        // The environment the process started with (nothing here changes it).
        if let Some((k, v)) = std::env::vars().next() {
            assert!(environ_has(me, &format!("{k}={v}")));
        }
        assert!(!environ_has(me, "HOOKRUN_NO_SUCH_VARIABLE=1"));
        assert!(stat(i32::MAX).is_none());
    }
}
