//! doctor's pve-guest section: every guest's `hookscript`, the hookrun snippets in the
//! storages' snippets directories, and the hooks directories they use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::host::{GuestKind, SNIPPET_NAME, guests, snippet_path, storages};
use super::{ADAPTER, PveGuest};
use crate::doctor::{Doctor, Section, Severity, shown};
use crate::host::{Target, TargetKind, sh};
use crate::platforms::Platform;

pub(super) fn doctor(p: &PveGuest, d: &mut Doctor<'_>) -> Section {
    let mut s = Section::new(p.name());
    let settings = d.settings(p.name());
    let adapter = ADAPTER;
    let storages = storages(d.host);
    let guests = guests(d.host);
    let want = d.host.adapter(adapter);
    // snippet host path -> (volid, guests using it, target)
    // A snippet: its volume id, the guests using it, what it leads to.
    type Snippet = (String, Vec<(GuestKind, u32)>, Target);
    let mut snippets: BTreeMap<PathBuf, Snippet> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut foreign = Vec::new();
    for g in &guests {
        let Some(volid) = &g.hookscript else {
            continue;
        };
        match snippet_path(&storages, volid) {
            Ok(path) => {
                let target = d.host.identify(&path, adapter);
                snippets
                    .entry(path)
                    .or_insert_with(|| (volid.clone(), Vec::new(), target))
                    .1
                    .push((g.kind, g.vmid));
            }
            Err(why) => broken.push((g, volid.clone(), why)),
        }
    }
    // hookrun snippets nobody uses (yet): after `hookrun install pve-guest --apply`.
    for st in &storages {
        let Some(dir) = st.snippets_dir() else {
            continue;
        };
        let Ok(rd) = std::fs::read_dir(d.host.path(&dir)) else {
            continue;
        };
        for item in rd.flatten() {
            let path = dir.join(item.file_name());
            if snippets.contains_key(&path) || item.path().is_dir() {
                continue;
            }
            let target = d.host.identify(&path, adapter);
            if target.is_hookrun() {
                let volid = format!("{}:snippets/{}", st.id, item.file_name().to_string_lossy());
                snippets.insert(path, (volid, Vec::new(), target));
            }
        }
    }

    let mut hooks_dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut used = false;
    for (path, (volid, users, target)) in &snippets {
        let real = d.host.path(path);
        let labels: Vec<String> = users
            .iter()
            .map(|(k, id)| format!("{} {id}", k.label()))
            .collect();
        let who = if users.is_empty() {
            "no guest uses it yet".to_owned()
        } else {
            format!("used by {}", labels.join(", "))
        };
        let what = format!("{volid} ({}), {who}", shown(&real));
        let is_ours = target.is_hookrun()
            || volid.contains("hookrun")
            || std::fs::read_link(&real).is_ok_and(|t| t.ends_with(adapter));
        if !is_ours && matches!(target.kind, TargetKind::Foreign) {
            if !users.is_empty() {
                foreign.push(format!("{} ({volid})", labels.join(", ")));
            }
            continue;
        }
        if is_ours && !users.is_empty() {
            used = true;
        }
        let vmids: Vec<String> = users.iter().map(|(_, id)| id.to_string()).collect();
        // A snippet that is not hookrun's and is gone: restore it, or unset it.
        let unset = users
            .iter()
            .map(|(k, id)| format!("{} set {id} --delete hookscript", k.tool()))
            .collect::<Vec<_>>()
            .join(" && ");
        let relink = if is_ours || unset.is_empty() {
            format!("ln -sfn {} {}", sh(&want), sh(&real))
        } else {
            unset
        };
        match &target.kind {
            TargetKind::Missing | TargetKind::Broken(_) => {
                let storage = volid.split(':').next().unwrap_or_default();
                let mounted = storages
                    .iter()
                    .find(|st| st.id == storage && st.is_network())
                    .map(|st| {
                        format!(
                            " ({} is a {} storage: is it mounted?)",
                            st.id, st.kind
                        )
                    })
                    .unwrap_or_default();
                let consequence = if users.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": Proxmox checks it before every start and refuses to start {}",
                        labels.join(", ")
                    )
                };
                s.fix(
                    Severity::Error,
                    "wiring",
                    format!("{what}: the snippet {}{consequence}{mounted}", Doctor::problem(target)),
                    relink,
                );
            }
            _ if !target.executable => s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{what}: the snippet is not executable: Proxmox refuses to start {}",
                    if labels.is_empty() { "guests that use it".to_owned() } else { labels.join(", ") }
                ),
                format!("chmod 0755 {}", sh(target.resolved.as_deref().unwrap_or(&real))),
            ),
            TargetKind::Installed => s.ok("wiring", format!("{what} → {}", d.describe_target(target, adapter))),
            TargetKind::Copy => s.note(
                "wiring",
                format!(
                    "{what} → {}; a copy must be replaced after every upgrade (a symlink follows it)",
                    d.describe_target(target, adapter)
                ),
            ),
            TargetKind::OtherHookrun | TargetKind::Foreign => s.fix(
                Severity::Warning,
                "wiring",
                format!("{what} → {}", d.describe_target(target, adapter)),
                format!("ln -sfn {} {}", sh(&want), sh(&real)),
            ),
        }
        if is_ours {
            let dir = d.hooks_dir_beside(Some(path), &settings, &p.default_hooks_dir(d.host));
            hooks_dirs.entry(dir).or_default().extend(vmids);
        }
    }
    for (g, volid, why) in &broken {
        s.fix(
            Severity::Error,
            "wiring",
            format!(
                "{} {}: hookscript {volid}: {why}: Proxmox refuses to start it",
                g.kind.label(),
                g.vmid
            ),
            format!("{} set {} --delete hookscript", g.kind.tool(), g.vmid),
        );
    }
    let default_dir = d.hooks_dir_beside(None, &settings, &p.default_hooks_dir(d.host));
    s.in_use = !snippets.is_empty() || !hooks_dirs.is_empty() || default_dir.exists();
    if !s.in_use {
        let why = if d.host.path("/etc/pve").exists() {
            "no guest's hookscript is hookrun, and there is no hookrun snippet".to_owned()
        } else {
            "not a Proxmox VE node (no /etc/pve)".to_owned()
        };
        s.not_in_use(
            format!("{why}; no hooks directory {}", shown(&default_dir)),
            Some("hookrun install pve-guest".to_owned()),
        );
        return s;
    }
    if !foreign.is_empty() {
        s.note(
            "wiring",
            format!(
                "guests with a hookscript that is not hookrun: {}",
                foreign.join(", ")
            ),
        );
    }
    if !used {
        let snippet = snippets.values().next().map_or_else(
            || format!("local:snippets/{}", SNIPPET_NAME),
            |v| v.0.clone(),
        );
        s.fix(
            Severity::Warning,
            "wiring",
            "no guest's hookscript is a hookrun snippet, so no hooks run for guests (set it for each guest that should have hooks; qm for VMs, pct for containers)",
            format!("qm set <vmid> --hookscript {snippet}"),
        );
    }
    d.defaults_note(&mut s);
    if hooks_dirs.is_empty() {
        hooks_dirs.insert(default_dir, Vec::new());
    }
    for (dir, vmids) in hooks_dirs {
        let missing = (!vmids.is_empty()).then(|| {
            (
                Severity::Error,
                format!(
                    "pre-start exits 78, so Proxmox refuses to start guest(s) {}",
                    vmids.join(", ")
                ),
            )
        });
        d.check_hooks_dir(&mut s, p, &dir, &settings, missing);
    }
    d.dirs.insert((settings.log_dir, settings.lock_dir));
    s
}
