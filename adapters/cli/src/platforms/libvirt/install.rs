//! `hookrun install libvirt`: the drivers' hooks directories, the
//! `/etc/libvirt/hooks/<driver>` symlinks, and the daemons to restart.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hookrun_core::config::Config;

use super::ADAPTER;
use super::host::{LIBVIRT_HOOKS_DIR, created, libvirt_daemons, owners};
use crate::cli::InstallArgs;
use crate::host::{TargetKind, sh};
use crate::install::Out;

pub(super) fn install(
    out: &mut Out<'_>,
    config: &Config,
    bin: &Path,
    args: &InstallArgs,
) -> anyhow::Result<()> {
    let host = out.host;
    let mut drivers: Vec<&str> = args.drivers.iter().map(String::as_str).collect();
    if drivers.is_empty() {
        drivers.push("qemu");
    }
    drivers.dedup();
    let dirs: Vec<(&str, PathBuf)> = drivers
        .iter()
        .map(|d| {
            let s = host.settings(config, &hookrun_libvirt::platform(d));
            let dir = s
                .hooks_dir
                .clone()
                .unwrap_or_else(|| host.path(hookrun_libvirt::default_hooks_dir(d)));
            (*d, dir)
        })
        .collect();

    out.step("The hooks directories (hooks go here, mode 0755, owned by root; never libvirt's own <driver>.d):");
    for (_, dir) in &dirs {
        out.cmd(&format!("install -d -m 0755 {}", sh(dir)));
    }
    if out.apply {
        for (_, dir) in &dirs {
            out.ensure_dir(dir)?;
        }
    }

    let hooks = host.path(LIBVIRT_HOOKS_DIR);
    if !host.path("/etc/libvirt").is_dir() {
        println!(
            "\nwarning: {} does not exist: is libvirt installed (apt install libvirt-daemon-system)?",
            host.path("/etc/libvirt").display()
        );
    }
    out.step(
        "libvirt's hook scripts: one symlink per driver (libvirt takes the driver from the name):",
    );
    out.cmd(&format!("install -d -m 0755 {}", sh(&hooks)));
    for (d, _) in &dirs {
        let link = host.path(Path::new(LIBVIRT_HOOKS_DIR).join(d));
        out.cmd(&format!("ln -s {} {}", sh(bin), sh(&link)));
    }
    let mut changed = false;
    if out.apply {
        out.ensure_dir(&hooks)?;
    }
    for (d, dir) in &dirs {
        let link_host = Path::new(LIBVIRT_HOOKS_DIR).join(d);
        let link = host.path(&link_host);
        let found = host.identify(&link_host, ADAPTER);
        if std::fs::symlink_metadata(&link).is_ok() && found.kind == TargetKind::Foreign {
            out.say(&format!(
                "{} exists and is another script: to keep it, make it a hook (mv {} {}/50-legacy, then add '# mode: sync' and '# phases: *' below its #! line)",
                link.display(),
                sh(&link),
                sh(dir)
            ));
        }
        let dotd = hooks.join(format!("{d}.d"));
        if let Ok(rd) = std::fs::read_dir(&dotd) {
            for item in rd.flatten() {
                let h = Path::new(LIBVIRT_HOOKS_DIR)
                    .join(format!("{d}.d"))
                    .join(item.file_name());
                if host.identify(&h, ADAPTER).is_hookrun() {
                    out.warn(&format!(
                        "{} is hookrun too: with both, libvirt calls hookrun twice and every hook runs twice; remove one: rm {}",
                        item.path().display(),
                        sh(item.path())
                    ));
                }
            }
        }
        if out.apply {
            changed |= out.ensure_link(
                &link,
                bin,
                &found,
                "libvirt would run hookrun instead of it",
            )?;
        }
    }

    out.step("Restart the daemon that owns each driver: libvirt looks for hook scripts only when it starts and on SIGHUP:");
    let running = libvirt_daemons(host);
    let mut restart: Vec<String> = Vec::new();
    let mut stale = false;
    for (d, _) in &dirs {
        let link = host.path(Path::new(LIBVIRT_HOOKS_DIR).join(d));
        let since = created(&link);
        let owners = running.as_deref().map(|r| owners(r, d)).unwrap_or_default();
        for o in owners {
            if !restart.contains(&o.name) {
                restart.push(o.name.clone());
            }
            if matches!((o.started, since), (Some(s), Some(l)) if l > s) || o.started.is_none() {
                stale = true;
            }
        }
    }
    match &running {
        None => {
            out.cmd("systemctl restart libvirtd");
            out.say(&format!(
                "(cannot see the running processes in {}; with modular daemons restart virtqemud for qemu, virtnetworkd for network, virtlxcd for lxc, every daemon for daemon)",
                host.path("/proc").display()
            ));
        }
        Some(_) if restart.is_empty() => {
            out.say("no libvirt daemon owning these drivers is running: it finds the hooks when it starts");
        }
        Some(_) => {
            let cmd = format!("systemctl restart {}", restart.join(" "));
            out.cmd(&cmd);
            out.say("(systemctl reload sends SIGHUP instead, which also reloads the driver's state; running guests keep running either way)");
            if out.apply {
                if !(stale || changed) {
                    out.same(&format!(
                        "{} started after the hook scripts: nothing to restart",
                        restart.join(", ")
                    ));
                } else if args.restart_daemon {
                    let status = std::process::Command::new("systemctl")
                        .arg("restart")
                        .args(&restart)
                        .status()
                        .context("cannot run systemctl")?;
                    if status.success() {
                        out.did(&format!("ran {cmd}"));
                    } else {
                        out.refuse(&format!("{cmd} failed ({status})"));
                    }
                } else {
                    out.say(&format!(
                        "not done: run '{cmd}' yourself, or add --restart-daemon"
                    ));
                }
            }
        }
    }

    out.step("Check:");
    out.cmd(&format!(
        "hookrun doctor --platform libvirt{}",
        out.root_arg()
    ));
    for (d, dir) in &dirs {
        out.cmd(&format!("hookrun lint --platform libvirt-{d} {}", sh(dir)));
    }
    Ok(())
}
