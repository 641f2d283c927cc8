//! doctor's libvirt sections, one per driver: `/etc/libvirt/hooks/<driver>` and
//! libvirt's own `<driver>.d`, whether the daemon that owns the driver has seen the
//! hook, and the driver's hooks directory.

use std::path::Path;
use std::time::SystemTime;

use super::host::{LIBVIRT_HOOKS_DIR, created, modular_daemon, owners};
use super::{ADAPTER, Libvirt};
use crate::doctor::{Doctor, Section, Severity, shown};
use crate::host::{TargetKind, sh};
use crate::platforms::Platform;

pub(super) fn doctor(p: &Libvirt, d: &mut Doctor<'_>) -> Section {
    let driver = p.driver;
    let mut s = Section::new(p.name());
    let settings = d.settings(p.name());
    let adapter = ADAPTER;
    let want = d.host.adapter(adapter);
    let link_host = Path::new(LIBVIRT_HOOKS_DIR).join(driver);
    let link = d.host.path(&link_host);
    let link_exists = std::fs::symlink_metadata(&link).is_ok();
    let target = d.host.identify(&link_host, adapter);
    let dotd_host = Path::new(LIBVIRT_HOOKS_DIR).join(format!("{driver}.d"));
    let dotd = d.host.path(&dotd_host);
    // libvirt runs every executable regular file in <driver>.d itself.
    let mut dotd_hookrun = Vec::new();
    let mut dotd_foreign = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dotd) {
        let mut names: Vec<_> = rd.flatten().map(|i| i.file_name()).collect();
        names.sort();
        for name in names {
            let h = dotd_host.join(&name);
            let t = d.host.identify(&h, adapter);
            if !t.executable {
                continue;
            }
            if t.is_hookrun() {
                dotd_hookrun.push(d.host.path(&h));
            } else {
                dotd_foreign.push(name.to_string_lossy().into_owned());
            }
        }
    }
    let wired_main = link_exists && target.is_hookrun();
    let dangling =
        link_exists && matches!(target.kind, TargetKind::Missing | TargetKind::Broken(_));
    let hooks_dir = settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| d.host.path(p.default_hooks_dir(d.host)));
    let wired = wired_main || !dotd_hookrun.is_empty() || dangling;
    s.in_use = wired || hooks_dir.exists();
    let restart = format!("systemctl restart {}", owner_names(p, d).join(" "));
    if !s.in_use {
        let mut why = if link_exists {
            format!("{} is another script, not hookrun", shown(&link))
        } else {
            format!("no {}", shown(&link))
        };
        if !d.host.path("/etc/libvirt").exists() {
            why = "libvirt is not installed (no /etc/libvirt)".into();
        }
        s.not_in_use(
            format!("{why}; no hooks directory {}", shown(&hooks_dir)),
            Some(format!("hookrun install libvirt --driver {driver}")),
        );
        return s;
    }
    let link_fix = format!("ln -sfn {} {}", sh(&want), sh(&link));
    if link_exists {
        let what = if target.resolved.as_deref() == Some(link.as_path()) {
            format!("{} is a script of its own", shown(&link))
        } else {
            format!("{} → {}", shown(&link), d.describe_target(&target, adapter))
        };
        match &target.kind {
            TargetKind::Missing | TargetKind::Broken(_) => s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{} (→ {}) {}: libvirt ignores it, so no hook runs for {driver}",
                    shown(&link),
                    std::fs::read_link(&link).map(|t| t.display().to_string()).unwrap_or_default(),
                    Doctor::problem(&target)
                ),
                link_fix.clone(),
            ),
            _ if !target.executable => s.fix(
                Severity::Error,
                "wiring",
                format!("{what} is not executable: libvirt ignores it, so no hook runs for {driver}"),
                format!("chmod 0755 {}", sh(target.resolved.as_deref().unwrap_or(&link))),
            ),
            TargetKind::Installed => s.ok("wiring", what),
            TargetKind::Copy => s.note(
                "wiring",
                format!("{what}; a copy must be replaced after every upgrade (a symlink follows it)"),
            ),
            TargetKind::OtherHookrun => s.fix(Severity::Warning, "wiring", what, link_fix.clone()),
            TargetKind::Foreign => s.fix(
                Severity::Warning,
                "wiring",
                format!(
                    "{what}: libvirt runs that script, and the hooks in {} never run (to keep it, move it to {}/50-legacy and add '# mode: sync' and '# phases: *' below its #! line; --force keeps a backup)",
                    shown(&hooks_dir),
                    shown(&hooks_dir)
                ),
                format!("hookrun install libvirt --driver {driver} --apply --force{}", d.root_arg()),
            ),
        }
    } else if dotd_hookrun.is_empty() {
        s.fix(
            Severity::Warning,
            "wiring",
            format!(
                "not wired: there is no {}, so the hooks in {} never run",
                shown(&link),
                shown(&hooks_dir)
            ),
            format!(
                "hookrun install libvirt --driver {driver} --apply{}",
                d.root_arg()
            ),
        );
    }
    for d in &dotd_hookrun {
        if wired_main {
            s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{} is hookrun too: libvirt calls both it and {}, so every hook runs twice",
                    shown(d),
                    shown(&link)
                ),
                format!("rm {}", sh(d)),
            );
        } else {
            s.ok(
                "wiring",
                format!("{} → hookrun-libvirt (from libvirt's {driver}.d)", shown(d)),
            );
        }
    }
    if !dotd_foreign.is_empty() {
        s.note(
            "wiring",
            format!(
                "libvirt itself runs these files in {} for every {driver} event, after {}; hookrun does not manage them: {}",
                shown(&dotd),
                shown(&link),
                dotd_foreign.join(", ")
            ),
        );
    }
    if wired_main || !dotd_hookrun.is_empty() {
        let since = if wired_main {
            created(&link)
        } else {
            dotd_hookrun.iter().filter_map(|d| created(d)).max()
        };
        daemon_check(p, d, &mut s, since, &restart);
    }
    if !d.host.path("/etc/libvirt").exists() {
        s.note(
            "wiring",
            "libvirt does not seem to be installed (no /etc/libvirt)",
        );
    }
    d.defaults_note(&mut s);
    let missing = wired.then(|| {
        (
            Severity::Error,
            format!(
                "the {driver} operations libvirt lets a hook abort (e.g. a VM's prepare/start) fail with exit 78"
            ),
        )
    });
    d.check_hooks_dir(&mut s, p, &hooks_dir, &settings, missing);
    d.dirs.insert((settings.log_dir, settings.lock_dir));
    s
}

