//! `hookrun list`: what a dispatch would do, entry by entry, with the reason for each
//! file that does not run. `hookrun run --dry-run` prints the same plan.

use std::fmt::Write as _;
use std::path::Path;

use hookrun_core::discover::{self, Entry, EntryState, Verdict};
use hookrun_core::header::Header;
use hookrun_core::{OnError, Settings};

use crate::cli::ListArgs;
use crate::host::Host;
use crate::platforms;

pub fn main(args: &ListArgs) -> anyhow::Result<i32> {
    platforms::validate_name(&args.platform)?;
    let config = crate::load_config()?;
    let settings = config.settings_for(&args.platform);
    let platform = platforms::get(&args.platform);
    let dir = match &args.hooks_dir {
        Some(d) => d.clone(),
        None => hookrun_core::resolve_hooks_dir(
            &settings,
            None,
            &platform.default_hooks_dir(&Host::local()),
        ),
    };
    let mut entries = discover::scan(&dir)?;
    if let Some(rule) = platform.implicit() {
        discover::apply_implicit(&mut entries, &rule);
    }
    let text = match &args.phase {
        Some(phase) => plan(
            &settings,
            &dir,
            &entries,
            phase,
            args.object.as_deref(),
            platform.default_on_error(phase),
        ),
        None => inventory(&settings, &dir, &entries, &args.platform),
    };
    print!("{text}");
    Ok(0)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn dir_problem(settings: &Settings, dir: &Path) -> Option<String> {
    if settings.strict_permissions {
        hookrun_core::perms::verify_dir_path(dir, euid())
            .err()
            .map(|e| e.to_string())
    } else {
        None
    }
}

/// Why `strict_permissions` refuses the hook, as one line: the whole message, fix
/// included.
fn refusal(e: &Entry) -> Option<String> {
    hookrun_core::perms::verify_entry(e, euid())
        .err()
        .map(|e| e.to_string())
}

fn width(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| e.display_name().chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 40)
}

/// The plan of a dispatch of `phase` for `object`.
pub fn plan(
    settings: &Settings,
    dir: &Path,
    entries: &[Entry],
    phase: &str,
    object: Option<&str>,
    default_on_error: OnError,
) -> String {
    let mut out = String::new();
    let _ = write!(out, "hooks directory {} — phase {phase}", dir.display());
    if let Some(o) = object {
        let _ = write!(out, ", object {o}");
    }
    out.push('\n');
    let dir_refusal = dir_problem(settings, dir);
    if let Some(why) = &dir_refusal {
        let _ = writeln!(out, "REFUSED  (directory)  {why}");
    }
    let w = width(entries);
    let (mut runs, mut problems) = (0, 0);
    for e in entries {
        let name = e.display_name();
        let (status, detail) = match e.verdict(phase, object) {
            Verdict::Run => {
                let c = e.candidate().expect("runs are candidates");
                let refusal = e
                    .job_conflict()
                    .or_else(|| dir_refusal.clone())
                    .or_else(|| settings.strict_permissions.then(|| refusal(e)).flatten());
                match refusal {
                    Some(why) => {
                        problems += 1;
                        ("REFUSED", why)
                    }
                    None => {
                        runs += 1;
                        ("RUN", describe_run(&c.header, settings, default_on_error))
                    }
                }
            }
            Verdict::Ignored(r) => ("skip", r.to_string()),
            Verdict::NoPhases => ("skip", "no '# phases:' line (never runs)".into()),
            Verdict::OtherPhase => (
                "skip",
                format!("not for {phase} (phases: {})", phases_of(e)),
            ),
            Verdict::OtherObject => (
                "skip",
                format!(
                    "not for object {} (objects: {})",
                    object.unwrap_or("(none)"),
                    objects_of(e)
                ),
            ),
            Verdict::NotExecutable => {
                problems += 1;
                (
                    "WARN",
                    format!(
                        "would run but is not executable: chmod +x {}",
                        e.path.display()
                    ),
                )
            }
            Verdict::HeaderInvalid => {
                problems += 1;
                let h = &e.candidate().expect("candidate").header;
                let errs: Vec<String> = h.errors.iter().map(ToString::to_string).collect();
                (
                    "ERROR",
                    format!("refused, invalid header: {}", errs.join("; ")),
                )
            }
            Verdict::Unusable => {
                problems += 1;
                ("WARN", unusable(e))
            }
        };
        let _ = writeln!(out, "{status:<8} {name:<w$}  {detail}");
    }
    let _ = writeln!(out, "{runs} hook(s) would run; {problems} problem(s)");
    out
}

