//! The host as `hookrun doctor` and `hookrun install` see it.
//!
//! Every host path (`/etc/vzdump.conf`, `/etc/pve/...`, `/etc/libvirt/hooks/`,
//! `/etc/hookrun/`, the paths in `hookrun.toml`, `/proc`) is resolved under a *root*
//! directory: `/` normally, or the directory given with the hidden option `--root DIR`
//! (for the test suite's fake host trees, and for checking a mounted system image).
//! Symlinks are followed the way a process chrooted into the root would follow them: an
//! absolute target is taken relative to the root. Paths in messages are the real ones
//! (`DIR/etc/vzdump.conf` under `--root DIR`), so every printed command works as it is;
//! what is *written into* host files (`script: /usr/bin/hookrun-vzdump`, symlink
//! targets) is the path as the host sees it.
//!
//! The adapters are expected beside the running `hookrun` binary (`/usr/bin` for the
//! packages). The hidden option `--bin-dir DIR` names another directory, as the host
//! sees it; under `--root` without `--bin-dir` it is the running binary's directory
//! when that lies inside the root, else `/usr/bin`.
//!
//! Also here: the parsers for the few Proxmox and libvirt facts both commands need
//! (`/etc/vzdump.conf`, `/etc/pve/jobs.cfg`, `/etc/pve/storage.cfg`, guest configs) and
//! a `pidof`-like scan of `ROOT/proc` for the libvirt daemons.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookrun_core::config::{Config, DEFAULT_CONFIG_PATH};
use hookrun_core::{ConfigError, Settings};

use crate::cli::HostArgs;

/// The adapter binaries and the platforms they serve.
pub const ADAPTERS: &[&str] = &[
    "hookrun-vzdump",
    "hookrun-pve-guest",
    "hookrun-libvirt",
    "hookrun-worker",
];

pub const VZDUMP_CONF: &str = "/etc/vzdump.conf";
pub const JOBS_CFG: &str = "/etc/pve/jobs.cfg";
pub const STORAGE_CFG: &str = "/etc/pve/storage.cfg";
pub const QEMU_CONF_DIR: &str = "/etc/pve/qemu-server";
pub const LXC_CONF_DIR: &str = "/etc/pve/lxc";
pub const LIBVIRT_HOOKS_DIR: &str = "/etc/libvirt/hooks";
/// The snippet name `hookrun install pve-guest` creates.
pub const SNIPPET_NAME: &str = "hookrun";

pub struct Host {
    /// Canonical; `/` for the real host.
    pub root: PathBuf,
    /// Where the adapters are, as the host sees it.
    pub bin_dir: PathBuf,
}

