//! The host as `hookrun doctor` and `hookrun install` see it.
//!
//! Every host path (the platforms' configuration files, `/etc/hookrun/`, the paths in
//! `hookrun.toml`, `/proc`) is resolved under a *root* directory: `/` normally, or the
//! directory given with the hidden option `--root DIR` (for the test suite's fake host
//! trees, and for checking a mounted system image). Symlinks are followed the way a
//! process chrooted into the root would follow them: an absolute target is taken
//! relative to the root. Paths in messages are the real ones (`DIR/etc/...` under
//! `--root DIR`), so every printed command works as it is; what is *written into* host
//! files (an adapter's path, symlink targets) is the path as the host sees it.
//!
//! The adapters are expected beside the running `hookrun` binary (`/usr/bin` for the
//! packages). The hidden option `--bin-dir DIR` names another directory, as the host
//! sees it; under `--root` without `--bin-dir` it is the running binary's directory
//! when that lies inside the root, else `/usr/bin`.
//!
//! What each platform's own files say is read in its folder under `platforms/`.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use hookrun_core::config::{Config, DEFAULT_CONFIG_PATH};
use hookrun_core::{ConfigError, Settings};

use crate::cli::HostArgs;

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

    /// The host this process runs on, for the commands without `--root` (`list`, `run`).
    pub fn local() -> Host {
        Host {
            root: PathBuf::from("/"),
            bin_dir: PathBuf::from("/usr/bin"),
        }
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

    /// The adapter `name` as the host sees it (`/usr/bin/hookrun-adapter`).
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
    /// (the programs that call the adapters do not pass `HOOKRUN_CONFIG` on).
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
        // The one executable rule: the kernel's, as execve will judge it.
        let executable = hookrun_core::discover::is_executable(&resolved);
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
            .find(|p| hookrun_core::discover::is_executable(p))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_absolute_links_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/hookrun-adapter"), "x").unwrap();
        std::fs::create_dir_all(root.join("mnt/s")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/hookrun-adapter", root.join("mnt/s/hook")).unwrap();
        std::os::unix::fs::symlink("../s/hook", root.join("mnt/s/rel")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("mnt/s/loop")).unwrap();
        let host = Host {
            root: root.clone(),
            bin_dir: "/usr/bin".into(),
        };
        let want = root.join("usr/bin/hookrun-adapter");
        assert_eq!(host.resolve(Path::new("/mnt/s/hook")).unwrap(), want);
        assert_eq!(host.resolve(Path::new("/mnt/s/rel")).unwrap(), want);
        assert!(host.resolve(Path::new("/mnt/s/loop")).is_err());
        assert_eq!(
            host.resolve(Path::new("/mnt/s/none")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            host.identify(Path::new("/mnt/s/rel"), "hookrun-adapter")
                .kind,
            TargetKind::Installed
        );
    }
}