fn describe_run(h: &Header, settings: &Settings, default_on_error: OnError) -> String {
    let mut parts = vec![h.mode_or_default().to_string()];
    match h.on_error {
        Some(o) => parts.push(format!("on-error {o}")),
        None => parts.push(format!("on-error {default_on_error} (platform default)")),
    }
    match (h.timeout, settings.default_timeout) {
        (Some(t), _) => parts.push(format!("timeout {}s", t.as_secs())),
        (None, Some(t)) => parts.push(format!("timeout {}s (config default)", t.as_secs())),
        (None, None) => parts.push("no timeout".into()),
    }
    if let Some(l) = &h.lock {
        parts.push(format!("lock {l}"));
    }
    if h.mk_job {
        parts.push("mk-job".into());
    }
    if h.objects.is_some() {
        parts.push(format!("objects {}", objects_of_header(h)));
    }
    parts.extend(privilege_of(h));
    parts.join(", ")
}

/// `nice 19`, `io-class idle`, `user nobody (uid 65534, gid 65534)`: the keys of
/// `hookrun_core::privilege`, as they will be applied.
fn privilege_of(h: &Header) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(n) = h.nice {
        parts.push(format!("nice {n}"));
    }
    if let Some(c) = h.io_class {
        parts.push(format!("io-class {c}"));
    }
    if let Some(u) = &h.user {
        parts.push(format!("user {} (uid {}, gid {})", u.name, u.uid, u.gid));
    }
    parts
}

fn phases_of(e: &Entry) -> String {
    e.candidate()
        .and_then(|c| c.header.phases.as_ref())
        .map_or_else(|| "-".into(), ToString::to_string)
}

fn objects_of_header(h: &Header) -> String {
    h.objects.as_ref().map_or_else(
        || "all".into(),
        |o| {
            o.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn objects_of(e: &Entry) -> String {
    e.candidate()
        .map_or_else(|| "all".into(), |c| objects_of_header(&c.header))
}

fn unusable(e: &Entry) -> String {
    match &e.state {
        EntryState::Unusable(why) => why.clone(),
        _ => String::new(),
    }
}

/// Every entry with its header, for `hookrun list` without `--phase`.
fn inventory(settings: &Settings, dir: &Path, entries: &[Entry], platform: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hooks directory {} (platform {platform})",
        dir.display()
    );
    if let Some(why) = dir_problem(settings, dir) {
        let _ = writeln!(out, "REFUSED  (directory)  {why}");
    }
    let w = width(entries);
    for e in entries {
        let name = e.display_name();
        let (status, detail) = match &e.state {
            EntryState::Ignored(r) => ("skip", r.to_string()),
            EntryState::Unusable(why) => ("WARN", why.clone()),
            EntryState::Candidate(c) => {
                let h = &c.header;
                if !h.errors.is_empty() {
                    let errs: Vec<String> = h.errors.iter().map(ToString::to_string).collect();
                    ("ERROR", format!("invalid header: {}", errs.join("; ")))
                } else if h.phases.is_none() {
                    ("skip", "no '# phases:' line (never runs)".into())
                } else if !c.executable {
                    (
                        "WARN",
                        format!("not executable: chmod +x {}", e.path.display()),
                    )
                } else if let Some(why) = e
                    .job_conflict()
                    .or_else(|| settings.strict_permissions.then(|| refusal(e)).flatten())
                {
                    ("REFUSED", why)
                } else {
                    let mut d = format!("phases: {}; {}", phases_of(e), h.mode_or_default());
                    if let Some(o) = h.on_error {
                        let _ = write!(d, ", on-error {o}");
                    }
                    if let Some(t) = h.timeout {
                        let _ = write!(d, ", timeout {}s", t.as_secs());
                    }
                    if h.objects.is_some() {
                        let _ = write!(d, ", objects {}", objects_of_header(h));
                    }
                    for p in privilege_of(h) {
                        let _ = write!(d, ", {p}");
                    }
                    ("hook", d)
                }
            }
        };
        let _ = writeln!(out, "{status:<8} {name:<w$}  {detail}");
    }
    out
}
