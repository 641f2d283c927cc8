//! `hookrun-copy-encrypt-retain`: the seed's copy-encrypt-retain hook, done right.
//!
//! At vzdump's `log-end` (any other phase: exit 0 at once, silently) it finds the
//! archive from `TARGET`/`LOGFILE`, encrypts it with gpg to every `--recipient` into
//! `DEST/<vmid>/<archive>.gpg` (or copies it with `--no-encrypt`) through a `.part` file
//! that is fsynced and renamed, copies the companions (`.log`, `.notes`), and applies
//! retention to `DEST/<vmid>/` with the engine of `hookrun-retain`, deleting the
//! companions of pruned archives. It runs at nice 19 and best-effort I/O priority 7.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::calendar::Zone;
use crate::dirlock::{self, LockError};
use crate::encrypt::{self, Failure, Gpg};
use crate::retention::{self, Policy};
use crate::store::{self, AgeType, DeleteError, Event};
use crate::vzdump::{self, Located, parse_archive_name};

/// Exit codes.
pub mod exit {
    /// Done, or nothing to do (another phase, PBS, no archive because the backup failed).
    pub const OK: i32 = 0;
    /// The copy, the encryption or the retention failed (the message says which).
    pub const FAILED: i32 = 1;
    /// Invalid arguments.
    pub const USAGE: i32 = 2;
    /// Another retention run holds `DEST/<vmid>/.retentions.lock`.
    pub const LOCKED: i32 = 5;
    /// Retention integrity check failed (a companion would delete a candidate).
    pub const INTEGRITY: i32 = 7;
}

const PROGRAM: &str = "hookrun-copy-encrypt-retain";

const AFTER_HELP: &str = "\
The positional arguments are vzdump's own (phase, mode, vmid): pass \"$@\" on.
Only log-end does anything; every other phase exits 0 at once.

Files: DEST/<vmid>/<archive>.gpg (or <archive> with --no-encrypt), <basename>.log,
<archive>.notes; directory mode 0700, files 0600, mtimes those of the originals.
Retention (when any --keep-* is given) works on the archives in DEST/<vmid>/ like
`hookrun-retain -l -h -d -w -m -y`, and deletes the companions of pruned archives.

Exit codes: 0 done or nothing to do (other phase, PBS target, no archive), 1 failure
(nothing partial is left behind), 2 invalid arguments, 5 the retention lock is held,
7 retention integrity check failed, 128+N stopped by signal N.";

fn positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid value '{s}': must be an integer > 0")),
    }
}

#[derive(Debug, Parser)]
#[command(
    name = PROGRAM,
    version,
    about = "vzdump log-end hook: encrypt the new backup to a second storage, copy its log and notes, apply retention",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Destination directory; files go to DEST/<vmid>/. It must exist (an unmounted
    /// storage is an error, never a copy onto the root file system)
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// gpg recipient (key id, fingerprint or e-mail); repeat for several
    #[arg(long = "recipient", value_name = "ID", conflicts_with = "no_encrypt")]
    pub recipients: Vec<String>,
    /// gpg home directory (gpg --homedir)
    #[arg(long, value_name = "DIR")]
    pub gnupghome: Option<PathBuf>,
    /// The gpg program
    #[arg(long, value_name = "PATH", default_value = "gpg")]
    pub gpg: PathBuf,
    /// Keep the N newest archives
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep one archive per hour for N hours that have one
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep one archive per day for N days that have one
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep one archive per ISO week for N weeks that have one
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep one archive per month for N months that have one
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep one archive per year for N years that have one
    #[arg(long, value_parser = positive, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Companion suffixes to copy (and delete with pruned archives): .log is vzdump's
    /// <basename>.log, any other suffix is <archive><suffix>
    #[arg(
        long,
        value_delimiter = ',',
        default_value = ".log,.notes",
        value_name = "LIST"
    )]
    pub companions: Vec<String>,
    /// Copy the archive as it is instead of encrypting it
    #[arg(long)]
    pub no_encrypt: bool,
    /// Say what would be done; write and delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// vzdump's phase
    #[arg(value_name = "PHASE")]
    pub phase: String,
    /// vzdump's backup mode (stop, suspend, snapshot)
    #[arg(value_name = "MODE")]
    pub mode: Option<String>,
    /// The guest's VMID
    #[arg(value_name = "VMID")]
    pub vmid: Option<String>,
}

