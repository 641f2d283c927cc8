//! Monitoring: `hookrun log` (terminal safety, bounded memory on big record files,
//! rotated files), structured journal fields against a real systemd-journald, and the
//! Prometheus textfile against a real node_exporter and promtool.

// Tests print why they skip when a prerequisite (root, a Debian package) is missing.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use hookrun_tests::{Run, TestEnv, bin, write_file};

/// `hookrun` with the tree's config and nothing else in its environment but `PATH`.
fn hookrun(env: &TestEnv) -> Run {
    let (k, v) = env.config_var();
    Run::new(bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

/// `hookrun run -p t --phase PHASE --object OBJECT` on the tree's hooks directory.
fn dispatch(env: &TestEnv, phase: &str, object: &str) -> Run {
    let dir = env.hooks_dir().display().to_string();
    hookrun(env).args([
        "run",
        "--platform",
        "t",
        "--phase",
        phase,
        "--object",
        object,
        "--hooks-dir",
        &dir,
    ])
}

/// A record line as hookrun writes it.
fn record_line(i: usize, hook: &str, outcome: &str, duration_ms: u64) -> String {
    let exit = if outcome == "ok" { 0 } else { 1 };
    format!(
        "{{\"time\":\"2026-11-{:02}T{:02}:{:02}:{:02}.000Z\",\"run_id\":\"r{i:08}\",\"platform\":\"vzdump\",\"phase\":\"backup-end\",\"object\":\"{}\",\"hook\":\"{hook}\",\"mode\":\"sync\",\"outcome\":\"{outcome}\",\"exit_code\":{exit},\"signal\":null,\"duration_ms\":{duration_ms},\"job\":\"vzdump-{hook}-{}\"}}\n",
        1 + (i / 86_400) % 28,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        100 + i % 7,
        100 + i % 7,
    )
}

#[test]
fn log_escapes_control_characters_so_an_object_cannot_forge_a_row() {
    let env = TestEnv::new();
    env.hook("10-ok").sync().phases("*").body("exit 0").write();
    let forged = "101\n2026-01-01 00:00:00  vzdump         backup-end    999        99-forged              sync  ok             0     0.01s\x1b[2K\x1b[1A";
    dispatch(&env, "backup-end", forged).run().assert_success();

    let out = hookrun(&env).args(["log"]).run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row:\n{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "raw ESC in {:?}", out.stdout);
    assert!(
        lines[1].contains("101\\n2026-01-01") && lines[1].contains("\\u{1b}[2K"),
        "{:?}",
        lines[1]
    );

    // --json keeps the value exact.
    let out = hookrun(&env).args(["log", "--json"]).run();
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["object"], forged);
}

/// Peak RSS (KiB) of a run of `hookrun ARGS`, measured by GNU time.
fn peak_rss_kib(env: &TestEnv, args: &[&str]) -> Option<(u64, String)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("SKIP: /usr/bin/time is missing (Debian package time)");
        return None;
    }
    let report = env.path("time.out");
    let (k, v) = env.config_var();
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(bin("hookrun"))
        .args(args)
        .env_clear()
        .env(k, v)
        .output()
        .expect("run /usr/bin/time");
    assert!(out.status.success(), "{out:?}");
    let kib: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    Some((kib, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn log_reads_a_big_record_file_from_the_end_with_bounded_memory() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.log_dir()).unwrap();
    // ~120 MB of records: reading it whole (as hookrun log once did) takes several
    // times that in memory.
    let mut text = String::with_capacity(130 << 20);
    let mut i = 0;
    while text.len() < 120 << 20 {
        text.push_str(&record_line(i, "20-copy", "ok", 1000 + i as u64 % 500));
        i += 1;
    }
    text.push_str(&record_line(i, "30-last", "failed", 42));
    std::fs::write(env.log_dir().join("runs.jsonl"), &text).unwrap();
    drop(text);

    let Some((kib, stdout)) = peak_rss_kib(&env, &["log", "--last", "5"]) else {
        return;
    };
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    assert!(
        rows[4].contains("30-last") && rows[4].contains("failed"),
        "{stdout}"
    );
    assert!(kib < 32 * 1024, "hookrun log used {kib} KiB of memory");

    // --failed still finds the one failure, reading backwards until it has it.
    let out = hookrun(&env).args(["log", "--failed", "--json"]).run();
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("\"hook\":\"30-last\""));
}

#[test]
fn log_continues_into_rotated_and_compressed_record_files() {
    let env = TestEnv::new();
    let log = env.log_dir();
    std::fs::create_dir_all(&log).unwrap();
    let lines = |range: std::ops::Range<usize>, hook: &str| -> String {
        range.map(|i| record_line(i, hook, "ok", 10)).collect()
    };
    write_file(&log.join("runs.jsonl.2"), lines(0..3, "10-oldest"), 0o640);
    let status = Command::new("gzip")
        .arg("-n")
        .arg(log.join("runs.jsonl.2"))
        .status()
        .expect("run gzip");
    assert!(status.success());
    write_file(&log.join("runs.jsonl.1"), lines(3..5, "20-older"), 0o640);
    write_file(&log.join("runs.jsonl"), lines(5..6, "30-new"), 0o640);

    let out = hookrun(&env).args(["log", "--last", "4", "--json"]).run();
    out.assert_success();
    let hooks: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["hook"].to_string())
        .collect();
    assert_eq!(
        hooks,
        [
            "\"10-oldest\"",
            "\"20-older\"",
            "\"20-older\"",
            "\"30-new\""
        ],
        "{}",
        out.stdout
    );
}
