//! `hookrun-retain DIR PATTERN [options]`: the retention engine as a tool, a drop-in for
//! thk-systems `retentions` (same flags, same decisions, same output shape and exit
//! codes), with a `flock` instead of a lock file that a killed run leaves blocking.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::calendar::{Zone, format_civil};
use crate::companions::{self, Rule};
use crate::dirlock::{self, LockError};
use crate::glob::Pattern;
use crate::retention::{self, Policy, Reason};
use crate::store::{self, AgeType, DeleteError, Event};

/// Exit codes, the same as `retentions`.
pub mod exit {
    /// Success, including "no files found".
    pub const OK: i32 = 0;
    /// A filesystem error (unreadable directory, lock file not creatable, a failed
    /// delete with `--fail-on-delete-error`).
    pub const IO: i32 = 1;
    /// Invalid arguments.
    pub const USAGE: i32 = 2;
    /// Another run holds the directory's lock.
    pub const LOCKED: i32 = 5;
    /// Integrity check failed: a companion would delete a kept/pruned/protected file, or
    /// the decision sets are inconsistent.
    pub const INTEGRITY: i32 = 7;
}

const AFTER_HELP: &str = "\
Retention (one file per bucket, N = buckets that contain files, finest mode first; each
coarser mode only looks at buckets older than the oldest file kept so far; buckets use
the local time zone, TZ applies):
  -h/--hours, -d/--days, -w/--weeks (ISO), -m/--months, -q/--quarters, --week13, -y/--years
  -l/--last N keeps the N newest files on top. No rule at all keeps everything.

Exit codes: 0 success (also: no files found), 1 filesystem error, 2 invalid arguments,
5 another run holds DIR/.retentions.lock, 7 integrity check failed.

Output goes to stdout as `[LEVEL] message` (errors to stderr); the default level is
error, so use -v info to see one decision line per file and the totals (-X implies it).

Example (seed 000):
  hookrun-retain /backup/101 'vzdump-qemu-*.vma.zst.gpg' -l 3 -d 5 -w 3 -m 1 -v info \\
      --delete-companions 'suffix:.vma.zst.gpg:.vma.zst.notes,.log,.rec'";

fn positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("Invalid value '{s}': must be an integer > 0")),
    }
}

/// Verbosity, as `retentions`: 0/error, 1/warn, 2/info, 3/debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

fn level(s: &str) -> Result<Level, String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "ERROR" | "0" => Ok(Level::Error),
        "WARN" | "1" => Ok(Level::Warn),
        "INFO" | "2" => Ok(Level::Info),
        "DEBUG" | "3" => Ok(Level::Debug),
        _ => Err(format!(
            "Invalid verbose value '{s}' (use ERROR, WARN, INFO, DEBUG or 0, 1, 2, 3)"
        )),
    }
}

