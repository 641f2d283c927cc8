//! `hookrun-retain` as a program: the seed's command line, output, companions, dry run,
//! protect, locking, exit codes, local time, and properties against the engine.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use hookrun_contrib::calendar::{Zone, civil_utc, utc_timestamp};
use hookrun_contrib::retention::{Item, Policy, plan};
use proptest::prelude::*;

use crate::common::*;

/// `hookrun-retain ARGS` with TZ=UTC0, so that buckets are UTC days.
fn retain(args: &[&str]) -> Command {
    let mut c = Command::new(RETAIN);
    c.args(args).env("TZ", "UTC0");
    c
}

fn vz_name(ts: i64, ext: &str) -> String {
    let c = civil_utc(ts);
    format!(
        "vzdump-qemu-101-{:04}_{:02}_{:02}-{:02}_{:02}_{:02}{ext}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

const SEED_PATTERN: &str = "vzdump-qemu-*.vma.zst.gpg";
const SEED_RULE: &str = "suffix:.vma.zst.gpg:.vma.zst.notes,.log,.rec";

/// The reference's verified example (§4.6): "today" is Saturday 2026-03-21 12:00 UTC and
/// the archives are 0, 1, 2, 10, 11, 12, 13, 20, 40, 70 and 100 days old, each with its
/// .log, .vma.zst.notes and .rec. Returns (age in days -> archive name).
fn seed_dir(dir: &Path) -> Vec<(i64, String)> {
    let today = utc_timestamp(2026, 3, 21, 12, 0, 0);
    let mut out = Vec::new();
    for age in [0, 1, 2, 10, 11, 12, 13, 20, 40, 70, 100] {
        let ts = today - age * 86_400;
        let name = vz_name(ts, ".vma.zst.gpg");
        file_at(&dir.join(&name), b"archive", ts);
        let base = vz_name(ts, "");
        for comp in [".log", ".vma.zst.notes", ".rec"] {
            file_at(&dir.join(format!("{base}{comp}")), b"c", ts);
        }
        out.push((age, name));
    }
    file_at(&dir.join("unrelated.txt"), b"x", today - 1000 * 86_400);
    out
}

/// The seed's `retentions` command line, with only the program name changed.
fn seed_args(dir: &Path) -> Vec<String> {
    [
        dir.to_str().unwrap(),
        SEED_PATTERN,
        "-l",
        "3",
        "-d",
        "5",
        "-w",
        "3",
        "-m",
        "1",
        "-v",
        "info",
        "--delete-companions",
        SEED_RULE,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_seed_command_line_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let files = seed_dir(dir.path());
    let args = seed_args(dir.path());
    let out = run(retain(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));

    // Worked out in the engine's table test "reference example, Saturday": pruned are
    // the archives 12 and 100 days old, with all three companions.
    let pruned: BTreeSet<i64> = [12, 100].into();
    let mut want = vec!["unrelated.txt".to_owned()];
    for (age, name) in &files {
        if !pruned.contains(age) {
            let base = name.strip_suffix(".vma.zst.gpg").unwrap();
            want.push(name.clone());
            for comp in [".log", ".vma.zst.notes", ".rec"] {
                want.push(format!("{base}{comp}"));
            }
        }
    }
    want.sort();
    assert_eq!(names(dir.path()), want, "{stdout}");

    // One decision line per file, aligned, newest first; totals; deletions.
    let name = |age: i64| files.iter().find(|f| f.0 == age).unwrap().1.clone();
    let width = name(0).len() + 1;
    for (age, why) in [
        (0, "Keeping for mode 'days' 01 / 05"),
        (11, "Keeping for mode 'days' 05 / 05"),
        (12, "Pruning: not matched by any retention rule"),
        (13, "Keeping for mode 'weeks' 01 / 03"),
        (40, "Keeping for mode 'weeks' 03 / 03"),
        (70, "Keeping for mode 'months' 01 / 01"),
        (100, "Pruning: not matched by any retention rule"),
    ] {
        let line = format!("[INFO] {:<width$}: {why}", name(age));
        assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
    }
    let decisions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("[INFO] vzdump-"))
        .collect();
    assert_eq!(decisions.len(), 11, "{stdout}");
    assert!(decisions[0].contains(&name(0)) && decisions[10].contains(&name(100)));
    for total in [
        "[INFO] Total files found:     011",
        "[INFO] Total files protected: 000",
        "[INFO] Total files to retain: 009",
        "[INFO] Total files to delete: 002",
        "[INFO] Total files deleted:   002",
    ] {
        assert!(stdout.contains(total), "missing {total:?} in\n{stdout}");
    }
    let base12 = name(12).strip_suffix(".vma.zst.gpg").unwrap().to_owned();
    for line in [
        format!("[INFO] DELETING: {}", name(12)),
        format!("[INFO] DELETING (COMPANION): {base12}.log"),
        format!("[INFO] DELETING (COMPANION): {base12}.rec"),
        format!("[INFO] DELETING (COMPANION): {base12}.vma.zst.notes"),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
    }
    assert!(!dir.path().join(".retentions.lock").exists());
}

#[test]
fn dry_run_deletes_nothing_and_prints_what_would_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let files = seed_dir(dir.path());
    let before = names(dir.path());
    let mut args = seed_args(dir.path());
    args.retain(|a| a != "-v" && a != "info");
    args.push("-X".into()); // -X implies -v info
    let out = run(retain(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        names(dir.path()),
        before,
        "a dry run must not delete anything"
    );
    let old = &files.iter().find(|f| f.0 == 100).unwrap().1;
    let base = old.strip_suffix(".vma.zst.gpg").unwrap();
    for line in [
        format!("[INFO] DRY-RUN DELETE: {old}"),
        format!("[INFO] DRY-RUN DELETE (COMPANION): {base}.log"),
        format!("[INFO] DRY-RUN DELETE (COMPANION): {base}.vma.zst.notes"),
        format!("[INFO] DRY-RUN DELETE (COMPANION): {base}.rec"),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("DELETING"), "{stdout}");
}

#[test]
fn buckets_are_local_time() {
    // 23:30Z and 00:10Z: two days in UTC, one day at UTC+1 (TZ "<+01>-1"), and with
    // 12:00Z also one day at UTC-5 ("<-05>5"). -d 2, list-only prints what is pruned.
    // TZ is read as the C library reads it: POSIX rules, or a name in /usr/share/zoneinfo.
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("a-1923", utc_timestamp(2026, 3, 19, 23, 30, 0)),
        ("a-2000", utc_timestamp(2026, 3, 20, 0, 10, 0)),
        ("a-1912", utc_timestamp(2026, 3, 19, 12, 0, 0)),
    ];
    for (n, ts) in files {
        file_at(&dir.path().join(n), b"", ts);
    }
    let d = dir.path().to_str().unwrap();
    for (tz, pruned) in [
        ("UTC0", vec!["a-1912"]),
        ("<+01>-1", vec!["a-1923"]),
        ("<-05>5", vec!["a-1923", "a-1912"]),
        // A zone from the tz database (UTC+1 in March 2026, before its DST starts).
        ("Europe/Berlin", vec!["a-1923"]),
    ] {
        let out = run(Command::new(RETAIN)
            .args([d, "a-*", "-d", "2", "-L"])
            .env("TZ", tz));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let listed: Vec<String> = text(&out.stdout)
            .lines()
            .map(|l| {
                Path::new(l)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(listed, pruned, "TZ={tz}");
    }
    assert_eq!(names(dir.path()).len(), 3, "-L deletes nothing");
}

#[test]
fn list_only_separators() {
    let dir = tempfile::tempdir().unwrap();
    for (i, n) in ["x1", "x2", "x3"].iter().enumerate() {
        file_at(&dir.path().join(n), b"", 1_000_000 + i as i64 * 100);
    }
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "x*", "-l", "1", "-L", "\\0"]));
    let abs = std::path::absolute(dir.path()).unwrap();
    let want = format!(
        "{}\0{}\0",
        abs.join("x2").display(),
        abs.join("x1").display()
    );
    assert_eq!(text(&out.stdout), want);
    assert_eq!(names(dir.path()), ["x1", "x2", "x3"]);
}