impl Host {
    pub fn new(args: &HostArgs) -> anyhow::Result<Host> {
        let root = match &args.root {
            Some(r) => std::fs::canonicalize(r).map_err(|e| {
                crate::Exit::error(crate::EXIT_USAGE, format!("--root {}: {e}", r.display()))
            })?,
            None => PathBuf::from("/"),
        };
        let bin_dir = match &args.bin_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => {
                return Err(crate::Exit::error(
                    crate::EXIT_USAGE,
                    format!("--bin-dir {} must be an absolute path", d.display()),
                ));
            }
            None => {
                let exe_dir = std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(Path::to_owned));
                match exe_dir {
                    Some(d) if root == Path::new("/") => d,
                    Some(d) => match d.strip_prefix(&root) {
                        Ok(rel) => Path::new("/").join(rel),
                        Err(_) => PathBuf::from("/usr/bin"),
                    },
                    None => PathBuf::from("/usr/bin"),
                }
            }
        };
        Ok(Host { root, bin_dir })
    }

    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The real path of the host path `host`.
    pub fn path(&self, host: impl AsRef<Path>) -> PathBuf {
        let host = host.as_ref();
        let rel = host.strip_prefix("/").unwrap_or(host);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// The host path of a real path inside the root.
    pub fn host_path(&self, real: &Path) -> PathBuf {
        match real.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => real.to_owned(),
        }
    }

    /// The adapter `name` as the host sees it (`/usr/bin/hookrun-vzdump`).
    pub fn adapter(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Follows every symlink in the host path `host` inside the root; returns the real
    /// path of what it leads to. Errors: `NotFound` (something on the way is missing),
    /// or a loop.
    pub fn resolve(&self, host: &Path) -> std::io::Result<PathBuf> {
        let mut todo: Vec<OsString> = components(host);
        todo.reverse();
        let mut cur: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let mut probe = self.root.clone();
            probe.extend(&cur);
            probe.push(&c);
            let meta = std::fs::symlink_metadata(&probe)?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(std::io::Error::other("symlink loop"));
                }
                let target = std::fs::read_link(&probe)?;
                if target.is_absolute() {
                    cur.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            } else {
                cur.push(c);
            }
        }
        let mut out = self.root.clone();
        out.extend(&cur);
        Ok(out)
    }

    /// `ROOT/etc/hookrun/hookrun.toml`: the file every platform's dispatch reads
    /// (vzdump, libvirt and Proxmox do not pass `HOOKRUN_CONFIG` on).
    pub fn config_path(&self) -> PathBuf {
        self.path(DEFAULT_CONFIG_PATH)
    }

    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load_file(&self.config_path(), false)
    }

    /// The settings for `platform`, with every path in them resolved under the root.
    pub fn settings(&self, config: &Config, platform: &str) -> Settings {
        let mut s = config.settings_for(platform);
        s.log_dir = self.path(&s.log_dir);
        s.lock_dir = self.path(&s.lock_dir);
        s.mk_job_dir = self.path(&s.mk_job_dir);
        s.hooks_dir = s.hooks_dir.as_ref().map(|d| self.path(d));
        s
    }

    /// Reads a host file as text; `None` when it does not exist.
    pub fn read(&self, host: &str) -> std::io::Result<Option<String>> {
        match std::fs::read(self.path(host)) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What the host path `host` is, compared with the installed adapter `adapter`.
    pub fn identify(&self, host: &Path, adapter: &str) -> Target {
        let installed = self.resolve(&self.adapter(adapter)).ok();
        let resolved = match self.resolve(host) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Target {
                    resolved: None,
                    kind: TargetKind::Missing,
                    executable: false,
                };
            }
            Err(e) => {
                return Target {
                    resolved: None,
                    kind: TargetKind::Broken(e.to_string()),
                    executable: false,
                };
            }
        };
        let meta = match std::fs::metadata(&resolved) {
            Ok(m) => m,
            Err(e) => {
                return Target {
                    resolved: Some(resolved),
                    kind: TargetKind::Broken(e.to_string()),
                    executable: false,
                };
            }
        };
        let executable = meta.is_file() && meta.permissions().mode() & 0o111 != 0;
        let kind = if !meta.is_file() {
            TargetKind::Broken("not a regular file".into())
        } else if installed.as_deref() == Some(resolved.as_path()) {
            TargetKind::Installed
        } else if installed
            .as_deref()
            .is_some_and(|i| same_contents(i, &resolved))
        {
            TargetKind::Copy
        } else if resolved.file_name().is_some_and(|n| n == adapter) {
            TargetKind::OtherHookrun
        } else {
            TargetKind::Foreign
        };
        Target {
            resolved: Some(resolved),
            kind,
            executable,
        }
    }

    /// Which of `names` exist in the root's standard `PATH` directories.
    pub fn find_program(&self, name: &str) -> Option<PathBuf> {
        hookrun_core::dispatch::DEFAULT_PATH
            .split(':')
            .map(|d| self.path(Path::new(d).join(name)))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if ma.len() != mb.len() || ma.len() > 512 << 20 {
        return false;
    }
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// What a configured script path leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// The installed adapter (directly or through symlinks).
    Installed,
    /// A byte-identical copy of the installed adapter.
    Copy,
    /// A file named like the adapter, elsewhere (an older install, a build tree).
    OtherHookrun,
    /// Something else: another hook script.
    Foreign,
    Missing,
    /// A symlink loop, a directory, unreadable.
    Broken(String),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub resolved: Option<PathBuf>,
    pub kind: TargetKind,
    pub executable: bool,
}

impl Target {
    pub fn is_hookrun(&self) -> bool {
        matches!(
            self.kind,
            TargetKind::Installed | TargetKind::Copy | TargetKind::OtherHookrun
        )
    }
}

// ---------------------------------------------------------------------------------------
// Proxmox configuration files
// ---------------------------------------------------------------------------------------

/// The active `script:` line of `/etc/vzdump.conf`: `(line number, value)`. vzdump
/// reads it with `PVE::JSONSchema::parse_config`: surrounding whitespace is stripped,
/// lines starting with `#` are comments, `key: value` with the key ending at the first
/// `:`, and a later line wins.
pub fn vzdump_script(text: &str) -> Option<(usize, String)> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(value) = script_line_value(line) {
            found = Some((i + 1, value.to_owned()));
        }
    }
    found
}