/// The command line, flag-compatible with `retentions`.
#[derive(Debug, Parser)]
#[command(
    name = "hookrun-retain",
    version,
    about = "Apply backup-like retention rules to the files of one directory (a drop-in for `retentions`)",
    disable_help_flag = true,
    disable_version_flag = true,
    infer_long_args = true,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Directory to scan (not recursive)
    #[arg(value_name = "DIR")]
    pub path: PathBuf,
    /// Glob for the file names (quote it): *, ?, [abc], [!abc]
    #[arg(value_name = "PATTERN")]
    pub file_pattern: String,

    /// Files matching this glob are never deleted and not counted
    #[arg(short = 'p', long, value_name = "GLOB")]
    pub protect: Option<String>,
    /// Time attribute used for a file's age
    #[arg(long, value_enum, default_value = "mtime", value_name = "ATTR")]
    pub age_type: AgeType,

    #[arg(long, hide = true, value_parser = positive, value_name = "N")]
    pub minutes: Option<u32>,
    /// One file per hour, N hours that have files
    #[arg(short = 'h', long, value_parser = positive, value_name = "N")]
    pub hours: Option<u32>,
    /// One file per calendar day, N days that have files
    #[arg(short = 'd', long, value_parser = positive, value_name = "N")]
    pub days: Option<u32>,
    /// One file per ISO week (Monday start), N weeks that have files
    #[arg(short = 'w', long, value_parser = positive, value_name = "N")]
    pub weeks: Option<u32>,
    /// One file per calendar month, N months that have files
    #[arg(short = 'm', long, value_parser = positive, value_name = "N")]
    pub months: Option<u32>,
    /// One file per calendar quarter, N quarters that have files
    #[arg(short = 'q', long, value_parser = positive, value_name = "N")]
    pub quarters: Option<u32>,
    /// One file per 13-ISO-week block, N blocks that have files
    #[arg(long, value_parser = positive, value_name = "N")]
    pub week13: Option<u32>,
    /// One file per year, N years that have files
    #[arg(short = 'y', long, value_parser = positive, value_name = "N")]
    pub years: Option<u32>,
    /// Always keep the N newest files as well
    #[arg(short = 'l', long, value_parser = positive, value_name = "N")]
    pub last: Option<u32>,

    /// Filter: keep at most N files (newest first)
    #[arg(short = 'f', long, value_parser = positive, value_name = "N")]
    pub max_files: Option<u32>,
    /// Filter: keep at most this total size, newest first (12, 10.5M, 500 G)
    #[arg(short = 's', long, num_args = 1.., value_name = "SIZE")]
    pub max_size: Option<Vec<String>>,
    /// Filter: drop kept files older than this (3600, 1h, 1d, 1w, 1m=30d, 1q=90d, 1y=365d)
    #[arg(short = 'a', long, num_args = 1.., value_name = "AGE")]
    pub max_age: Option<Vec<String>>,

    /// Delete nothing; print what would be deleted (implies -v info)
    #[arg(short = 'X', long)]
    pub dry_run: bool,
    /// Do not take DIR/.retentions.lock
    #[arg(long)]
    pub no_lock_file: bool,
    /// A failed delete aborts with exit 1 instead of a warning
    #[arg(long)]
    pub fail_on_delete_error: bool,
    /// Only print the paths that would be deleted, separated by SEP (default newline, '\0' for NUL)
    #[arg(short = 'L', long, num_args = 0..=1, default_missing_value = "\n", value_name = "SEP")]
    pub list_only: Option<String>,
    /// Verbosity: error (default), warn, info (without a value), debug, or 0-3
    #[arg(short = 'v', visible_short_alias = 'V', long, num_args = 0..=1, default_missing_value = "info", value_parser = level, value_name = "LEVEL")]
    pub verbose: Option<Level>,
    /// Also delete companions of deleted files: prefix|suffix:MATCH:C1,C2 (\: and \, escape)
    #[arg(long, num_args = 1.., value_name = "RULE")]
    pub delete_companions: Vec<String>,
    /// Accepted for compatibility; errors never print a traceback here
    #[arg(long, hide = true)]
    pub stacktrace: bool,

    // `retentions` options this tool refuses with a clear message (exit 2).
    #[arg(short = 'r', long, num_args = 0..=1, default_missing_value = "casesensitive", hide = true)]
    pub regex_mode: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "youngest-file", hide = true)]
    pub folder_mode: Option<String>,
    #[arg(long, hide = true)]
    pub allow_symlinks: bool,
    #[arg(short = 'i', long, hide = true, value_name = "SIZE")]
    pub skip_by_filesize: Option<String>,

    /// Print help
    #[arg(short = 'H', long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Print version
    #[arg(short = 'R', long, action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// Where `[LEVEL] message` lines go.
struct Log {
    level: Level,
}

impl Log {
    fn at(&self, level: Level, msg: &str) {
        if level <= self.level {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[{}] {msg}", level.tag());
        }
    }

    fn warn_err(&self, msg: &str) {
        if Level::Warn <= self.level {
            let _ = writeln!(std::io::stderr().lock(), "[WARN] {msg}");
        }
    }
}

fn error(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "[ERROR] {msg}");
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r#"'"'"'"#))
    }
}

fn show(name: &OsStr) -> String {
    name.to_string_lossy().into_owned()
}

