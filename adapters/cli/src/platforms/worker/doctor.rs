//! doctor's worker section: the cron lines that run hookrun-worker and the hooks
//! directory (containers are out of its sight).

use std::path::{Path, PathBuf};

use super::{ADAPTER, Worker};
use crate::doctor::{Doctor, Section, Severity, editor, shown};
use crate::host::Host;
use crate::platforms::Platform;

pub(super) fn doctor(p: &Worker, d: &mut Doctor<'_>) -> Section {
    let mut s = Section::new(p.name());
    let settings = d.settings(p.name());
    let dir = settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| d.host.path(p.default_hooks_dir(d.host)));
    let cron = cron_lines(d.host);
    s.in_use = !cron.is_empty() || dir.exists();
    if !s.in_use {
        s.not_in_use(
            format!(
                "no cron line runs hookrun-worker; no hooks directory {}",
                shown(&dir)
            ),
            Some("hookrun install worker".to_owned()),
        );
        return s;
    }
    for (file, line, text) in &cron {
        let place = format!("{}:{line}", shown(file));
        let program = text
            .split_whitespace()
            .find(|w| w.ends_with(ADAPTER))
            .unwrap_or(ADAPTER);
        let t = if program.starts_with('/') {
            Some(d.host.identify(Path::new(program), ADAPTER))
        } else {
            None
        };
        match t {
            Some(t) if !t.executable => s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "cron {place}: {program} leads to {}: the job fails",
                    d.describe_target(&t, ADAPTER)
                ),
                editor(file, Some(*line)),
            ),
            _ => s.ok("wiring", format!("cron {place}: {}", text.trim())),
        }
    }
    s.note(
        "wiring",
        "containers: mount the hooks at /hooks (read-only); doctor cannot see containers",
    );
    d.defaults_note(&mut s);
    d.check_hooks_dir(&mut s, p, &dir, &settings, None);
    d.dirs.insert((settings.log_dir, settings.lock_dir));
    s
}

/// Lines of the system crontabs that run hookrun-worker: (file, line, text).
fn cron_lines(host: &Host) -> Vec<(PathBuf, usize, String)> {
    let mut files = vec![host.path("/etc/crontab")];
    for d in ["/etc/cron.d", "/var/spool/cron/crontabs"] {
        if let Ok(rd) = std::fs::read_dir(host.path(d)) {
            let mut more: Vec<PathBuf> = rd.flatten().map(|i| i.path()).collect();
            more.sort();
            files.extend(more);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (i, l) in text.lines().enumerate() {
            if !l.trim_start().starts_with('#') && l.contains(ADAPTER) {
                out.push((f.clone(), i + 1, l.to_owned()));
            }
        }
    }
    out
}