/// The value of a `script:` line of vzdump.conf.
pub fn script_line_value(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("script:")?;
    Some(rest.trim()).filter(|v| !v.is_empty())
}

/// One section of a Proxmox section config (`storage.cfg`, `jobs.cfg`): `type: id`
/// followed by indented `key value` lines.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: String,
    pub id: String,
    pub line: usize,
    pub props: Vec<(String, String)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(s) = out.last_mut() {
                let t = line.trim();
                let (k, v) = t.split_once([' ', '\t']).unwrap_or((t, ""));
                s.props.push((k.to_owned(), v.trim().to_owned()));
            }
        } else if let Some((kind, id)) = line.split_once(':') {
            out.push(Section {
                kind: kind.trim().to_owned(),
                id: id.trim().to_owned(),
                line: i + 1,
                props: Vec::new(),
            });
        }
    }
    out
}

/// A storage of `/etc/pve/storage.cfg`.
#[derive(Debug, Clone)]
pub struct Storage {
    pub id: String,
    pub kind: String,
    /// Its `path`, as the host sees it; storages without one cannot hold snippets.
    pub path: Option<PathBuf>,
    pub content: Vec<String>,
    /// `content-dirs snippets=...`, default `snippets`.
    pub snippets_subdir: String,
}

impl Storage {
    /// The host directory holding this storage's snippets.
    pub fn snippets_dir(&self) -> Option<PathBuf> {
        self.path.as_ref().map(|p| p.join(&self.snippets_subdir))
    }

    pub fn is_network(&self) -> bool {
        matches!(self.kind.as_str(), "nfs" | "cifs" | "glusterfs" | "cephfs")
    }
}

/// The storages; without a `storage.cfg`, Proxmox's default (`local` at `/var/lib/vz`).
pub fn storages(host: &Host) -> Vec<Storage> {
    let text = host.read(STORAGE_CFG).ok().flatten();
    let Some(text) = text else {
        return vec![Storage {
            id: "local".into(),
            kind: "dir".into(),
            path: Some(PathBuf::from("/var/lib/vz")),
            content: ["iso", "vztmpl", "backup"].map(String::from).to_vec(),
            snippets_subdir: "snippets".into(),
        }];
    };
    sections(&text)
        .into_iter()
        .map(|s| {
            let snippets_subdir = s
                .get("content-dirs")
                .and_then(|cd| {
                    cd.split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| k.trim() == "snippets")
                        .map(|(_, v)| v.trim().trim_matches('/').to_owned())
                })
                .unwrap_or_else(|| "snippets".into());
            Storage {
                path: s.get("path").map(PathBuf::from),
                content: s
                    .get("content")
                    .map(|c| c.split(',').map(|x| x.trim().to_owned()).collect())
                    .unwrap_or_default(),
                snippets_subdir,
                id: s.id,
                kind: s.kind,
            }
        })
        .collect()
}

