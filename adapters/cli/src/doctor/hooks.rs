//! A hooks directory and every hook in it, judged as a dispatch would.

use std::path::Path;

use hookrun_core::discover::{self, Entry, EntryState};
use hookrun_core::lint::{self, lint_bytes};
use hookrun_core::perms::{self, PermError};
use hookrun_core::{Mode, Settings};

use super::report::{Finding, Section, Severity};
use super::{ContribUse, Doctor, MkJobUse, editor, install_d, shown};
use crate::host::{self, sh};
use crate::platforms::Platform;

impl Doctor<'_> {
    /// Checks a hooks directory and every file in it. `missing`: how bad it is when the
    /// directory does not exist, and what happens then (`None`: nothing happens).
    pub(crate) fn check_hooks_dir(
        &mut self,
        s: &mut Section,
        platform: &dyn Platform,
        dir: &Path,
        settings: &Settings,
        missing: Option<(Severity, String)>,
    ) {
        let uid = if platform.hooks_run_as_caller() {
            nix::unistd::geteuid().as_raw()
        } else {
            0
        };
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match missing {
                    Some((sev, what)) => s.fix(
                        sev,
                        "hooks dir",
                        format!("{} does not exist: {what}", shown(dir)),
                        install_d(dir),
                    ),
                    None => s.fix(
                        Severity::Note,
                        "hooks dir",
                        format!("{} does not exist: no hooks run", shown(dir)),
                        install_d(dir),
                    ),
                }
                return;
            }
            Err(e) => {
                s.fix(
                    Severity::Error,
                    "hooks dir",
                    format!("cannot inspect {}: {e}", shown(dir)),
                    format!("ls -ld {}", sh(dir)),
                );
                return;
            }
        };
        if !meta.is_dir() {
            s.fix(
                Severity::Error,
                "hooks dir",
                format!("{} is not a directory: no hooks run", shown(dir)),
                format!("mv {0} {0}.old && {1}", sh(dir), install_d(dir)),
            );
            return;
        }
        let entries = match discover::scan(dir) {
            Ok(mut e) => {
                if let Some(rule) = platform.implicit() {
                    discover::apply_implicit(&mut e, &rule);
                }
                e
            }
            Err(e) => {
                s.fix(
                    Severity::Error,
                    "hooks dir",
                    format!("{e}: no hooks run"),
                    format!("chmod 0755 {}", sh(dir)),
                );
                return;
            }
        };
        let mut dir_refused = false;
        if settings.strict_permissions {
            if let Err(e) = perms::verify_dir_path(dir, uid) {
                s.findings.push(refusal(
                    "hooks dir",
                    &e,
                    |problem| format!("{problem}: every hook in it is refused"),
                    format!("chmod 0755 {}", sh(dir)),
                ));
                dir_refused = true;
            }
        } else {
            s.note(
                "hooks dir",
                format!("strict_permissions is off for {}: hooks and the directory are not checked for who can change them", platform.name()),
            );
        }
        if !dir_refused {
            let runnable = entries
                .iter()
                .filter(|e| e.candidate().is_some_and(|c| c.header.phases.is_some()))
                .count();
            s.ok(
                "hooks dir",
                format!(
                    "{}: {}; {} file(s), {runnable} with '# phases:'",
                    shown(dir),
                    host::mode_owner(&meta),
                    entries.len()
                ),
            );
        }
        if entries.is_empty() {
            s.note("hooks", format!("{} is empty: no hooks yet", shown(dir)));
        }
        let known = platform.phases();
        for e in &entries {
            self.check_entry(s, platform, known, e, settings, uid, dir_refused);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_entry(
        &mut self,
        s: &mut Section,
        platform: &dyn Platform,
        known: Option<&'static [&'static str]>,
        e: &Entry,
        settings: &Settings,
        uid: u32,
        dir_refused: bool,
    ) {
        let subject = format!("hook {}", e.display_name());
        let path = &e.path;
        let cand = match &e.state {
            EntryState::Ignored(r) => {
                s.note(&subject, format!("ignored ({r})"));
                return;
            }
            EntryState::Unusable(why) => {
                s.fix(
                    Severity::Warning,
                    &subject,
                    format!(
                        "{}: {why}; it is not run, and every dispatch reports it",
                        shown(path)
                    ),
                    format!("mv {} {}.disabled", sh(path), sh(path)),
                );
                return;
            }
            EntryState::Candidate(c) => c,
        };
        let h = &cand.header;
        if let Some(why) = e.job_conflict() {
            s.fix(
                Severity::Error,
                &subject,
                format!("{why}; every dispatch refuses it"),
                format!("mv {} {}.disabled", sh(path), sh(path)),
            );
        }
        let (buf, truncated) = discover::read_head(path).unwrap_or_default();
        let findings: Vec<lint::Finding> =
            lint_bytes(&buf, truncated, known.map(|k| (platform.name(), k)))
                .into_iter()
                .filter(|f| !(cand.implicit && f.message.contains("never runs")))
                .collect();
        let located = |f: &lint::Finding| match f.line {
            Some(l) => format!("{}:{l}: {}", shown(path), f.message),
            None => format!("{}: {}", shown(path), f.message),
        };
        if h.phases.is_none() && !h.phases_invalid {
            // Never runs; only near misses (`# phase:`) matter, because they say it was
            // meant to.
            let mut near = false;
            for f in findings
                .iter()
                .filter(|f| f.severity == lint::Severity::Warning && f.line.is_some())
            {
                near = true;
                s.fix(
                    Severity::Warning,
                    &subject,
                    located(f),
                    editor(path, f.line),
                );
            }
            if !near {
                s.note(&subject, "never runs: no '# phases:' line");
            }
            return;
        }
        let mut clean = true;
        for f in &findings {
            let sev = match f.severity {
                lint::Severity::Error => Severity::Error,
                lint::Severity::Warning => Severity::Warning,
                lint::Severity::Info => continue,
            };
            clean = false;
            let consequence = if f.severity == lint::Severity::Error {
                "; the hook is refused (a failure) wherever it would run"
            } else {
                ""
            };
            s.fix(
                sev,
                &subject,
                format!("{}{consequence}", located(f)),
                editor(path, f.line),
            );
        }
        if !cand.executable {
            clean = false;
            s.fix(
                Severity::Warning,
                &subject,
                format!(
                    "asks for {} but is not executable, so it is not run (or rename it to {}.disabled if it is meant to be off)",
                    phases(h),
                    e.display_name()
                ),
                format!("chmod +x {}", sh(path)),
            );
        } else if settings.strict_permissions
            && !dir_refused
            && let Err(err) = perms::verify_entry(e, uid)
        {
            clean = false;
            s.findings.push(refusal(
                &subject,
                &err,
                |problem| format!("refused (a failure wherever it would run): {problem}"),
                format!("mv {} {}.disabled", sh(path), sh(path)),
            ));
        }
        if h.mode == Some(Mode::Sync)
            && let Some(cb) = platform.sync_callback(path)
        {
            clean = false;
            s.fix(
                Severity::Warning,
                &subject,
                format!("{}:{}: {}", shown(path), cb.line, cb.doctor),
                editor(path, Some(cb.line)),
            );
        }
        // What the hooks need (Checkmk, gpg) is checked for every hook that would run
        // once its own problems are fixed.
        if cand.executable && h.errors.is_empty() {
            if h.mk_job {
                self.mk_jobs.push(MkJobUse {
                    hook: path.clone(),
                    mode: settings.mk_job,
                    dir: settings.mk_job_dir.clone(),
                });
            }
            if let Some(c) = contrib_use(path) {
                self.contrib.push(c);
            }
        }
        let how = describe(h, settings, known, platform);
        if clean && dir_refused {
            s.note(
                &subject,
                format!(
                    "refused with its directory (above); otherwise it runs in {}: {how}",
                    phases(h)
                ),
            );
        } else if clean {
            s.ok(&subject, format!("runs in {}: {how}", phases(h)));
        }
    }
}

