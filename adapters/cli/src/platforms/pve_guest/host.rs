//! Where the host wires guest hookscripts: the guests' configs
//! (`/etc/pve/qemu-server/<vmid>.conf`, `/etc/pve/lxc/<vmid>.conf`) and the snippets
//! directories of the storages in `/etc/pve/storage.cfg`.

use std::path::PathBuf;

use crate::host::Host;
use crate::platforms::proxmox::sections;

pub const STORAGE_CFG: &str = "/etc/pve/storage.cfg";
pub const QEMU_CONF_DIR: &str = "/etc/pve/qemu-server";
pub const LXC_CONF_DIR: &str = "/etc/pve/lxc";
/// The snippet name `hookrun install pve-guest` creates.
pub const SNIPPET_NAME: &str = "hookrun";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