impl Args {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hours: self.keep_hourly,
            days: self.keep_daily,
            weeks: self.keep_weekly,
            months: self.keep_monthly,
            years: self.keep_yearly,
            ..Policy::default()
        }
    }
}

type Outcome = Result<(), (i32, String)>;

fn fail(msg: impl Into<String>) -> (i32, String) {
    (exit::FAILED, msg.into())
}

fn from_failure(f: Failure) -> (i32, String) {
    match f {
        Failure::Error(m) => fail(m),
        Failure::Interrupted(s) => (
            128 + s,
            format!("stopped by signal {s}; nothing partial is left behind"),
        ),
    }
}

/// Runs the program with `argv`; returns the exit code.
pub fn main_with(argv: Vec<OsString>) -> i32 {
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
    if args.phase != "log-end" {
        return exit::OK;
    }
    hookrun_core::logging::init(PROGRAM, false);
    encrypt::catch_stop_signals();
    match run(&args) {
        Ok(()) => exit::OK,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            code
        }
    }
}

/// Where a companion comes from and what it is called in the destination.
fn companion_source(suffix: &str, archive: &Path, log: &Path) -> PathBuf {
    if suffix == ".log" {
        log.to_owned()
    } else {
        let mut s = archive.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    }
}

fn companion_name(suffix: &str, archive_name: &str) -> Option<String> {
    let parsed = parse_archive_name(archive_name)?;
    Some(if suffix == ".log" {
        format!("{}.log", parsed.base)
    } else {
        format!("{archive_name}{suffix}")
    })
}

