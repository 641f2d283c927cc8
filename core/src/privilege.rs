//! Per-hook resource and privilege keys (`# nice:`, `# io-class:`, `# user:`), and users
//! and groups without NSS.
//!
//! The keys are parsed here for the header ([`parse_nice`], [`parse_io_class`],
//! [`parse_user`]) and turned into a [`Plan`] that the forked child applies right before
//! `exec` ([`Plan::apply`], async-signal-safe raw syscalls), so everything the hook
//! starts inherits them. Hooks that use none of the keys get no plan, and their spawn
//! path stays `posix_spawn`-cheap.
//!
//! The static build (`cargo xtask package`'s `-x86_64-linux-static` tarball) links glibc
//! statically, and a static glibc can only answer `getpwuid` & co. by loading the NSS
//! modules of a matching shared glibc at run time — which the container images it is
//! made for (Alpine, distroless) do not have. So hookrun reads `/etc/passwd` and
//! `/etc/group` itself: the `files` source, which is what those images use. A name
//! served only by another NSS source (LDAP, systemd-userdb) is not found; callers fall
//! back to the numeric id.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// Parses passwd(5) text; malformed lines (and NIS `+`/`-` lines) are skipped, as
/// glibc's `files` module does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['+', '-', '#']) {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

/// Parses group(5) text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 4 || f[0].is_empty() || f[0].starts_with(['+', '-', '#']) {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn read(path: &Path) -> String {
    // A missing or unreadable file is an empty database: lookups fall back to ids.
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The passwd entry of `uid` in `/etc/passwd`.
pub fn user_by_uid(uid: u32) -> Option<PasswdEntry> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|e| e.uid == uid)
}

/// The passwd entry named `name` in `/etc/passwd`.
pub fn user_by_name(name: &str) -> Option<PasswdEntry> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|e| e.name == name)
}

/// The group entry named `name` in `/etc/group`.
pub fn group_by_name(name: &str) -> Option<GroupEntry> {
    parse_group(&read(Path::new(GROUP)))
        .into_iter()
        .find(|e| e.name == name)
}

/// The name of `uid`, or the number when `/etc/passwd` does not have it.
pub fn user_name(uid: u32) -> String {
    user_by_uid(uid).map_or_else(|| uid.to_string(), |e| e.name)
}

// ---------------------------------------------------------------------------------------
// The header keys
// ---------------------------------------------------------------------------------------

/// `# io-class:` — the I/O scheduling class and level (ioprio(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoClass {
    Idle,
    /// Level 0 (highest) to 7.
    BestEffort(u8),
    /// Level 0 to 7; needs root (CAP_SYS_ADMIN).
    Realtime(u8),
}

/// The level `best-effort` and `realtime` get when none is given: the kernel's default
/// for a process at nice 0.
pub const DEFAULT_IO_LEVEL: u8 = 4;

impl IoClass {
    /// The `ioprio_set` value: class << 13 | level.
    pub fn ioprio(self) -> i32 {
        match self {
            IoClass::Realtime(l) => (1 << 13) | i32::from(l),
            IoClass::BestEffort(l) => (2 << 13) | i32::from(l),
            IoClass::Idle => 3 << 13,
        }
    }
}

impl fmt::Display for IoClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoClass::Idle => f.write_str("idle"),
            IoClass::BestEffort(l) => write!(f, "best-effort:{l}"),
            IoClass::Realtime(l) => write!(f, "realtime:{l}"),
        }
    }
}

const IO_EXPECTED: &str = "expected 'idle', 'best-effort' or 'realtime', optionally with a level ':0' (highest) to ':7' (e.g. best-effort:7)";

