//! `hookrun-copy-encrypt-retain` with the real gpg and a throwaway key: round trip,
//! companions, modes, retention, vzdump's environment, and every failure path leaving
//! neither a `.gpg` nor a `.part` behind.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hookrun_contrib::calendar::utc_timestamp;
use hookrun_contrib::vzdump::ARCHIVE_EXTS;

use crate::common::*;

const KEY: &str = "test@hookrun.invalid";

/// A GnuPG home with one fresh key (no passphrase); its agent is stopped on drop.
struct Gnupg {
    home: tempfile::TempDir,
}

impl Gnupg {
    fn new() -> Gnupg {
        require_tool("gpg", "gnupg");
        require_tool("gpgconf", "gnupg");
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let g = Gnupg { home };
        g.add_key(KEY);
        g
    }

    fn add_key(&self, email: &str) {
        let out = run(Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .arg(format!("hookrun test <{email}>"))
            .args(["future-default", "default", "never"]));
        assert!(
            out.status.success(),
            "gpg key generation: {}",
            text(&out.stderr)
        );
    }

    fn path(&self) -> &Path {
        self.home.path()
    }

    fn decrypt(&self, file: &Path) -> Vec<u8> {
        let out = run(Command::new("gpg")
            .arg("--homedir")
            .arg(self.path())
            .args(["--batch", "--quiet", "--decrypt"])
            .arg(file));
        assert!(
            out.status.success(),
            "decrypting {}: {}",
            file.display(),
            text(&out.stderr)
        );
        out.stdout
    }

    /// How many public-key packets (recipients) a message has.
    fn recipients(&self, file: &Path) -> usize {
        let out = run(Command::new("gpg")
            .arg("--homedir")
            .arg(self.path())
            .args(["--batch", "--list-packets"])
            .arg(file));
        text(&out.stdout).matches(":pubkey enc packet:").count()
    }
}

impl Drop for Gnupg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Incompressible bytes (xorshift), so gpg's output is as large as its input.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// When the backup was made (the archive's mtime and its name).
const BACKUP_TIME: (i64, u32, u32, u32, u32, u32) = (2026, 3, 20, 1, 2, 3);

fn backup_ts() -> i64 {
    let (y, mo, d, h, mi, s) = BACKUP_TIME;
    utc_timestamp(y, mo, d, h, mi, s)
}

/// A vzdump dump directory after a backup of guest 101: archive, log and notes.
struct Dump {
    dir: tempfile::TempDir,
    base: String,
    archive: PathBuf,
    log: PathBuf,
    notes: PathBuf,
}

impl Dump {
    fn new(ext: &str, size: usize) -> Dump {
        let dir = tempfile::tempdir().unwrap();
        let vmtype = if ext.starts_with(".vma") {
            "qemu"
        } else {
            "lxc"
        };
        let base = format!("vzdump-{vmtype}-101-2026_03_20-01_02_03");
        let archive = dir.path().join(format!("{base}{ext}"));
        let log = dir.path().join(format!("{base}.log"));
        let notes = dir.path().join(format!("{base}{ext}.notes"));
        file_at(&archive, &noise(size, 42), backup_ts());
        file_at(
            &log,
            b"2026-03-20 01:02:03 INFO: Finished Backup of VM 101\n",
            backup_ts(),
        );
        file_at(&notes, b"web server\n", backup_ts());
        Dump {
            dir,
            base,
            archive,
            log,
            notes,
        }
    }

    fn archive_name(&self) -> String {
        self.archive
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// vzdump's log-end environment on a directory storage.
    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("TARGET", self.archive.clone().into()),
            ("LOGFILE", self.log.clone().into()),
            ("DUMPDIR", self.dir.path().into()),
            ("STOREID", "local".into()),
            ("VMTYPE", "qemu".into()),
        ]
    }
}

/// The program with vzdump's cleared environment plus `env`, TZ=UTC0, and no journal.
fn cer(args: &[&str], env: &[(&str, OsString)]) -> Command {
    let mut c = clean(CER);
    c.args(args)
        .env("TZ", "UTC0")
        .env("HOOKRUN_JOURNAL_SOCKET", "/nonexistent")
        .env("LC_ALL", "C");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn encrypt_args<'a>(dest: &'a str, gnupg: &'a str) -> Vec<&'a str> {
    vec!["--dest", dest, "--recipient", KEY, "--gnupghome", gnupg]
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Nothing with `.gpg` or `.part` in `dir` (which may not exist).
fn assert_nothing_partial(dir: &Path, out: &Output) {
    if !dir.exists() {
        return;
    }
    let left: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".gpg") || n.ends_with(".part"))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}\n{}",
        dir.display(),
        text(&out.stderr)
    );
}