/// Resolves a hookscript volume id `<storage>:snippets/<name>` to the host path Proxmox
/// checks and runs, as `PVE::GuestHelpers::check_hookscript` does.
pub fn snippet_path(storages: &[Storage], volid: &str) -> Result<PathBuf, String> {
    let (sid, rest) = volid
        .split_once(':')
        .ok_or_else(|| format!("'{volid}' is not a volume id (<storage>:snippets/<name>)"))?;
    let name = rest
        .strip_prefix("snippets/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| format!("'{volid}' is not in the snippets directory"))?;
    let storage = storages
        .iter()
        .find(|s| s.id == sid)
        .ok_or_else(|| format!("storage '{sid}' does not exist (not in {STORAGE_CFG})"))?;
    let dir = storage
        .snippets_dir()
        .ok_or_else(|| format!("storage '{sid}' has no path, so it cannot hold snippets"))?;
    Ok(dir.join(name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Vm,
    Ct,
}

impl GuestKind {
    /// The command that changes its config.
    pub fn tool(self) -> &'static str {
        match self {
            GuestKind::Vm => "qm",
            GuestKind::Ct => "pct",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GuestKind::Vm => "VM",
            GuestKind::Ct => "container",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guest {
    pub vmid: u32,
    pub kind: GuestKind,
    pub hookscript: Option<String>,
}

/// The guests of this node with their `hookscript:` (the current config, not
/// snapshots or pending changes).
pub fn guests(host: &Host) -> Vec<Guest> {
    let mut out = Vec::new();
    for (dir, kind) in [
        (QEMU_CONF_DIR, GuestKind::Vm),
        (LXC_CONF_DIR, GuestKind::Ct),
    ] {
        let Ok(rd) = std::fs::read_dir(host.path(dir)) else {
            continue;
        };
        for item in rd.flatten() {
            let name = item.file_name();
            let Some(vmid) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".conf"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(item.path()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let hookscript = text
                .lines()
                .take_while(|l| !l.starts_with('['))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == "hookscript").then(|| v.trim().to_owned())
                });
            out.push(Guest {
                vmid,
                kind,
                hookscript,
            });
        }
    }
    out.sort_by_key(|g| g.vmid);
    out
}

pub fn find_guest(host: &Host, vmid: u32) -> Option<Guest> {
    guests(host).into_iter().find(|g| g.vmid == vmid)
}

// ---------------------------------------------------------------------------------------
// libvirt daemons
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// `0755`-style mode and owner of a path, for messages.
pub fn mode_owner(meta: &std::fs::Metadata) -> String {
    format!(
        "mode {:04o}, owner {}",
        meta.permissions().mode() & 0o7777,
        user_label(meta.uid())
    )
}

pub fn user_label(uid: u32) -> String {
    // /etc/passwd read directly: the static build has no NSS.
    match hookrun_core::privilege::user_by_uid(uid) {
        Some(u) if u.uid == 0 => "root".into(),
        Some(u) => format!("{} (uid {uid})", u.name),
        _ if uid == 0 => "root".into(),
        _ => format!("uid {uid}"),
    }
}

/// Quotes a path for a shell command when it needs it.
pub fn sh(p: impl AsRef<std::ffi::OsStr>) -> String {
    let s = p.as_ref().to_string_lossy();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=,@%".contains(&b))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `20261121T030000Z`, for backup names.
pub fn timestamp() -> String {
    hookrun_core::time::compact(SystemTime::now())
}

pub fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzdump_script_reads_lines_like_parse_config() {
        let text = "# comment\n#script: /x\ntmpdir: /tmp\nscript: /usr/bin/a\n  script:/b  \r\nscript : /usr/bin/c\n";
        assert_eq!(vzdump_script(text), Some((5, "/b".into())));
        assert_eq!(vzdump_script("  #script: FILENAME\nscript:\n"), None);
    }

    #[test]
    fn section_config() {
        let text = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nnfs: nas\n\tpath /mnt/pve/nas\n\tcontent snippets\n\tcontent-dirs snippets=hooks/sn\n";
        let s = sections(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, "nfs");
        assert_eq!(s[1].get("path"), Some("/mnt/pve/nas"));
    }

    #[test]
    fn snippet_volumes() {
        let st = vec![
            Storage {
                id: "local".into(),
                kind: "dir".into(),
                path: Some("/var/lib/vz".into()),
                content: vec![],
                snippets_subdir: "snippets".into(),
            },
            Storage {
                id: "lvm".into(),
                kind: "lvmthin".into(),
                path: None,
                content: vec![],
                snippets_subdir: "snippets".into(),
            },
        ];
        assert_eq!(
            snippet_path(&st, "local:snippets/hookrun"),
            Ok(PathBuf::from("/var/lib/vz/snippets/hookrun"))
        );
        assert!(snippet_path(&st, "local:snippets/a/b").is_err());
        assert!(
            snippet_path(&st, "lvm:snippets/x")
                .unwrap_err()
                .contains("no path")
        );
        assert!(
            snippet_path(&st, "nope:snippets/x")
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn resolve_follows_absolute_links_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/hookrun-vzdump"), "x").unwrap();
        std::fs::create_dir_all(root.join("mnt/s")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/hookrun-vzdump", root.join("mnt/s/hook")).unwrap();
        std::os::unix::fs::symlink("../s/hook", root.join("mnt/s/rel")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("mnt/s/loop")).unwrap();
        let host = Host {
            root: root.clone(),
            bin_dir: "/usr/bin".into(),
        };
        let want = root.join("usr/bin/hookrun-vzdump");
        assert_eq!(host.resolve(Path::new("/mnt/s/hook")).unwrap(), want);
        assert_eq!(host.resolve(Path::new("/mnt/s/rel")).unwrap(), want);
        assert!(host.resolve(Path::new("/mnt/s/loop")).is_err());
        assert_eq!(
            host.resolve(Path::new("/mnt/s/none")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            host.identify(Path::new("/mnt/s/rel"), "hookrun-vzdump")
                .kind,
            TargetKind::Installed
        );
    }
}