fn validate(args: &Args) -> Result<String, (i32, String)> {
    let usage = |m: String| (exit::USAGE, m);
    let vmid = match (&args.mode, &args.vmid) {
        (Some(_), Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.clone(),
        (_, Some(v)) => return Err(usage(format!("VMID '{v}' is not a number"))),
        _ => {
            return Err(usage(
                "log-end needs vzdump's arguments: log-end MODE VMID (pass \"$@\" on)".into(),
            ));
        }
    };
    if args.recipients.is_empty() && !args.no_encrypt {
        return Err(usage(
            "no --recipient: give at least one gpg recipient, or --no-encrypt for a plain copy"
                .into(),
        ));
    }
    for c in &args.companions {
        if !c.starts_with('.') || c.len() < 2 || c.contains('/') {
            return Err(usage(format!(
                "--companions: '{c}' is not a suffix like .log or .notes"
            )));
        }
    }
    if !args.dest.is_dir() {
        return Err(fail(format!(
            "--dest {} is not an existing directory (is the backup storage mounted?)",
            args.dest.display()
        )));
    }
    Ok(vmid)
}

fn run(args: &Args) -> Outcome {
    let vmid = validate(args)?;
    for problem in encrypt::lower_priority() {
        tracing::debug!("could not lower priority: {problem}");
    }
    // Everything we and gpg create is private to root (the modes are set explicitly too).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    let env = |k: &str| std::env::var_os(k);
    let located = vzdump::locate(
        env("TARGET").as_deref(),
        env("LOGFILE").as_deref(),
        env("DUMPDIR").as_deref(),
    )
    .map_err(fail)?;
    let (archive, log) = match located {
        Located::Skip(why) => {
            tracing::info!("{why}");
            return Ok(());
        }
        Located::Archive { archive, log } => (archive, log),
    };
    let archive_name = archive
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or_default()
        .to_owned();
    let parsed = parse_archive_name(&archive_name)
        .ok_or_else(|| fail(format!("{archive_name} is not a vzdump archive name")))?;
    if parsed.vmid != vmid {
        return Err(fail(format!(
            "the archive {} belongs to VMID {}, not to {vmid}",
            archive.display(),
            parsed.vmid
        )));
    }

    let dir = args.dest.join(&vmid);
    let out_name = if args.no_encrypt {
        archive_name.clone()
    } else {
        format!("{archive_name}.gpg")
    };
    let out = dir.join(&out_name);
    let companions: Vec<(PathBuf, PathBuf)> = args
        .companions
        .iter()
        .filter_map(|s| {
            let src = companion_source(s, &archive, &log);
            let name = companion_name(s, &archive_name)?;
            src.is_file().then(|| (src, dir.join(name)))
        })
        .collect();

    check_space(&args.dest, &archive, &companions)?;

    if args.dry_run {
        tracing::info!(
            "dry run: would {} {} to {}",
            if args.no_encrypt {
                "copy".to_owned()
            } else {
                format!("encrypt (for {})", args.recipients.join(", "))
            },
            archive.display(),
            out.display()
        );
        for (src, dst) in &companions {
            tracing::info!("dry run: would copy {} to {}", src.display(), dst.display());
        }
    } else {
        make_dir(&dir)?;
        if args.no_encrypt {
            tracing::info!("copying {} to {}", archive.display(), out.display());
            encrypt::copy_file(&archive, &out).map_err(from_failure)?;
        } else {
            tracing::info!(
                "encrypting {} for {} to {}",
                archive.display(),
                args.recipients.join(", "),
                out.display()
            );
            let gpg = Gpg {
                program: args.gpg.clone(),
                homedir: args.gnupghome.clone(),
                recipients: args.recipients.clone(),
            };
            encrypt::encrypt_file(&gpg, &archive, &out).map_err(from_failure)?;
        }
        for (src, dst) in &companions {
            tracing::info!("copying {} to {}", src.display(), dst.display());
            encrypt::copy_file(src, dst).map_err(from_failure)?;
        }
    }

    if args.policy().has_rules() {
        if dir.is_dir() {
            retain(args, &dir, &vmid)?;
        } else {
            tracing::info!(
                "dry run: {} does not exist yet, so there is nothing to retain",
                dir.display()
            );
        }
    }
    if let Some(s) = encrypt::stop_signal() {
        return Err(from_failure(Failure::Interrupted(s)));
    }
    tracing::info!("done: {}", out.display());
    Ok(())
}

/// Creates `DEST/<vmid>` with mode 0700, or sets 0700 on an existing one.
fn make_dir(dir: &Path) -> Outcome {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o7777 != 0o700 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| fail(format!("cannot chmod 0700 {}: {e}", dir.display())))?;
            }
            Ok(())
        }
        Ok(_) => Err(fail(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display()))),
    }
}

/// Refuses to start when the destination cannot hold the archive and companions, with
/// room for gpg's overhead (1 % + 64 KiB; compressed archives do not shrink).
fn check_space(dest: &Path, archive: &Path, companions: &[(PathBuf, PathBuf)]) -> Outcome {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let archive_size = size(archive);
    let need = archive_size
        + archive_size / 100
        + 64 * 1024
        + companions.iter().map(|(s, _)| size(s)).sum::<u64>();
    let st = nix::sys::statvfs::statvfs(dest).map_err(|e| {
        fail(format!(
            "cannot check the free space of {}: {e}",
            dest.display()
        ))
    })?;
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    if avail < need {
        return Err(fail(format!(
            "not enough free space in {}: {} bytes available, about {need} needed for {} and its companions; nothing was written",
            dest.display(),
            avail,
            archive.display()
        )));
    }
    Ok(())
}