/// Runs the tool with `argv` (including the program name); returns the exit code.
pub fn main_with(argv: Vec<OsString>, zone: Zone) -> i32 {
    let args = match Args::try_parse_from(&argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    match run(&args, &argv, zone) {
        Ok(code) => code,
        Err((code, msg)) => {
            error(&msg);
            code
        }
    }
}

type Failure = (i32, String);

fn usage(msg: impl Into<String>) -> Failure {
    (exit::USAGE, msg.into())
}

/// Checks the arguments and builds the policy, the companion rules and the log level.
fn validate(args: &Args, now: i64) -> Result<(Policy, Vec<Rule>, Level), Failure> {
    for (given, flag, hint) in [
        (
            args.regex_mode.is_some(),
            "--regex-mode",
            "use a glob pattern",
        ),
        (
            args.folder_mode.is_some(),
            "--folder-mode",
            "it works on files only",
        ),
        (
            args.allow_symlinks,
            "--allow-symlinks",
            "symlinks are never candidates",
        ),
        (
            args.skip_by_filesize.is_some(),
            "--skip-by-filesize",
            "use --protect or a narrower pattern",
        ),
    ] {
        if given {
            return Err(usage(format!(
                "{flag} is not supported by hookrun-retain ({hint})"
            )));
        }
    }
    if !args.path.is_dir() {
        return Err(usage(format!(
            "Path {} is not a valid directory",
            args.path.display()
        )));
    }
    if args.file_pattern.is_empty() {
        return Err(usage("Unacceptable pattern: ''"));
    }
    if args.file_pattern.contains('/') || args.file_pattern == "**" {
        return Err(usage(format!(
            "pattern '{}' must match file names directly in {} (recursion is not supported)",
            args.file_pattern,
            args.path.display()
        )));
    }
    let mut level = args.verbose;
    if args.dry_run && args.list_only.is_none() && level.is_none() {
        level = Some(Level::Info);
    }
    let level = level.unwrap_or(Level::Error);
    if args.list_only.is_some() && level > Level::Error {
        return Err(usage(
            "--list-only and --verbose (> ERROR) cannot be used together",
        ));
    }
    if args.list_only.is_some() && !args.delete_companions.is_empty() {
        return Err(usage(
            "--list-only and --delete-companions must not be combined, because list-only is not for companions",
        ));
    }
    let rules = companions::parse_rules(&args.delete_companions).map_err(usage)?;
    let max_size = match &args.max_size {
        Some(parts) => {
            let text: String = parts.iter().map(|p| p.trim()).collect();
            Some((retention::parse_size(&text).map_err(usage)?, text))
        }
        None => None,
    };
    let max_age = match &args.max_age {
        Some(parts) => {
            let text: String = parts.iter().map(|p| p.trim()).collect();
            Some((retention::parse_age(&text).map_err(usage)?, text))
        }
        None => None,
    };
    let policy = Policy {
        minutes: args.minutes,
        hours: args.hours,
        days: args.days,
        weeks: args.weeks,
        months: args.months,
        quarters: args.quarters,
        week13: args.week13,
        years: args.years,
        last: args.last,
        max_files: args.max_files,
        max_size,
        max_age,
        now,
    };
    Ok((policy, rules, level))
}

fn run(args: &Args, argv: &[OsString], zone: Zone) -> Result<i32, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (policy, rules, level) = validate(args, now)?;
    let log = Log { level };
    log.at(
        Level::Info,
        &format!(
            "Command line: {}",
            argv.iter()
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );

    let dir = args.path.as_path();
    let _lock = if args.no_lock_file {
        None
    } else {
        match dirlock::lock(dir) {
            Ok(l) => Some(l),
            Err(e @ LockError::Held(_)) => return Err((exit::LOCKED, e.to_string())),
            Err(e @ LockError::Io(..)) => return Err((exit::IO, e.to_string())),
        }
    };

    match args.age_type {
        AgeType::Atime => log.at(
            Level::Warn,
            "age-type 'atime' depends on platform, filesystem and mount options (e.g. 'relatime'/'noatime') => results may be misleading",
        ),
        AgeType::Ctime => log.at(Level::Warn, "age-type 'ctime' has platform-dependent semantics"),
        _ => {}
    }

    let pattern = Pattern::new(&args.file_pattern);
    let protect = args.protect.as_deref().map(Pattern::new);
    let select = |name: &OsStr| {
        use std::os::unix::ffi::OsStrExt as _;
        pattern.matches(name.as_bytes())
    };
    let scan = store::scan(dir, &select, protect.as_ref(), args.age_type)
        .map_err(|e| (exit::IO, format!("cannot read {}: {e}", dir.display())))?;
    for s in &scan.symlinks {
        log.at(
            Level::Warn,
            &format!(
                "File '{}' is a symlink -> It is ignored",
                dir.join(s).display()
            ),
        );
    }
    if scan.files.is_empty() && scan.protected.is_empty() {
        log.at(
            Level::Warn,
            &format!(
                "No files found in '{}' using glob pattern '{}'",
                dir.display(),
                args.file_pattern
            ),
        );
    }
    log.at(
        Level::Info,
        &format!(
            "Found {} files using glob pattern '{}'",
            scan.files.len(),
            args.file_pattern
        ),
    );
    if !scan.files.is_empty() {
        log.at(
            Level::Debug,
            &format!(
                "Found files : {}",
                scan.files
                    .iter()
                    .map(|f| format!("\"{}\"", show(&f.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    let items = scan.items();
    let plan = retention::plan(&items, &policy, zone);
    let kept = plan.kept().count();
    let pruned = plan.pruned().count();
    if kept + pruned != scan.files.len() {
        return Err((
            exit::INTEGRITY,
            format!(
                "File count mismatch: some files are neither to retain nor to delete (all: {}, keep: {kept}, prune: {pruned}!!)",
                scan.files.len()
            ),
        ));
    }

    print_decisions(&log, &scan, &plan, protect.as_ref(), args.age_type, zone);
    log.at(
        Level::Info,
        &format!("Total files found:     {:03}", scan.files.len()),
    );
    log.at(
        Level::Info,
        &format!("Total files protected: {:03}", scan.protected.len()),
    );
    log.at(Level::Info, &format!("Total files to retain: {kept:03}"));
    log.at(Level::Info, &format!("Total files to delete: {pruned:03}"));

    if let Some(sep) = &args.list_only {
        let sep = if sep == "\\0" { "\0" } else { sep.as_str() };
        let mut out = std::io::stdout().lock();
        for i in plan.pruned() {
            let _ = write!(
                out,
                "{}{sep}",
                std::path::absolute(dir.join(&scan.files[i].name))
                    .unwrap_or_else(|_| dir.join(&scan.files[i].name))
                    .display()
            );
        }
        let _ = out.flush();
        return Ok(exit::OK);
    }

    if pruned > 0 {
        log.at(Level::Info, "Deletion phase started");
    }
    let companions = |name: &OsStr| companions::companions_of(&rules, name);
    let mut report = |ev: Event| match ev {
        Event::Deleted { name, companion } => log.at(
            Level::Info,
            &format!(
                "{}{}: {}",
                if args.dry_run {
                    "DRY-RUN DELETE"
                } else {
                    "DELETING"
                },
                if companion { " (COMPANION)" } else { "" },
                show(&name)
            ),
        ),
        Event::CompanionSymlink(name) => log.at(
            Level::Warn,
            &format!(
                "Companion '{}' is a symlink -> It is not deleted",
                show(&name)
            ),
        ),
        Event::Failed { error, .. } => log.warn_err(&error),
    };
    match store::delete_pruned(
        dir,
        &scan,
        &plan,
        &companions,
        args.dry_run,
        args.fail_on_delete_error,
        &mut report,
    ) {
        Ok(_) => {}
        Err(DeleteError::Integrity(m)) => return Err((exit::INTEGRITY, m)),
        Err(DeleteError::Io(m)) => return Err((exit::IO, m)),
    }
    if pruned > 0 {
        log.at(Level::Info, "Deletion phase completed");
        log.at(
            Level::Info,
            &format!(
                "Total files {}:   {pruned:03}",
                if args.dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            ),
        );
    }
    Ok(exit::OK)
}

/// One line per file, newest first: `[INFO] name  : decision`.
fn print_decisions(
    log: &Log,
    scan: &store::Scan,
    plan: &retention::Plan,
    protect: Option<&Pattern>,
    age: AgeType,
    zone: Zone,
) {
    if log.level < Level::Info {
        return;
    }
    let mut lines: Vec<(i64, &OsStr, String, Option<String>)> = Vec::new();
    for &i in &plan.order {
        let f = &scan.files[i];
        let why = &plan.reasons[i];
        let debug = match why {
            Reason::Mode { bucket, .. } => Some(format!("bucket: {bucket}")),
            _ => None,
        };
        lines.push((f.time, &f.name, why.message(), debug));
    }
    for f in &scan.protected {
        let p = protect.map_or("", |p| p.as_str());
        lines.push((f.time, &f.name, format!("Protected by glob: '{p}'"), None));
    }
    lines.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(a.1)));
    let width = lines
        .iter()
        .map(|l| show(l.1).chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    for (time, name, message, debug) in lines {
        let mut line = format!("{:<width$}: {message}", show(name));
        if log.level >= Level::Debug {
            let attrs = format!("{}: {}", age.name(), format_civil(zone.civil(time)));
            line.push_str(&match debug {
                Some(d) => format!(" ({d}, {attrs})"),
                None => format!(" ({attrs})"),
            });
        }
        log.at(Level::Info, &line);
    }
}
