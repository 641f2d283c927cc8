//! `hookrun lint`: header errors with file:line, near-miss keys and unknown phases,
//! plus the file-level problems a dispatch would refuse or skip a hook for.

use hookrun_core::discover::{self, Entry, EntryState};
use hookrun_core::lint::{Severity, lint_bytes};

use crate::cli::LintArgs;
use crate::platforms;

#[derive(Default)]
struct Tally {
    files: usize,
    errors: usize,
    warnings: usize,
}

impl Tally {
    fn report(&mut self, location: &str, severity: Severity, message: &str) {
        match severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
            Severity::Info => {}
        }
        println!("{location}: {}: {message}", severity.as_str());
    }
}

pub fn main(args: &LintArgs) -> anyhow::Result<i32> {
    if let Some(name) = &args.platform {
        platforms::validate_name(name)?;
    }
    let config = crate::load_config()?;
    let euid = nix::unistd::geteuid().as_raw();
    let mut tally = Tally::default();

    for path in &args.paths {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                tally.report(
                    &path.display().to_string(),
                    Severity::Error,
                    &format!("cannot read: {e}"),
                );
                continue;
            }
        };
        // Without --platform, the hooks directory names it (/etc/hookrun/<platform>.d);
        // the default platform's settings when it does not.
        let inferred = args
            .platform
            .is_none()
            .then(|| inferred_platform(path, meta.is_dir()))
            .flatten();
        if let Some(name) = &inferred {
            tally.report(
                &path.display().to_string(),
                Severity::Info,
                &format!("linted as a {name} hook (from the directory name; --platform overrides)"),
            );
        }
        let platform_name = args
            .platform
            .clone()
            .or(inferred.clone())
            .unwrap_or_else(|| platforms::DEFAULT.into());
        let platform = args
            .platform
            .as_deref()
            .or(inferred.as_deref())
            .map(platforms::get);
        let known = platform
            .as_ref()
            .and_then(|p| p.phases().map(|ph| (p.name(), ph)));
        let settings = config.settings_for(&platform_name);
        if meta.is_dir() {
            if settings.strict_permissions
                && let Err(e) = hookrun_core::perms::verify_dir_path(path, euid)
            {
                tally.report(&path.display().to_string(), Severity::Error, &e.to_string());
            }
            let mut entries = discover::scan(path)?;
            if let Some(rule) = platform.as_ref().and_then(|p| p.implicit()) {
                discover::apply_implicit(&mut entries, &rule);
            }
            for entry in entries {
                if !matches!(entry.state, EntryState::Ignored(_)) {
                    lint_entry(
                        &entry,
                        platform.as_deref(),
                        known,
                        settings.strict_permissions,
                        euid,
                        &mut tally,
                    );
                }
            }
        } else {
            let mut entry = [discover::inspect(path)];
            if let Some(rule) = platform.as_ref().and_then(|p| p.implicit()) {
                discover::apply_implicit(&mut entry, &rule);
            }
            let [entry] = entry;
            lint_entry(
                &entry,
                platform.as_deref(),
                known,
                settings.strict_permissions,
                euid,
                &mut tally,
            );
        }
    }
    println!(
        "{} file(s) checked: {} error(s), {} warning(s)",
        tally.files, tally.errors, tally.warnings
    );
    Ok(if tally.errors > 0 || (args.strict && tally.warnings > 0) {
        1
    } else {
        0
    })
}

/// The platform whose hooks directory `path` is (or, for a file, is in), by its name
/// or place (see [`platforms::owning_dir`]).
fn inferred_platform(path: &std::path::Path, is_dir: bool) -> Option<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = if is_dir {
        path.as_path()
    } else {
        path.parent()?
    };
    platforms::owning_dir(dir)
}

fn lint_entry(
    entry: &Entry,
    platform: Option<&dyn platforms::Platform>,
    known: Option<(&str, &[&str])>,
    strict: bool,
    euid: u32,
    tally: &mut Tally,
) {
    let shown = entry.path.display().to_string();
    tally.files += 1;
    let cand = match &entry.state {
        EntryState::Ignored(r) => {
            tally.report(
                &shown,
                Severity::Info,
                &format!("ignored by dispatches: {r}"),
            );
            return;
        }
        EntryState::Unusable(why) => {
            tally.report(&shown, Severity::Error, why);
            return;
        }
        EntryState::Candidate(c) => c,
    };
    if let Some(why) = entry.job_conflict() {
        tally.report(&shown, Severity::Error, &format!("would be refused: {why}"));
    }
    match discover::read_head(&entry.path) {
        Ok((buf, truncated)) => {
            if cand.implicit {
                let phases = cand
                    .header
                    .phases
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tally.report(
                    &shown,
                    Severity::Info,
                    &format!("no '# phases:' line, so by its name it runs as a sync hook of phase {phases}"),
                );
            }
            // A header-less file that is a hook by its name does run.
            let findings = lint_bytes(&buf, truncated, known)
                .into_iter()
                .filter(|f| !(cand.implicit && f.message.contains("never runs")));
            for f in findings {
                let loc = f
                    .line
                    .map_or_else(|| shown.clone(), |l| format!("{shown}:{l}"));
                tally.report(&loc, f.severity, &f.message);
            }
        }
        Err(e) => tally.report(&shown, Severity::Error, &format!("cannot read: {e}")),
    }
    if !cand.executable && cand.header.phases.is_some() {
        tally.report(
            &shown,
            Severity::Warning,
            &format!("not executable, so it never runs: chmod +x {shown}"),
        );
    }
    if cand.header.mode == Some(hookrun_core::Mode::Sync)
        && let Some(cb) = platform.and_then(|p| p.sync_callback(&entry.path))
    {
        tally.report(&format!("{shown}:{}", cb.line), Severity::Warning, cb.lint);
    }
    if strict && let Err(why) = hookrun_core::perms::verify_entry(entry, euid) {
        tally.report(&shown, Severity::Error, &format!("would be refused: {why}"));
    }
}

/// A script's text for a look at what it runs: at most its first 1 MiB, lossily UTF-8.
pub(crate) fn script_text(path: &std::path::Path) -> Option<String> {
    use std::io::Read as _;
    let mut text = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut text)
        .ok()?;
    Some(String::from_utf8_lossy(&text).into_owned())
}