fn phases(h: &hookrun_core::header::Header) -> String {
    match &h.phases {
        Some(hookrun_core::header::Phases::All) => "every phase".into(),
        Some(p) => p.to_string(),
        None => "-".into(),
    }
}

fn describe(
    h: &hookrun_core::header::Header,
    settings: &Settings,
    known: Option<&'static [&'static str]>,
    platform: &dyn Platform,
) -> String {
    let mut parts = vec![h.mode_or_default().to_string()];
    match h.on_error {
        Some(o) => parts.push(format!("on-error {o}")),
        None => {
            // The platform's default, per phase where it differs.
            let default = |phase: &str| platform.default_on_error(phase);
            let list: Vec<String> = match (&h.phases, known) {
                (Some(hookrun_core::header::Phases::List(l)), _) => l.clone(),
                (_, Some(k)) => k.iter().map(|p| (*p).to_owned()).collect(),
                _ => Vec::new(),
            };
            let each: Vec<(String, hookrun_core::OnError)> = list
                .into_iter()
                .map(|p| {
                    let o = default(&p);
                    (p, o)
                })
                .collect();
            match each.first() {
                Some((_, first)) if each.iter().all(|(_, o)| o == first) => {
                    parts.push(format!("on-error {first} (platform default)"));
                }
                Some(_) => {
                    let by: Vec<String> = each.iter().map(|(p, o)| format!("{p} {o}")).collect();
                    parts.push(format!("on-error {} (platform defaults)", by.join(", ")));
                }
                None => parts.push(format!("on-error {} (platform default)", default("-"))),
            }
        }
    }
    match (h.timeout, settings.default_timeout) {
        (Some(t), _) => parts.push(format!("timeout {}s", t.as_secs())),
        (None, Some(t)) => parts.push(format!("timeout {}s (config)", t.as_secs())),
        (None, None) => parts.push("no timeout".into()),
    }
    if let Some(l) = &h.lock {
        parts.push(format!("lock {l}"));
    }
    if h.mk_job {
        parts.push("mk-job".into());
    }
    if let Some(o) = &h.objects {
        let o: Vec<String> = o.iter().map(ToString::to_string).collect();
        parts.push(format!("objects {}", o.join(" ")));
    }
    parts.join(", ")
}