/// The daemons that would run the driver's hook, by name (running ones first).
fn owner_names(p: &Libvirt, d: &Doctor<'_>) -> Vec<String> {
    let driver = p.driver;
    if let Some(running) = p.daemons(d.host) {
        let owners = owners(running, driver);
        if !owners.is_empty() {
            let mut names: Vec<String> = owners.iter().map(|d| d.name.clone()).collect();
            names.dedup();
            return names;
        }
    }
    vec!["libvirtd".into()]
}

/// Whether the daemons owning `driver` started after the hook appeared (A5: libvirt
/// looks for hook scripts at start and on SIGHUP only).
fn daemon_check(
    p: &Libvirt,
    d: &Doctor<'_>,
    s: &mut Section,
    since: Option<SystemTime>,
    restart: &str,
) {
    let driver = p.driver;
    let modular = modular_daemon(driver)
        .map(|m| format!("libvirtd or {m}"))
        .unwrap_or_else(|| "every libvirt daemon".into());
    let Some(running) = p.daemons(d.host) else {
        s.fix(
            Severity::Note,
            "daemon",
            format!(
                "cannot see the running processes ({} is not readable{}): libvirt looks for hook scripts only when its daemon starts or gets SIGHUP, so restart the daemon that owns {driver} ({modular}) if you added the link since it started",
                shown(&d.host.path("/proc")),
                if d.host.is_real() { "" } else { "; process detection is skipped for this --root" }
            ),
            restart.to_owned(),
        );
        return;
    };
    let owners = owners(running, driver);
    if owners.is_empty() {
        s.note(
            "daemon",
            format!("no daemon owning the {driver} driver ({modular}) is running: it finds the hook when it starts"),
        );
        return;
    }
    for daemon in owners {
        let fix = format!("systemctl restart {}", daemon.name);
        match (daemon.started, since) {
            (Some(started), Some(link)) if link > started => s.fix(
                Severity::Warning,
                "daemon",
                format!(
                    "{} (pid {}) started at {}, before the hook appeared ({}): it does not call the hook until it is restarted or gets SIGHUP",
                    daemon.name,
                    daemon.pid,
                    hookrun_core::time::rfc3339(started),
                    hookrun_core::time::rfc3339(link)
                ),
                fix,
            ),
            (Some(started), Some(_)) => s.ok(
                "daemon",
                format!(
                    "{} (pid {}) started at {}, after the hook appeared: it calls it",
                    daemon.name,
                    daemon.pid,
                    hookrun_core::time::rfc3339(started)
                ),
            ),
            _ => s.fix(
                Severity::Note,
                "daemon",
                format!(
                    "{} (pid {}) is running; cannot tell when it started: restart it if you added the hook since it started",
                    daemon.name, daemon.pid
                ),
                fix,
            ),
        }
    }
}