/// A `--gpg` wrapper script in `dir`.
fn wrapper(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Sets `out` to the value after `--output` in the wrapper's arguments.
const FIND_OUTPUT: &str =
    "out=\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --output ]; then out=$2; fi\n  shift\ndone\n";

#[test]
fn round_trip_companions_modes_and_times() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 200_000);
    let dest = tempfile::tempdir().unwrap();
    let mut args = encrypt_args(s(dest.path()), s(g.path()));
    args.extend(["log-end", "snapshot", "101"]);
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let dir = dest.path().join("101");
    let gpg = dir.join(format!("{}.gpg", dump.archive_name()));
    let log = dir.join(format!("{}.log", dump.base));
    let notes = dir.join(format!("{}.notes", dump.archive_name()));
    let mut want = vec![
        gpg.file_name().unwrap().to_string_lossy().into_owned(),
        log.file_name().unwrap().to_string_lossy().into_owned(),
        notes.file_name().unwrap().to_string_lossy().into_owned(),
    ];
    want.sort();
    assert_eq!(names(&dir), want);

    assert_eq!(
        g.decrypt(&gpg),
        std::fs::read(&dump.archive).unwrap(),
        "round trip"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        std::fs::read(&dump.log).unwrap()
    );
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        std::fs::read(&dump.notes).unwrap()
    );

    assert_eq!(mode(&dir), 0o700);
    for f in [&gpg, &log, &notes] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
        let mtime = std::fs::metadata(f).unwrap().modified().unwrap();
        assert_eq!(
            mtime,
            system_time(backup_ts()),
            "{} keeps the backup's time",
            f.display()
        );
    }
    assert!(
        text(&out.stderr).contains("encrypting"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn several_recipients() {
    let g = Gnupg::new();
    g.add_key("second@hookrun.invalid");
    let dump = Dump::new(".tar.gz", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let mut args = encrypt_args(s(dest.path()), s(g.path()));
    args.extend([
        "--recipient",
        "second@hookrun.invalid",
        "log-end",
        "stop",
        "101",
    ]);
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let gpg = dest
        .path()
        .join("101")
        .join(format!("{}.gpg", dump.archive_name()));
    assert_eq!(g.recipients(&gpg), 2);
    assert_eq!(g.decrypt(&gpg), std::fs::read(&dump.archive).unwrap());
}

#[test]
fn other_phases_exit_0_silently() {
    let dump = Dump::new(".vma.zst", 1000);
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());
    for phase in [
        vec!["job-init"],
        vec!["job-start"],
        vec!["job-end"],
        vec!["job-abort"],
        vec!["backup-start", "snapshot", "101"],
        vec!["pre-stop", "snapshot", "101"],
        vec!["backup-end", "snapshot", "101"],
        vec!["backup-abort", "snapshot", "101"],
    ] {
        let mut args = vec!["--dest", d, "--recipient", KEY];
        args.extend(phase.iter());
        let out = run(cer(&args, &dump.env()));
        assert_eq!(out.status.code(), Some(0), "{phase:?}");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{phase:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(names(dest.path()).is_empty());
}

#[test]
fn pbs_targets_and_failed_backups_are_skipped_with_a_notice() {
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());
    let args = [
        "--dest",
        d,
        "--recipient",
        KEY,
        "log-end",
        "snapshot",
        "101",
    ];

    // Proxmox Backup Server: TARGET is a snapshot name, no LOGFILE, no DUMPDIR.
    let pbs = [
        ("TARGET", OsString::from("vm/101/2026-03-20T01:02:03Z")),
        ("STOREID", "pbs".into()),
    ];
    let out = run(cer(&args, &pbs));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Proxmox Backup Server"),
        "{}",
        text(&out.stderr)
    );

    // log-end after backup-abort: the log exists, the archive does not.
    let dump = Dump::new(".vma.zst", 1000);
    std::fs::remove_file(&dump.archive).unwrap();
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let only_log: Vec<(&str, OsString)> = dump
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "TARGET")
        .collect();
    let out = run(cer(&args, &only_log));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no archive"),
        "{}",
        text(&out.stderr)
    );

    assert!(
        names(dest.path()).is_empty(),
        "nothing is created for a skipped backup"
    );
}