#[test]
fn protect_excludes_files_entirely() {
    let dir = tempfile::tempdir().unwrap();
    let t = utc_timestamp(2026, 3, 20, 12, 0, 0);
    file_at(&dir.path().join("b-new-keep.tar"), b"", t);
    file_at(&dir.path().join("b-mid.tar"), b"", t - 3600);
    file_at(&dir.path().join("b-old.tar"), b"", t - 7200);
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[
        d, "b-*.tar", "-l", "1", "-p", "*keep*", "-v", "info",
    ]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The protected file is not counted: -l 1 keeps b-mid, the newest unprotected one.
    assert_eq!(
        names(dir.path()),
        ["b-mid.tar", "b-new-keep.tar"],
        "{stdout}"
    );
    assert!(
        stdout.contains("b-new-keep.tar : Protected by glob: '*keep*'"),
        "{stdout}"
    );
    assert!(stdout.contains("Total files found:     002"), "{stdout}");
    assert!(stdout.contains("Total files protected: 001"), "{stdout}");
}

#[test]
fn a_companion_that_is_a_candidate_is_an_integrity_error_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    file_at(&dir.path().join("f.new"), b"", 2_000_000);
    file_at(&dir.path().join("f.old"), b"", 1_000_000);
    let d = dir.path().to_str().unwrap();
    // f.old is pruned; its companion f.new is kept: deleting it would be wrong.
    let out = run(retain(&[
        d,
        "f.*",
        "-l",
        "1",
        "--delete-companions",
        "suffix:.old:.new",
    ]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("must not be deleted"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(names(dir.path()), ["f.new", "f.old"]);
    // A companion outside the directory is refused the same way.
    let out = run(retain(&[
        d,
        "f.*",
        "-l",
        "1",
        "--delete-companions",
        "suffix:.old:/../x",
    ]));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(names(dir.path()), ["f.new", "f.old"]);
}

#[test]
fn prefix_companions_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    file_at(&dir.path().join("db-1.dump"), b"", 2_000_000);
    file_at(&dir.path().join("db-0.dump"), b"", 1_000_000);
    file_at(&dir.path().join("sum:db-0.dump"), b"", 1_000_000);
    file_at(&dir.path().join("sum:db-1.dump"), b"", 2_000_000);
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[
        d,
        "db-*.dump",
        "-l",
        "1",
        "--delete-companions",
        r"prefix:db-:sum\:db-",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(names(dir.path()), ["db-1.dump", "sum:db-1.dump"]);
}

#[test]
fn a_held_lock_exits_5_and_a_stale_lock_file_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    file_at(&dir.path().join("a1"), b"", 2_000_000);
    file_at(&dir.path().join("a0"), b"", 1_000_000);
    let d = dir.path().to_str().unwrap();

    let held = hookrun_contrib::dirlock::lock(dir.path()).unwrap();
    let out = run(retain(&[d, "a*", "-l", "1"]));
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(".retentions.lock"),
        "{err}"
    );
    assert_eq!(names(dir.path()), [".retentions.lock", "a0", "a1"]);
    drop(held);

    // What a killed `retentions` (or a SIGKILLed run) leaves behind: a lock file that
    // nobody holds. It does not block, and is gone afterwards.
    std::fs::write(dir.path().join(".retentions.lock"), b"").unwrap();
    let out = run(retain(&[d, "a*", "-l", "1"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(names(dir.path()), ["a1"]);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec![d],
        vec![missing, "*", "-d", "1"],
        vec![d, "*", "-d", "0"],
        vec![d, "*", "-d", "x"],
        vec![d, "*", "-d", "1", "-d", "2"],
        vec![d, "*", "-v", "loud"],
        vec![d, "*", "--delete-companions", "suffix:.a"],
        vec![d, "*", "--delete-companions", "middle:.a:.b"],
        vec![d, "*", "--regex-mode"],
        vec![d, "*", "--folder-mode"],
        vec![d, "*", "-L", "-v", "info"],
        vec![d, "*", "-L", "--delete-companions", "suffix:.a:.b"],
        vec![d, "sub/*", "-d", "1"],
        vec![d, "*", "--max-size", "12Q"],
        vec![d, "*", "--max-age", "0"],
        vec![d, "*", "--bogus"],
    ];
    for args in cases {
        let out = run(retain(&args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} must say why");
    }
}

#[test]
fn capital_h_is_help_and_small_h_is_hours() {
    let out = run(retain(&["-H"]));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("-h, --hours") && help.contains("-H, --help"),
        "{help}"
    );
    assert!(help.contains("Exit codes"), "{help}");

    let dir = tempfile::tempdir().unwrap();
    let t = utc_timestamp(2026, 3, 20, 10, 0, 0);
    file_at(&dir.path().join("h-1030"), b"", t + 1800);
    file_at(&dir.path().join("h-1010"), b"", t + 600);
    file_at(&dir.path().join("h-0950"), b"", t - 600);
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "h-*", "-h", "2"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(names(dir.path()), ["h-0950", "h-1030"]);

    let out = run(retain(&["--version"]));
    assert!(text(&out.stdout).contains("hookrun-retain"));
}

#[test]
fn age_type_selects_the_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    // By mtime "m-new" is newer; by atime "a-new" is.
    let p1 = dir.path().join("m-new");
    let p2 = dir.path().join("a-new");
    std::fs::write(&p1, b"").unwrap();
    std::fs::write(&p2, b"").unwrap();
    set_times(&p1, 2_000_000, 1_000_000);
    set_times(&p2, 1_000_000, 2_000_000);
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "*", "-l", "1", "--age-type", "atime", "-L"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).trim_end().ends_with("/m-new"),
        "{}",
        text(&out.stdout)
    );
    let out = run(retain(&[d, "*", "-l", "1", "-L"]));
    assert!(
        text(&out.stdout).trim_end().ends_with("/a-new"),
        "mtime is the default"
    );
    let out = run(retain(&[
        d,
        "*",
        "-l",
        "1",
        "--age-type",
        "ctime",
        "-v",
        "warn",
        "-X",
    ]));
    assert!(text(&out.stdout).contains("[WARN] age-type 'ctime'"));
}