/// Why a `# nice:`, `# io-class:` or `# user:` value (or the config's `nice`,
/// `io_class`) is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected a whole number from 0 to 19 (19 = lowest CPU priority)")]
    Nice,
    #[error("level {level:?}: {}", IO_EXPECTED)]
    IoLevel { level: String },
    #[error("'idle' takes no level")]
    IdleLevel,
    #[error("{}", IO_EXPECTED)]
    IoClass,
    #[error("expected a user name, optionally ':' and a group name (e.g. nobody or backup:disk)")]
    UserSyntax,
    #[error(
        "user '{user}' does not exist in {}; create it (useradd --system {user}) or name an existing user",
        PASSWD
    )]
    NoUser { user: String },
    #[error(
        "group '{group}' does not exist in {}; create it (groupadd --system {group}) or name an existing group",
        GROUP
    )]
    NoGroup { group: String },
}

impl KeyError {
    /// The remedy alone, where the message gives one after its "; ".
    pub fn fix(&self) -> Option<String> {
        match self {
            KeyError::NoUser { user } => Some(format!(
                "create it (useradd --system {user}) or name an existing user"
            )),
            KeyError::NoGroup { group } => Some(format!(
                "create it (groupadd --system {group}) or name an existing group"
            )),
            _ => None,
        }
    }
}

/// `# nice: N`, 0 (the default) to 19 (lowest priority). Negative values would raise a
/// hook above the platform it runs for, so they are not offered.
pub fn parse_nice(value: &str) -> Result<u8, KeyError> {
    match value.parse::<u8>() {
        Ok(n) if n <= 19 && !value.starts_with('+') => Ok(n),
        _ => Err(KeyError::Nice),
    }
}

/// `# io-class: idle | best-effort[:0-7] | realtime[:0-7]`.
pub fn parse_io_class(value: &str) -> Result<IoClass, KeyError> {
    let (class, level) = match value.split_once(':') {
        Some((c, l)) => (c.trim(), Some(l.trim())),
        None => (value, None),
    };
    let level = match level {
        None => None,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= 7 && !l.starts_with('+') => Some(n),
            _ => {
                return Err(KeyError::IoLevel {
                    level: l.to_owned(),
                });
            }
        },
    };
    match class {
        "idle" if level.is_none() => Ok(IoClass::Idle),
        "idle" => Err(KeyError::IdleLevel),
        "best-effort" => Ok(IoClass::BestEffort(level.unwrap_or(DEFAULT_IO_LEVEL))),
        "realtime" => Ok(IoClass::Realtime(level.unwrap_or(DEFAULT_IO_LEVEL))),
        _ => Err(KeyError::IoClass),
    }
}

/// Who a `# user:` hook runs as, resolved from `/etc/passwd` and `/etc/group` when the
/// header is read, so that a missing user is a header error (the hook is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every group that lists the user, plus `gid`.
    pub groups: Vec<u32>,
    pub home: String,
}

fn valid_name(s: &str) -> bool {
    // useradd's default rule (NAME_REGEX), plus '.', which Debian allows.
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// `# user: NAME[:GROUP]`, resolved against `/etc/passwd` and `/etc/group`.
pub fn parse_user(value: &str) -> Result<Identity, KeyError> {
    resolve_user(value, &read(Path::new(PASSWD)), &read(Path::new(GROUP)))
}

/// [`parse_user`] against the given file contents.
pub fn resolve_user(value: &str, passwd: &str, group: &str) -> Result<Identity, KeyError> {
    let (user, group_name) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    if !valid_name(user) || group_name.is_some_and(|g| !valid_name(g)) {
        return Err(KeyError::UserSyntax);
    }
    let entry = parse_passwd(passwd)
        .into_iter()
        .find(|e| e.name == user)
        .ok_or_else(|| KeyError::NoUser {
            user: user.to_owned(),
        })?;
    let groups = parse_group(group);
    let gid = match group_name {
        None => entry.gid,
        Some(g) => {
            groups
                .iter()
                .find(|e| e.name == g)
                .ok_or_else(|| KeyError::NoGroup {
                    group: g.to_owned(),
                })?
                .gid
        }
    };
    let mut supplementary: Vec<u32> = groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m == user))
        .map(|g| g.gid)
        .collect();
    supplementary.push(gid);
    supplementary.sort_unstable();
    supplementary.dedup();
    Ok(Identity {
        name: entry.name,
        uid: entry.uid,
        gid,
        groups: supplementary,
        home: entry.home,
    })
}