#[test]
fn a_missing_logfile_on_a_file_storage_is_an_error() {
    let dump = Dump::new(".vma.zst", 1000);
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());
    let args = [
        "--dest",
        d,
        "--recipient",
        KEY,
        "log-end",
        "snapshot",
        "101",
    ];

    let no_logfile: Vec<(&str, OsString)> = dump
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "LOGFILE")
        .collect();
    let out = run(cer(&args, &no_logfile));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("LOGFILE is not set"),
        "{}",
        text(&out.stderr)
    );

    std::fs::remove_file(&dump.log).unwrap();
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("LOGFILE {} does not exist", dump.log.display())));
    assert!(names(dest.path()).is_empty());
}

#[test]
fn every_archive_extension_is_found_from_logfile() {
    for ext in ARCHIVE_EXTS {
        let dump = Dump::new(ext, 5000);
        let dest = tempfile::tempdir().unwrap();
        // Only LOGFILE: the archive is found by trying every extension.
        let env = [
            ("LOGFILE", OsString::from(&dump.log)),
            ("DUMPDIR", dump.dir.path().into()),
        ];
        let args = [
            "--dest",
            s(dest.path()),
            "--no-encrypt",
            "log-end",
            "stop",
            "101",
        ];
        let out = run(cer(&args, &env));
        assert_eq!(out.status.code(), Some(0), "{ext}: {}", text(&out.stderr));
        let copy = dest.path().join("101").join(dump.archive_name());
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(&dump.archive).unwrap(),
            "{ext}"
        );
        assert_eq!(mode(&copy), 0o600);
    }
}

#[test]
fn an_unknown_recipient_leaves_nothing_and_shows_gpgs_message() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let args = [
        "--dest",
        s(dest.path()),
        "--recipient",
        "nobody@hookrun.invalid",
        "--gnupghome",
        s(g.path()),
        "log-end",
        "snapshot",
        "101",
    ];
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("nobody@hookrun.invalid: skipped: No public key"),
        "gpg's own message: {err}"
    );
    let dir = dest.path().join("101");
    assert_nothing_partial(&dir, &out);
    assert!(
        names(&dir).is_empty(),
        "no companions either: {:?}",
        names(&dir)
    );
}

#[test]
fn gpg_killed_midway_leaves_nothing() {
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let gpg = wrapper(
        tools.path(),
        "gpg-killed",
        &format!(
            "{FIND_OUTPUT}head -c 5000 /dev/zero > \"$out\"\necho 'gpg: writing...' >&2\nkill -9 $$\n"
        ),
    );
    let args = [
        "--dest",
        s(dest.path()),
        "--recipient",
        KEY,
        "--gpg",
        s(&gpg),
        "log-end",
        "snapshot",
        "101",
    ];
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("killed by signal 9") && err.contains("gpg: writing..."),
        "{err}"
    );
    assert_nothing_partial(&dest.path().join("101"), &out);
}

#[test]
fn not_enough_space_is_refused_before_anything_is_written() {
    let dump = Dump::new(".vma.zst", 2 << 20);
    let fs = Tmpfs::mount("1m");
    let args = [
        "--dest",
        s(fs.path()),
        "--recipient",
        KEY,
        "log-end",
        "snapshot",
        "101",
    ];
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not enough free space"),
        "{}",
        text(&out.stderr)
    );
    assert!(names(fs.path()).is_empty(), "{:?}", names(fs.path()));
}

#[test]
fn disk_full_while_gpg_writes_leaves_nothing() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 300_000);
    let fs = Tmpfs::mount("1m");
    let tools = tempfile::tempdir().unwrap();
    // Someone else fills the disk after the free-space check; the real gpg then hits
    // ENOSPC.
    let filler = fs.path().join("filler");
    let gpg = wrapper(
        tools.path(),
        "gpg-fill",
        "cat /dev/zero > \"$FILLER\" 2>/dev/null\nexec gpg \"$@\"\n",
    );
    let mut env = dump.env();
    env.push(("FILLER", filler.clone().into()));
    let mut args = encrypt_args(s(fs.path()), s(g.path()));
    args.extend(["--gpg", s(&gpg), "log-end", "snapshot", "101"]);
    let out = run(cer(&args, &env));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("No space left on device"),
        "gpg's message: {err}"
    );
    assert!(filler.exists(), "the disk was filled");
    assert_nothing_partial(&fs.path().join("101"), &out);
}