/// A hook that runs `hookrun-copy-encrypt-retain` (the contrib drop-in, or one of its
/// own), and whether it encrypts.
fn contrib_use(path: &Path) -> Option<ContribUse> {
    let text = crate::lint::script_text(path)?;
    let line = text
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains("hookrun-copy-encrypt-retain"))?;
    let program = line
        .split_whitespace()
        .find(|w| w.ends_with("hookrun-copy-encrypt-retain"))
        .unwrap_or("hookrun-copy-encrypt-retain")
        .trim_matches(['"', '\''])
        .to_owned();
    Some(ContribUse {
        hook: path.to_owned(),
        program,
        needs_gpg: !line.contains("--no-encrypt"),
    })
}

/// A permission refusal as an error finding: core's problem put in context by
/// `message`, and core's fix on a line of its own — `fallback` where core's remedy is a
/// decision rather than a command.
fn refusal(
    subject: &str,
    e: &PermError,
    message: impl FnOnce(&str) -> String,
    fallback: String,
) -> Finding {
    Finding {
        severity: Severity::Error,
        subject: subject.to_owned(),
        message: message(&e.problem()),
        fix: Some(e.fix().unwrap_or(fallback)),
    }
}

#[cfg(test)]
mod tests {
    use hookrun_core::perms::Subject;

    use super::*;

    #[test]
    fn a_typed_refusal_renders_its_problem_and_its_fix_apart() {
        let e = PermError::Writable {
            what: Subject::Directory,
            path: "/x".into(),
            who: "its group",
        };
        let f = refusal(
            "hooks dir",
            &e,
            |p| format!("{p}: every hook in it is refused"),
            "chmod 0755 /x".into(),
        );
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(
            f.message,
            "directory /x is writable by its group, so anyone there could run code as root: every hook in it is refused"
        );
        assert_eq!(f.fix.as_deref(), Some("chmod go-w /x"));

        // No command to offer: the caller's own remedy.
        let e = PermError::NotADirectory {
            path: "/x".into(),
            wanted: "/x/y".into(),
        };
        let f = refusal(
            "hook y",
            &e,
            |p| format!("refused: {p}"),
            "mv /x/y /x/y.disabled".into(),
        );
        assert_eq!(f.message, format!("refused: {e}"));
        assert_eq!(f.fix.as_deref(), Some("mv /x/y /x/y.disabled"));
    }
}