// ---------------------------------------------------------------------------------------
// Applying them
// ---------------------------------------------------------------------------------------

/// What the child does between `fork` and `exec`. Built once per hook run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub nice: Option<u8>,
    pub io_class: Option<IoClass>,
    pub identity: Option<Identity>,
}

impl Plan {
    /// The plan for a hook's header keys; `None` when it uses none of them (then
    /// nothing is done between fork and exec). `# user:` is dropped with a warning
    /// when hookrun does not run as root: worker containers often run unprivileged,
    /// and the hook then simply runs as that user.
    pub fn for_hook(
        hook: &str,
        nice: Option<u8>,
        io_class: Option<IoClass>,
        user: Option<&Identity>,
    ) -> Option<Plan> {
        let mut identity = user.cloned();
        if let Some(id) = &identity {
            let euid = nix::unistd::geteuid().as_raw();
            if euid != 0 && euid != id.uid {
                tracing::warn!(
                    "{hook}: '# user: {}' ignored: hookrun runs as uid {euid}, not root, and cannot switch users; the hook runs as uid {euid}",
                    id.name
                );
                identity = None;
            } else if euid == id.uid {
                // Already that user: nothing to switch.
                identity = None;
            }
        }
        let plan = Plan {
            nice,
            io_class,
            identity,
        };
        (plan != Plan::default()).then_some(plan)
    }

    /// The user a plan switches to, for the Checkmk job directory.
    pub fn user_of(plan: Option<&Plan>) -> Option<&str> {
        plan?.identity.as_ref().map(|i| i.name.as_str())
    }

