//! Monitoring: `hookrun log` (terminal safety, bounded memory on big record files,
//! rotated files), structured journal fields against a real systemd-journald, and the
//! Prometheus textfile against a real node_exporter and promtool.

// Tests print why they skip when a prerequisite (root, a Debian package) is missing.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use hookrun_tests::{Run, TestEnv, bin, shell_quote, write_file};

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

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// Why a test of a real daemon cannot run here, if it cannot.
fn missing(what: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (it mounts in a private mount namespace)".into());
    }
    what.iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is missing (cargo xtask test installs the Debian packages)"))
}

/// The journal entries of a `journalctl -o json` output.
fn entries(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(m)) => m,
            other => panic!("not a journal entry: {l:?} ({other:?})"),
        })
        .collect()
}

fn field<'a>(e: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> &'a str {
    e.get(name)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no {name} in {e:?}"))
}

/// A real systemd-journald, in a private mount namespace with its own /run, receives
/// hookrun's entries at the usual socket path: selection by the HOOKRUN_* fields works,
/// an entry larger than a datagram arrives whole (memfd), and an async hook's end is
/// there too.
#[test]
fn a_real_journald_selects_hook_runs_by_their_fields() {
    if let Some(why) = missing(&[JOURNALD, "/usr/bin/unshare", "/usr/bin/journalctl"]) {
        eprintln!("SKIP a_real_journald_selects_hook_runs_by_their_fields: {why}");
        return;
    }
    let env = TestEnv::new();
    env.hook("10-fails")
        .sync()
        .phases("*")
        .body("exit 3")
        .write();
    env.hook("20-ok")
        .sync()
        .phases("backup-end")
        .body("exit 0")
        .write();
    env.hook("30-async-fails")
        .phases("backup-end")
        .body("exit 5")
        .write();
    let big = "o".repeat(120_000);
    let big_phase = "p".repeat(120_000);
    let (k, v) = env.config_var();
    let hookrun = bin("hookrun").display().to_string();
    let dir = env.hooks_dir().display().to_string();
    let out_dir = env.path("journal-out");
    std::fs::create_dir(&out_dir).unwrap();
    let script = format!(
        r#"set -eu
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
{JOURNALD} </dev/null >"$OUT/journald.log" 2>&1 &
jpid=$!
trap 'kill $jpid; wait $jpid || true' EXIT
i=0
until [ -S /run/systemd/journal/socket ]; do
    i=$((i+1)); [ $i -lt 200 ] || {{ echo "journald did not start" >&2; exit 1; }}
    sleep 0.05
done
run() {{ {hookrun} run --platform t --hooks-dir {dir} "$@" 2>>"$OUT/stderr" || true; }}
run --phase backup-end --object 101
run --phase "$BIG_PHASE" --object "$BIG"
q() {{ journalctl -D /run/log/journal -a -o json "$@"; }}
i=0
until q HOOKRUN_HOOK=30-async-fails | grep -q HOOKRUN_OUTCOME; do
    i=$((i+1)); [ $i -lt 200 ] || {{ echo "no async end in the journal" >&2; exit 1; }}
    sleep 0.05
done
q HOOKRUN_OUTCOME=failed >"$OUT/failed.json"
q HOOKRUN_OUTCOME=ok >"$OUT/ok.json"
"#,
        hookrun = shell_quote(&hookrun),
        dir = shell_quote(&dir),
    );
    let out = Run::new("/usr/bin/unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", &script])
        .env(k, v)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("OUT", &out_dir)
        .env("BIG", &big)
        .env("BIG_PHASE", &big_phase)
        .deadline(std::time::Duration::from_secs(60))
        .run();
    out.assert_success();
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let stderr = read("stderr");
    assert!(
        !stderr.contains("did not take"),
        "the journal refused an entry: {stderr}"
    );

    let failed = entries(&read("failed.json"));
    let records = env.records();
    let run_id = |hook: &str, phase_len: usize| {
        records
            .iter()
            .find(|r| r.hook() == hook && r.str("phase").unwrap().len() == phase_len)
            .and_then(|r| r.str("run_id"))
            .unwrap()
            .to_owned()
    };
    let sync: Vec<_> = failed
        .iter()
        .filter(|e| field(e, "HOOKRUN_HOOK") == "10-fails")
        .collect();
    assert_eq!(sync.len(), 2, "{failed:?}");
    let small = sync
        .iter()
        .find(|e| field(e, "HOOKRUN_PHASE") == "backup-end")
        .expect("the small entry");
    for (name, want) in [
        ("HOOKRUN_PLATFORM", "t"),
        ("HOOKRUN_OBJECT", "101"),
        ("HOOKRUN_JOB", "t-10-fails-101"),
        ("HOOKRUN_MODE", "sync"),
        ("HOOKRUN_OUTCOME", "failed"),
        ("HOOKRUN_EXIT_CODE", "3"),
        ("PRIORITY", "3"),
        ("SYSLOG_IDENTIFIER", "hookrun"),
        (
            "MESSAGE",
            "10-fails: failed with exit code 3 (on-error fail)",
        ),
    ] {
        assert_eq!(field(small, name), want, "{name} in {small:?}");
    }
    assert_eq!(field(small, "HOOKRUN_RUN_ID"), run_id("10-fails", 10));
    assert!(field(small, "HOOKRUN_DURATION_MS").parse::<u64>().is_ok());
    assert!(
        field(small, "CODE_FILE").ends_with("dispatch.rs"),
        "{small:?}"
    );

    // Larger than one datagram (net.core.wmem_default is 212992): sent through a
    // memfd, and it arrives whole.
    let large = sync
        .iter()
        .find(|e| field(e, "HOOKRUN_PHASE").len() != 10)
        .expect("the large entry");
    assert_eq!(field(large, "HOOKRUN_OBJECT"), big);
    assert_eq!(field(large, "HOOKRUN_PHASE"), big_phase);
    assert!(!large.contains_key("HOOKRUN_TRUNCATED"));
    assert_eq!(
        field(large, "HOOKRUN_RUN_ID"),
        run_id("10-fails", big_phase.len())
    );

    let asynced: Vec<_> = failed
        .iter()
        .filter(|e| field(e, "HOOKRUN_HOOK") == "30-async-fails")
        .collect();
    assert_eq!(asynced.len(), 1, "{failed:?}");
    let a = asynced[0];
    assert_eq!(field(a, "HOOKRUN_MODE"), "async");
    assert_eq!(field(a, "HOOKRUN_EXIT_CODE"), "5");
    assert_eq!(field(a, "HOOKRUN_OBJECT"), "101");
    assert_eq!(field(a, "PRIORITY"), "4");
    assert!(
        field(a, "MESSAGE").starts_with("30-async-fails: failed with exit code 5 (async"),
        "{a:?}"
    );

    // The selection really selects: the ok hook is only under HOOKRUN_OUTCOME=ok.
    assert!(
        failed
            .iter()
            .all(|e| field(e, "HOOKRUN_OUTCOME") == "failed")
    );
    let ok = entries(&read("ok.json"));
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(field(&ok[0], "HOOKRUN_HOOK"), "20-ok");
    assert_eq!(field(&ok[0], "PRIORITY"), "6");
}
