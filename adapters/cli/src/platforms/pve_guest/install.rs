//! `hookrun install pve-guest`: the hooks directory, the snippet, and the `qm`/`pct`
//! commands that point guests at it (hookrun never edits guest configs).

use std::path::Path;

use hookrun_core::config::Config;

use super::host::{LXC_CONF_DIR, QEMU_CONF_DIR, SNIPPET_NAME, STORAGE_CFG, find_guest, storages};
use super::{ADAPTER, PveGuest};
use crate::cli::InstallArgs;
use crate::host::sh;
use crate::install::Out;
use crate::platforms::{Platform, hooks_dir_beside};
use crate::{EXIT_USAGE, Exit};

pub(super) fn install(
    p: &PveGuest,
    out: &mut Out<'_>,
    config: &Config,
    bin: &Path,
    args: &InstallArgs,
) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, p.name());
    let storages = storages(host);
    let sid = args.storage.as_deref().unwrap_or("local");
    let with_path: Vec<&str> = storages
        .iter()
        .filter(|s| s.path.is_some())
        .map(|s| s.id.as_str())
        .collect();
    let Some(storage) = storages.iter().find(|s| s.id == sid) else {
        return Err(Exit::error(
            EXIT_USAGE,
            format!(
                "storage '{sid}' is not in {} (storages with a path: {})",
                host.path(STORAGE_CFG).display(),
                with_path.join(", ")
            ),
        ));
    };
    let Some(snippets) = storage.snippets_dir() else {
        return Err(Exit::error(
            EXIT_USAGE,
            format!(
                "storage '{sid}' ({}) has no path, so it cannot hold snippets; pick one of: {}",
                storage.kind,
                with_path.join(", ")
            ),
        ));
    };
    let snippet = snippets.join(SNIPPET_NAME);
    let volid = format!("{sid}:snippets/{}", SNIPPET_NAME);
    let dir = hooks_dir_beside(host, &settings, Some(&snippet), &p.default_hooks_dir(host));

    out.step("The hooks directory (hooks go here, mode 0755, owned by root):");
    out.cmd(&format!("install -d -m 0755 {}", sh(&dir)));
    if out.apply {
        out.ensure_dir(&dir)?;
    }

    if !storage.content.iter().any(|c| c == "snippets") {
        out.step(&format!(
            "Enable the snippets content type on storage {sid} (storage.cfg is cluster-wide: hookrun never edits it):"
        ));
        let mut content = storage.content.clone();
        content.push("snippets".into());
        out.cmd(&format!("pvesm set {sid} --content {}", content.join(",")));
    }

    let real_snippets = host.path(&snippets);
    let mounted = storage.path.as_ref().is_some_and(|p| host.path(p).is_dir());
    out.step(&format!(
        "The snippet: a symlink to hookrun-pve-guest in the snippets directory of storage {sid}:"
    ));
    out.cmd(&format!("install -d -m 0755 {}", sh(&real_snippets)));
    out.cmd(&format!("ln -s {} {}", sh(bin), sh(host.path(&snippet))));
    if storage.is_network() {
        out.warn(&format!(
            "{sid} is a {} storage: Proxmox checks the snippet before every start without mounting it, so while it is not mounted no guest using it starts; prefer local storage",
            storage.kind
        ));
    }
    out.say("do this (and install hookrun and the hooks) on every node the guests may run on");
    if out.apply {
        if storage.is_network() && !mounted {
            out.refuse(&format!(
                "storage {sid} is not mounted at {}: mount it first (nothing is written onto the mount point)",
                storage.path.as_ref().map(|p| host.path(p).display().to_string()).unwrap_or_default()
            ));
        } else {
            out.ensure_dir(&real_snippets)?;
            let found = host.identify(&snippet, ADAPTER);
            out.ensure_link(
                &host.path(&snippet),
                bin,
                &found,
                "guests using it would run hookrun instead",
            )?;
        }
    }

    out.step("Point each guest at the snippet (run these yourself: hookrun never edits guest configs; only root@pam may set hookscript):");
    if args.vmids.is_empty() {
        out.cmd(&format!("qm set <vmid> --hookscript {volid}     # a VM"));
        out.cmd(&format!(
            "pct set <vmid> --hookscript {volid}    # a container"
        ));
    }
    for vmid in &args.vmids {
        match find_guest(host, *vmid) {
            Some(g) if g.hookscript.as_deref() == Some(volid.as_str()) => {
                out.say(&format!("{} {vmid} already uses {volid}", g.kind.label()));
            }
            Some(g) => {
                out.cmd(&format!(
                    "{} set {vmid} --hookscript {volid}",
                    g.kind.tool()
                ));
                if let Some(old) = &g.hookscript {
                    out.say(&format!(
                        "(replaces its hookscript {old}: to keep it, make it a hook in {})",
                        dir.display()
                    ));
                }
            }
            None => {
                out.say(&format!(
                    "guest {vmid} is not on this node (no {}/{vmid}.conf or {}/{vmid}.conf); on its node:",
                    QEMU_CONF_DIR,
                    LXC_CONF_DIR
                ));
                out.cmd(&format!("qm set {vmid} --hookscript {volid}     # a VM"));
                out.cmd(&format!(
                    "pct set {vmid} --hookscript {volid}    # a container"
                ));
            }
        }
    }

    out.step("Check:");
    out.cmd(&format!(
        "hookrun doctor --platform pve-guest{}",
        out.root_arg()
    ));
    out.cmd(&format!(
        "hookrun list --platform pve-guest --phase pre-start --object <vmid> --hooks-dir {}",
        sh(&dir)
    ));
    Ok(())
}
