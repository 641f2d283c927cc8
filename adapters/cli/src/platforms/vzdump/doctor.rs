//! doctor's vzdump section: the `script` of vzdump.conf and of every backup job, what
//! each leads to, and the hooks directories they use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::host::{JOBS_CFG, VZDUMP_CONF, vzdump_script};
use super::{ADAPTER, Vzdump};
use crate::doctor::{Doctor, Section, Severity, shown};
use crate::host::{Target, TargetKind, sh};
use crate::platforms::Platform;
use crate::platforms::proxmox::sections;

pub(super) fn doctor(p: &Vzdump, d: &mut Doctor<'_>) -> Section {
    let mut s = Section::new(p.name());
    let settings = d.settings(p.name());
    let conf = d.host.path(VZDUMP_CONF);
    let adapter = ADAPTER;
    let want = d.host.adapter(adapter);
    // (where it is configured, value, target, fix)
    struct Wiring {
        place: String,
        script: String,
        target: Target,
        fix: String,
        force_fix: String,
    }
    let mut wirings = Vec::new();
    let mut global = false;
    match d.host.read(VZDUMP_CONF) {
        Ok(Some(text)) => {
            if let Some((line, script)) = vzdump_script(&text) {
                global = true;
                wirings.push(Wiring {
                    place: format!("{}:{line}", shown(&conf)),
                    target: d.host.identify(Path::new(&script), adapter),
                    script,
                    fix: d.install_cmd(p.family(), false),
                    force_fix: d.install_cmd(p.family(), true),
                });
            }
        }
        Ok(None) => {}
        Err(e) => s.fix(
            Severity::Error,
            "wiring",
            format!("cannot read {}: {e}", shown(&conf)),
            format!("chmod 0644 {}", sh(&conf)),
        ),
    }
    let jobs_cfg = d.host.path(JOBS_CFG);
    let mut jobs_without_script = Vec::new();
    if let Ok(Some(text)) = d.host.read(JOBS_CFG) {
        for job in sections(&text).into_iter().filter(|j| j.kind == "vzdump") {
            match job.get("script") {
                Some(script) => {
                    let fix = format!(
                        "pvesh set /cluster/backup/{} --script {}",
                        sh(&job.id),
                        sh(&want)
                    );
                    wirings.push(Wiring {
                        place: format!("backup job {} ({}:{})", job.id, shown(&jobs_cfg), job.line),
                        target: d.host.identify(Path::new(script), adapter),
                        script: script.to_owned(),
                        force_fix: fix.clone(),
                        fix,
                    });
                }
                None => jobs_without_script.push(job.id),
            }
        }
    }

    let mut hooks_dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut foreign = Vec::new();
    for w in &wirings {
        let what = format!("{}: script {}", w.place, w.script);
        let target = &w.target;
        match &target.kind {
            TargetKind::Missing | TargetKind::Broken(_) => s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{what} {}: vzdump fails every backup it runs (\"The hook script '{}' does not exist\")",
                    Doctor::problem(target),
                    w.script
                ),
                w.fix.clone(),
            ),
            _ if !target.executable => s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{what} is not executable: vzdump fails every backup it runs (\"The hook script '{}' is not executable\")",
                    w.script
                ),
                format!(
                    "chmod 0755 {}",
                    sh(target.resolved.as_deref().unwrap_or(Path::new(&w.script)))
                ),
            ),
            TargetKind::Installed => s.ok("wiring", format!("{what} → {}", d.describe_target(target, adapter))),
            TargetKind::Copy => s.note(
                "wiring",
                format!(
                    "{what} → {}; a copy must be replaced after every upgrade (a symlink follows it)",
                    d.describe_target(target, adapter)
                ),
            ),
            TargetKind::OtherHookrun => s.fix(
                Severity::Warning,
                "wiring",
                format!("{what} → {}: an older copy?", d.describe_target(target, adapter)),
                w.fix.clone(),
            ),
            TargetKind::Foreign => foreign.push(w),
        }
        if target.is_hookrun()
            || (matches!(target.kind, TargetKind::Missing) && w.script.contains("hookrun"))
        {
            let dir = d.hooks_dir_beside(
                Some(Path::new(&w.script)),
                &settings,
                &p.default_hooks_dir(d.host),
            );
            hooks_dirs.entry(dir).or_default().push(w.place.clone());
        }
    }
    let wired_jobs_note = !jobs_without_script.is_empty() && global;
    let default_dir = d.hooks_dir_beside(None, &settings, &p.default_hooks_dir(d.host));
    let wired = wirings.iter().any(|w| w.target.is_hookrun());
    s.in_use = wired || !hooks_dirs.is_empty() || default_dir.exists();
    if !s.in_use {
        let why = match foreign.first() {
            Some(w) => format!("vzdump calls {}, which is not hookrun", w.script),
            None if conf.exists() => format!("{} has no script line", shown(&conf)),
            None => format!("not a Proxmox VE node (no {})", shown(&conf)),
        };
        s.not_in_use(
            format!("{why}; no hooks directory {}", shown(&default_dir)),
            Some(d.install_cmd(p.family(), false)),
        );
        return s;
    }
    for w in foreign {
        s.fix(
            Severity::Warning,
            "wiring",
            format!(
                "{}: script {} → {}: for those backups vzdump runs it instead of hookrun, so hookrun's hooks do not run (keep the old script as a hook: copy it into the hooks directory and add '# mode: sync' and '# phases: *')",
                w.place,
                w.script,
                d.describe_target(&w.target, adapter)
            ),
            w.force_fix.clone(),
        );
    }
    if !wired {
        s.fix(
            Severity::Warning,
            "wiring",
            format!(
                "not wired: vzdump does not call hookrun-vzdump, so the hooks in {} never run",
                shown(&default_dir)
            ),
            d.install_cmd(p.family(), false),
        );
    } else if wired_jobs_note {
        s.note(
            "wiring",
            format!(
                "scheduled backup jobs without a script of their own use {}'s: {}",
                shown(&conf),
                jobs_without_script.join(", ")
            ),
        );
    }
    if !global && wired {
        s.note(
            "wiring",
            format!(
                "{} has no script line: backups outside the jobs above (manual runs, other jobs) do not call hookrun",
                shown(&conf)
            ),
        );
    }
    d.defaults_note(&mut s);
    if hooks_dirs.is_empty() {
        hooks_dirs.insert(default_dir, Vec::new());
    }
    for (dir, users) in hooks_dirs {
        let missing = (!users.is_empty()).then(|| {
            (
                Severity::Error,
                "every backup vzdump runs through it fails at job-init (exit 78)".to_owned(),
            )
        });
        d.check_hooks_dir(&mut s, p, &dir, &settings, missing);
    }
    d.dirs.insert((settings.log_dir, settings.lock_dir));
    s
}