/// Whether `name` is one of this guest's archives (plain or encrypted).
fn is_archive_of(name: &OsStr, vmid: &str) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let plain = name.strip_suffix(".gpg").unwrap_or(name);
    parse_archive_name(plain).is_some_and(|a| a.vmid == vmid)
}

fn retain(args: &Args, dir: &Path, vmid: &str) -> Outcome {
    let _lock = match dirlock::lock(dir) {
        Ok(l) => l,
        Err(e @ LockError::Held(_)) => return Err((exit::LOCKED, e.to_string())),
        Err(e @ LockError::Io(..)) => return Err(fail(e.to_string())),
    };
    let select = |n: &OsStr| is_archive_of(n, vmid);
    let scan = store::scan(dir, &select, None, AgeType::Mtime)
        .map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    let mut policy = args.policy();
    policy.now = 0;
    let plan = retention::plan(&scan.items(), &policy, Zone::Local);
    for &i in &plan.order {
        let why = &plan.reasons[i];
        tracing::info!(
            "retention: {} {}: {}",
            if why.keeps() { "keep" } else { "prune" },
            scan.files[i].name.to_string_lossy(),
            why.message()
        );
    }
    let suffixes = &args.companions;
    let companions_of = |name: &OsStr| -> Vec<OsString> {
        let Some(name) = name.to_str() else {
            return Vec::new();
        };
        let plain = name.strip_suffix(".gpg").unwrap_or(name);
        suffixes
            .iter()
            .filter_map(|s| companion_name(s, plain).map(OsString::from))
            .collect()
    };
    // A plain and an encrypted copy of one backup share their companions: never delete
    // those of a kept archive along with a pruned one.
    let shared: std::collections::BTreeSet<OsString> = plan
        .kept()
        .flat_map(|i| companions_of(&scan.files[i].name))
        .collect();
    let companions = |name: &OsStr| -> Vec<OsString> {
        companions_of(name)
            .into_iter()
            .filter(|c| !shared.contains(c))
            .collect()
    };
    let mut report = |ev: Event| match ev {
        Event::Deleted { name, companion } => tracing::info!(
            "retention: {}{} {}",
            if args.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            if companion { " companion" } else { "" },
            name.to_string_lossy()
        ),
        Event::CompanionSymlink(name) => tracing::warn!(
            "retention: companion {} is a symlink, not deleted",
            name.to_string_lossy()
        ),
        Event::Failed { error, .. } => tracing::warn!("retention: {error}"),
    };
    match store::delete_pruned(
        dir,
        &scan,
        &plan,
        &companions,
        args.dry_run,
        false,
        &mut report,
    ) {
        Ok(_) => Ok(()),
        Err(DeleteError::Integrity(m)) => Err((exit::INTEGRITY, m)),
        Err(DeleteError::Io(m)) => Err(fail(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companion_names() {
        let a = "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst";
        assert_eq!(
            companion_name(".log", a).unwrap(),
            "vzdump-qemu-101-2026_01_31-01_00_00.log"
        );
        assert_eq!(companion_name(".notes", a).unwrap(), format!("{a}.notes"));
        assert!(companion_name(".log", "other").is_none());
    }

    #[test]
    fn archives_of_a_guest() {
        let yes = [
            "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.gpg",
            "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst",
            "vzdump-lxc-101-2026_01_31-01_00_00.tar.gpg",
        ];
        let no = [
            "vzdump-qemu-1010-2026_01_31-01_00_00.vma.zst.gpg",
            "vzdump-qemu-101-2026_01_31-01_00_00.log",
            "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.notes",
            "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.gpg.part",
            ".retentions.lock",
        ];
        for n in yes {
            assert!(is_archive_of(OsStr::new(n), "101"), "{n}");
        }
        for n in no {
            assert!(!is_archive_of(OsStr::new(n), "101"), "{n}");
        }
    }
}