#[test]
fn sigterm_while_gpg_runs_leaves_nothing() {
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let gpg = wrapper(
        tools.path(),
        "gpg-slow",
        &format!("{FIND_OUTPUT}head -c 5000 /dev/zero > \"$out\"\nexec sleep 30\n"),
    );
    let args = [
        "--dest",
        s(dest.path()),
        "--recipient",
        KEY,
        "--gpg",
        s(&gpg),
        "log-end",
        "snapshot",
        "101",
    ];
    let mut child = cer(&args, &dump.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = dest.path().join("101");
    let part = dir.join(format!("{}.gpg.part", dump.archive_name()));
    let start = Instant::now();
    while !part.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gpg never started writing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "stopping took too long"
    );
    assert!(err.contains("stopped by signal 15"), "{err}");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

#[test]
fn a_stale_part_from_a_killed_run_is_replaced() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.lzo", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("101");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let part = dir.join(format!("{}.gpg.part", dump.archive_name()));
    std::fs::write(&part, b"half an archive").unwrap();
    let mut args = encrypt_args(s(dest.path()), s(g.path()));
    args.extend(["log-end", "snapshot", "101"]);
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!part.exists());
    assert_eq!(mode(&dir), 0o700, "an existing directory is set to 0700");
    let gpg = dir.join(format!("{}.gpg", dump.archive_name()));
    assert_eq!(g.decrypt(&gpg), std::fs::read(&dump.archive).unwrap());
}

#[test]
fn retention_prunes_old_sets_with_their_companions() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("101");
    std::fs::create_dir(&dir).unwrap();
    // Earlier encrypted sets, one a day at 01:02:03 UTC, 1..=6 days before this backup.
    let set = |days: i64| -> [String; 3] {
        let ts = backup_ts() - days * 86_400;
        let c = hookrun_contrib::calendar::civil_utc(ts);
        let base = format!(
            "vzdump-qemu-101-{:04}_{:02}_{:02}-01_02_03",
            c.year, c.month, c.day
        );
        [
            format!("{base}.vma.zst.gpg"),
            format!("{base}.log"),
            format!("{base}.vma.zst.notes"),
        ]
    };
    for days in 1..=6 {
        for f in set(days) {
            file_at(&dir.join(f), b"old", backup_ts() - days * 86_400);
        }
    }
    let others = ["vzdump-qemu-102-2020_01_01-00_00_00.vma.zst.gpg", "README"];
    for o in others {
        file_at(&dir.join(o), b"not ours", 0);
    }

    let mut args = encrypt_args(s(dest.path()), s(g.path()));
    args.extend([
        "--keep-last",
        "2",
        "--keep-daily",
        "3",
        "log-end",
        "snapshot",
        "101",
    ]);
    let out = run(cer(&args, &dump.env()));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");

    // Days 3: this backup (03-20), 03-19, 03-18; last 2 adds nothing. Pruned: 3..=6
    // days old, each with its .log and .notes.
    let mut want: Vec<String> = set(0).into_iter().chain(set(1)).chain(set(2)).collect();
    want.extend(others.map(String::from));
    want.sort();
    assert_eq!(names(&dir), want, "{err}");
    assert!(err.contains("retention: prune"), "{err}");
    assert!(err.contains("retention: deleted companion"), "{err}");

    // A retention lock held by someone else: exit 5 (the copy itself is done).
    let held = hookrun_contrib::dirlock::lock(&dir).unwrap();
    let out = run(cer(&args, &dump.env()));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already running"));
    drop(held);
}

#[test]
fn runs_at_low_cpu_and_io_priority() {
    require_tool("ionice", "util-linux");
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 1000);
    let dest = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let report = tools.path().join("prio");
    let gpg = wrapper(
        tools.path(),
        "gpg-prio",
        "{ awk '{print \"nice\", $19}' /proc/$$/stat; ionice -p $$; } > \"$PRIO_OUT\"\nexec gpg \"$@\"\n",
    );
    let mut env = dump.env();
    env.push(("PRIO_OUT", report.clone().into()));
    let mut args = encrypt_args(s(dest.path()), s(g.path()));
    args.extend(["--gpg", s(&gpg), "log-end", "snapshot", "101"]);
    let out = run(cer(&args, &env));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let prio = std::fs::read_to_string(&report).unwrap();
    assert!(prio.contains("nice 19"), "{prio}");
    assert!(prio.contains("best-effort: prio 7"), "{prio}");
}

#[test]
fn no_encrypt_copies_and_dry_run_writes_nothing() {
    let dump = Dump::new(".tar.zst", 50_000);
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());

    let out = run(cer(
        &[
            "--dest",
            d,
            "--recipient",
            KEY,
            "--dry-run",
            "log-end",
            "snapshot",
            "101",
        ],
        &dump.env(),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("dry run: would encrypt"),
        "{}",
        text(&out.stderr)
    );
    assert!(names(dest.path()).is_empty());

    let out = run(cer(
        &["--dest", d, "--no-encrypt", "log-end", "snapshot", "101"],
        &dump.env(),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = dest.path().join("101");
    let copy = dir.join(dump.archive_name());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&dump.archive).unwrap()
    );
    assert_eq!(
        names(&dir).len(),
        3,
        "archive, .log, .notes: {:?}",
        names(&dir)
    );
    assert!(!names(&dir).iter().any(|n| n.ends_with(".gpg")));
}