#[test]
fn symlinks_are_never_candidates() {
    let dir = tempfile::tempdir().unwrap();
    file_at(&dir.path().join("s-real"), b"", 2_000_000);
    file_at(&dir.path().join("s-old"), b"", 1_000_000);
    std::os::unix::fs::symlink("s-old", dir.path().join("s-link")).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "s-*", "-l", "1", "-v", "warn"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("s-link' is a symlink -> It is ignored"));
    assert_eq!(names(dir.path()), ["s-link", "s-real"]);
}

#[test]
fn no_files_is_success_and_no_rules_keeps_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "*.none", "-d", "1", "-v", "warn"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("[WARN] No files found"));
    file_at(&dir.path().join("k1"), b"", 1);
    file_at(&dir.path().join("k2"), b"", 2);
    let out = run(retain(&[d, "k*", "-v", "info"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Keeping: no retention rules specified"));
    assert_eq!(names(dir.path()), ["k1", "k2"]);
}

#[test]
fn filters_move_kept_files_to_prune() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        file_at(
            &dir.path().join(format!("f{i}")),
            &[0u8; 100],
            1_000_000 + i * 100,
        );
    }
    let d = dir.path().to_str().unwrap();
    let out = run(retain(&[d, "f*", "-l", "4", "-f", "2"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(names(dir.path()), ["f2", "f3"]);
    let out = run(retain(&[d, "f*", "-l", "4", "-s", "150"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(names(dir.path()), ["f3"]);
}

// ---------------------------------------------------------------------------------------
// Properties of the program, against the engine
// ---------------------------------------------------------------------------------------

fn arb_files() -> impl Strategy<Value = Vec<i64>> {
    let base = utc_timestamp(2026, 3, 20, 12, 0, 0);
    proptest::collection::vec(0i64..800 * 86_400, 0..25)
        .prop_map(move |v| v.into_iter().map(|b| base - b).collect())
}

/// (--last, -d, -w, -m, -y)
type Counts = (
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
);

fn arb_counts() -> impl Strategy<Value = Counts> {
    let n = || proptest::option::weighted(0.5, 1u32..5);
    (n(), n(), n(), n(), n())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A dry run deletes nothing (names and times unchanged); the real run then deletes
    /// exactly what the engine prunes, keeps the rest (kept ∪ pruned = all), and with
    /// --last N the N newest survive.
    #[test]
    fn the_program_does_what_the_engine_decides(times in arb_files(), counts in arb_counts()) {
        let (last, days, weeks, months, years) = counts;
        let dir = tempfile::tempdir().unwrap();
        let mut names_in = Vec::new();
        for (i, &ts) in times.iter().enumerate() {
            let n = format!("p{i:03}");
            file_at(&dir.path().join(&n), b"", ts);
            names_in.push(n);
        }
        let d = dir.path().to_str().unwrap().to_owned();
        let mut args = vec![d, "p*".to_owned()];
        for (flag, v) in [("-l", last), ("-d", days), ("-w", weeks), ("-m", months), ("-y", years)] {
            if let Some(v) = v {
                args.push(flag.into());
                args.push(v.to_string());
            }
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();

        let stat = |p: &Path| -> Vec<(String, std::time::SystemTime)> {
            names(p).into_iter().map(|n| {
                let m = std::fs::metadata(p.join(&n)).unwrap().modified().unwrap();
                (n, m)
            }).collect()
        };
        let before = stat(dir.path());
        let mut dry = argv.clone();
        dry.push("-X");
        let out = run(retain(&dry));
        prop_assert_eq!(out.status.code(), Some(0));
        prop_assert_eq!(stat(dir.path()), before, "the dry run changed the directory");

        let out = run(retain(&argv));
        prop_assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

        // The engine, in-process, on the same files in the tool's order (newest
        // first, equal times by name, larger first).
        let mut sorted: Vec<(i64, String)> = times.iter().copied().zip(names_in.iter().cloned()).collect();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let items: Vec<Item> = sorted.iter().map(|(t, _)| Item { time: *t, size: 0 }).collect();
        let policy = Policy { last, days, weeks, months, years, ..Policy::default() };
        let p = plan(&items, &policy, Zone::Fixed(0));
        let kept: BTreeSet<String> = p.kept().map(|i| sorted[i].1.clone()).collect();
        let pruned: BTreeSet<String> = p.pruned().map(|i| sorted[i].1.clone()).collect();
        let left: BTreeSet<String> = names(dir.path()).into_iter().collect();
        prop_assert_eq!(&left, &kept);
        prop_assert!(kept.is_disjoint(&pruned));
        prop_assert_eq!(kept.len() + pruned.len(), times.len());
        if let Some(n) = last {
            for (_, name) in sorted.iter().take(n as usize) {
                prop_assert!(left.contains(name), "{} is one of the {} newest", name, n);
            }
        }
    }
}