    /// `HOME`, `USER` and `LOGNAME` of the user the hook runs as (the rest of the
    /// environment stays as it is).
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        match &self.identity {
            None => Vec::new(),
            Some(id) => vec![
                ("HOME".into(), id.home.clone().into()),
                ("USER".into(), id.name.clone().into()),
                ("LOGNAME".into(), id.name.clone().into()),
            ],
        }
    }

    /// Applies the plan to the calling process. Runs in the forked child before `exec`,
    /// so it only makes raw syscalls (no allocation, no locks, no glibc `setxid`
    /// broadcast to threads the child does not have): nice, then I/O priority, then
    /// groups, gid and uid — the uid last, because it gives up the right to the others.
    pub fn apply(&self) -> std::io::Result<()> {
        use nix::libc;
        // SAFETY: plain syscalls with valid arguments; `groups` outlives the call.
        unsafe {
            if let Some(n) = self.nice
                && libc::syscall(
                    libc::SYS_setpriority,
                    libc::PRIO_PROCESS,
                    0,
                    libc::c_int::from(n),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(class) = self.io_class {
                const IOPRIO_WHO_PROCESS: libc::c_int = 1;
                if libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, class.ioprio()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(id) = &self.identity
                && (libc::syscall(libc::SYS_setgroups, id.groups.len(), id.groups.as_ptr()) != 0
                    || libc::syscall(libc::SYS_setresgid, id.gid, id.gid, id.gid) != 0
                    || libc::syscall(libc::SYS_setresuid, id.uid, id.uid, id.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl fmt::Display for Plan {
    /// `nice 19, io idle, user nobody` for `hookrun list` and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.nice {
            parts.push(format!("nice {n}"));
        }
        if let Some(c) = self.io_class {
            parts.push(format!("io {c}"));
        }
        if let Some(id) = &self.identity {
            parts.push(format!("user {}", id.name));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_bad_ones_are_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                    broken:x:notanumber:0::/:/bin/sh\n\
                    short:x:1\n\
                    +nis::::::\n\
                    \n\
                    backup:x:34:34:backup:/var/backups:/usr/sbin/nologin";
        let e = parse_passwd(text);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "nobody", "backup"]);
        assert_eq!(
            e[1],
            PasswdEntry {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
                home: "/nonexistent".into(),
                shell: "/usr/sbin/nologin".into()
            }
        );
    }

    #[test]
    fn group_lines_parse_with_members() {
        let g = parse_group("root:x:0:\ndisk:x:6:backup,hookrun\nbad:x:y:\nshort:x\n");
        assert_eq!(g.len(), 2);
        assert!(g[0].members.is_empty());
        assert_eq!(g[1].gid, 6);
        assert_eq!(g[1].members, ["backup", "hookrun"]);
    }

    #[test]
    fn nice_values() {
        assert_eq!(parse_nice("0"), Ok(0));
        assert_eq!(parse_nice("19"), Ok(19));
        for bad in ["20", "-1", "+5", "", "5x", "ten", "1.5"] {
            assert!(parse_nice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn io_classes() {
        assert_eq!(parse_io_class("idle"), Ok(IoClass::Idle));
        assert_eq!(parse_io_class("best-effort"), Ok(IoClass::BestEffort(4)));
        assert_eq!(parse_io_class("best-effort:7"), Ok(IoClass::BestEffort(7)));
        assert_eq!(parse_io_class("realtime:0"), Ok(IoClass::Realtime(0)));
        assert_eq!(IoClass::BestEffort(7).ioprio(), (2 << 13) | 7);
        assert_eq!(IoClass::Idle.ioprio(), 3 << 13);
        for bad in [
            "",
            "idle:3",
            "best-effort:8",
            "besteffort",
            "be",
            "realtime:",
            "Idle",
        ] {
            assert!(parse_io_class(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_io_class("best-effort:8").unwrap_err().to_string(),
            "level \"8\": expected 'idle', 'best-effort' or 'realtime', optionally with a level ':0' (highest) to ':7' (e.g. best-effort:7)"
        );
        assert_eq!(
            parse_io_class("be").unwrap_err().to_string(),
            "expected 'idle', 'best-effort' or 'realtime', optionally with a level ':0' (highest) to ':7' (e.g. best-effort:7)"
        );
        assert_eq!(
            parse_nice("20").unwrap_err().to_string(),
            "expected a whole number from 0 to 19 (19 = lowest CPU priority)"
        );
    }

    #[test]
    fn users_resolve_with_their_groups() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbackup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n";
        let group = "root:x:0:\ndisk:x:6:backup\nbackup:x:34:\ntape:x:26:other,backup\n";
        let id = resolve_user("backup", passwd, group).expect("backup exists");
        assert_eq!((id.uid, id.gid), (34, 34));
        assert_eq!(id.groups, [6, 26, 34]);
        assert_eq!(id.home, "/var/backups");
        let id = resolve_user("backup:disk", passwd, group).expect("disk exists");
        assert_eq!(
            (id.uid, id.gid, id.groups.as_slice()),
            (34, 6, &[6, 26][..])
        );
        let e = resolve_user("nosuch", passwd, group).expect_err("no such user");
        assert_eq!(
            e.to_string(),
            "user 'nosuch' does not exist in /etc/passwd; create it (useradd --system nosuch) or name an existing user"
        );
        assert_eq!(
            e.fix().as_deref(),
            Some("create it (useradd --system nosuch) or name an existing user")
        );
        let e = resolve_user("backup:nogroup", passwd, group).expect_err("no such group");
        assert_eq!(
            e.to_string(),
            "group 'nogroup' does not exist in /etc/group; create it (groupadd --system nogroup) or name an existing group"
        );
        for bad in ["", "Root", "a b", "x:", ":g", "0abc", "a/b"] {
            assert!(resolve_user(bad, passwd, group).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plan_only_exists_when_a_key_is_used() {
        assert_eq!(Plan::for_hook("h", None, None, None), None);
        let p = Plan::for_hook("h", Some(19), Some(IoClass::Idle), None).expect("a plan");
        assert_eq!(p.to_string(), "nice 19, io idle");
        assert!(p.env().is_empty());
    }

    #[test]
    fn the_running_users_name_comes_from_etc_passwd() {
        // The test machine has root in /etc/passwd; a uid nobody has falls back.
        if Path::new(PASSWD).exists() {
            assert_eq!(user_name(0), "root");
        }
        assert_eq!(user_name(3_999_999_999), "3999999999");
    }
}