#[test]
fn configuration_errors() {
    let dump = Dump::new(".vma.zst", 1000);
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());
    let missing = dest.path().join("not-mounted");
    for (args, code, says) in [
        (
            vec!["--dest", d, "log-end", "snapshot", "101"],
            2,
            "--recipient",
        ),
        (
            vec![
                "--dest",
                d,
                "--recipient",
                KEY,
                "--no-encrypt",
                "log-end",
                "snapshot",
                "101",
            ],
            2,
            "cannot be used with",
        ),
        (
            vec![
                "--dest",
                d,
                "--recipient",
                KEY,
                "log-end",
                "snapshot",
                "abc",
            ],
            2,
            "not a number",
        ),
        (
            vec!["--dest", d, "--recipient", KEY, "log-end"],
            2,
            "log-end MODE VMID",
        ),
        (
            vec![
                "--dest",
                d,
                "--recipient",
                KEY,
                "--companions",
                "log",
                "log-end",
                "snapshot",
                "101",
            ],
            2,
            "not a suffix",
        ),
        (
            vec![
                "--dest",
                d,
                "--recipient",
                KEY,
                "--keep-daily",
                "0",
                "log-end",
                "snapshot",
                "101",
            ],
            2,
            "> 0",
        ),
        (
            vec![
                "--dest",
                s(&missing),
                "--recipient",
                KEY,
                "log-end",
                "snapshot",
                "101",
            ],
            1,
            "is the backup storage mounted",
        ),
        (
            vec![
                "--dest",
                d,
                "--recipient",
                KEY,
                "log-end",
                "snapshot",
                "102",
            ],
            1,
            "belongs to VMID 101",
        ),
    ] {
        let out = run(cer(&args, &dump.env()));
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(names(dest.path()).is_empty());
}

#[test]
fn the_drop_in_passes_vzdumps_arguments_on() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(hooks_dir().join("copy-encrypt-retain")).unwrap();
    let exec_lines: Vec<&str> = shipped.lines().filter(|l| l.starts_with("exec ")).collect();
    assert_eq!(
        exec_lines.len(),
        1,
        "exactly one exec line for the operator to edit"
    );
    assert!(exec_lines[0].starts_with("exec /usr/bin/hookrun-copy-encrypt-retain --dest "));
    assert!(exec_lines[0].contains(" --recipient ") && exec_lines[0].ends_with(" \"$@\""));

    // The shipped script with the binary under test, this test's dest and key.
    let edited = shipped
        .replace("/usr/bin/hookrun-copy-encrypt-retain", CER)
        .replace("/mnt/pve/nfs-backup/vzdump", s(dest.path()))
        .replace("backup@example.org", KEY);
    let tools = tempfile::tempdir().unwrap();
    let hook = tools.path().join("copy-encrypt-retain");
    std::fs::write(&hook, edited).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = dump.env();
    env.push(("GNUPGHOME", g.path().into()));
    let mut c = clean(&hook);
    c.args(["log-end", "snapshot", "101"])
        .env("HOOKRUN_JOURNAL_SOCKET", "/nonexistent");
    for (k, v) in &env {
        c.env(k, v);
    }
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let gpg = dest
        .path()
        .join("101")
        .join(format!("{}.gpg", dump.archive_name()));
    assert_eq!(g.decrypt(&gpg), std::fs::read(&dump.archive).unwrap());
}

#[test]
fn companions_shared_with_a_kept_copy_survive() {
    let g = Gnupg::new();
    let dump = Dump::new(".vma.zst", 10_000);
    let dest = tempfile::tempdir().unwrap();
    let d = s(dest.path());
    // A plain copy first, then an encrypted one of the same backup: one day, one bucket.
    let out = run(cer(
        &["--dest", d, "--no-encrypt", "log-end", "snapshot", "101"],
        &dump.env(),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut args = encrypt_args(d, s(g.path()));
    args.extend(["--keep-daily", "1", "log-end", "snapshot", "101"]);
    let out = run(cer(&args, &dump.env()));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Equal times: the larger name (.gpg) is the newer, kept; the plain copy is pruned,
    // but the .log and .notes it shares with the kept copy stay.
    let mut want = vec![
        format!("{}.gpg", dump.archive_name()),
        format!("{}.log", dump.base),
        format!("{}.notes", dump.archive_name()),
    ];
    want.sort();
    assert_eq!(names(&dest.path().join("101")), want, "{err}");
}
