//! Monitoring: `hookrun log` (terminal safety, bounded memory on big record files,
//! rotated files), structured journal fields against a real systemd-journald, and the
//! Prometheus textfile against a real node_exporter and promtool.

use std::path::Path;
use std::process::Command;

use hookrun_tests::{Run, TestEnv, bin, require, shell_quote, write_file};

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
    if !require::command_from("/usr/bin/time", "time") {
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

    // The summary streams all of it.
    let Some((kib, stdout)) = peak_rss_kib(&env, &["log", "--summary", "--json"]) else {
        return;
    };
    assert!(
        kib < 32 * 1024,
        "hookrun log --summary used {kib} KiB of memory"
    );
    let sets: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: u64 = sets.iter().map(|v| v["runs"].as_u64().unwrap()).sum();
    assert_eq!(runs, i as u64 + 1);
    assert_eq!(sets.len(), 7 + 1, "seven objects of 20-copy and 30-last");

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

/// Whether a test of a real daemon can run here: it mounts in a private mount namespace,
/// and runs `programs`.
fn daemon_prerequisites(programs: &[&str]) -> bool {
    require::cap_sys_admin() && programs.iter().all(|p| require::command(p))
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
    if !daemon_prerequisites(&[JOURNALD, "/usr/bin/unshare", "/bin/journalctl"]) {
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
q HOOKRUN_HOOK=30-async-fails >"$OUT/async.json"
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
    // The platform's log (stderr) reads as it does without a journal.
    assert!(
        stderr
            .lines()
            .any(|l| l == "hookrun: error: 10-fails: failed with exit code 3 (on-error fail)"),
        "{stderr}"
    );
    assert!(!stderr.contains("HOOKRUN_"), "{stderr}");

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

    // Not only the end: the dispatcher's "started async" line, and what the hook's
    // supervisor logs, are selected by the hook's fields too.
    let async_entries = entries(&read("async.json"));
    assert!(
        async_entries
            .iter()
            .any(|e| field(e, "MESSAGE").contains("30-async-fails: started async")),
        "{async_entries:?}"
    );
    assert!(
        async_entries
            .iter()
            .all(|e| field(e, "HOOKRUN_RUN_ID") == field(&async_entries[0], "HOOKRUN_RUN_ID")),
        "{async_entries:?}"
    );
}

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMTOOL: &str = "/usr/bin/promtool";

/// A daemon started by a test, killed and reaped when the test ends, however it ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` over HTTP/1.0 on loopback.
fn scrape(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!("bad answer: {text:.200}"))),
    }
}

/// node_exporter with only the textfile collector, on a free loopback port.
fn node_exporter(dir: &Path, log: &Path) -> (Daemon, u16) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut d = Daemon(
            Command::new(NODE_EXPORTER)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .expect("start node_exporter"),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if d.0.try_wait().unwrap().is_some() {
                break; // the port was taken in between: try another
            }
            if scrape(port).is_ok() {
                return (d, port);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    panic!(
        "node_exporter did not serve /metrics: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

type Labels = std::collections::BTreeMap<String, String>;

/// The samples of an exposition-format text: (name, labels, value).
fn samples(text: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => {
                let (n, v) = line.split_once(' ').unwrap();
                out.push((n.to_owned(), Labels::new(), v.trim().parse().unwrap()));
                continue;
            }
        };
        let mut labels = Labels::new();
        let mut chars = rest.chars().peekable();
        loop {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next().unwrap() {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key.trim_start_matches(',').to_owned(), value);
            if chars.peek() == Some(&',') {
                chars.next();
            }
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
        }
        let value: String = chars.collect();
        out.push((name.to_owned(), labels, value.trim().parse().unwrap()));
    }
    out
}

/// The value of `name` for the set (platform t, `phase`, `hook`, `object`).
fn value(
    all: &[(String, Labels, f64)],
    name: &str,
    phase: &str,
    hook: &str,
    object: &str,
) -> Option<f64> {
    let found: Vec<f64> = all
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.get("platform").map(String::as_str) == Some("t")
                && l.get("phase").map(String::as_str) == Some(phase)
                && l.get("hook").map(String::as_str) == Some(hook)
                && l.get("object").map(String::as_str) == Some(object)
        })
        .map(|s| s.2)
        .collect();
    assert!(found.len() <= 1, "{name} {hook} {object}: {found:?}");
    found.first().copied()
}

fn outcome_label(all: &[(String, Labels, f64)], hook: &str, object: &str) -> String {
    let s: Vec<&Labels> = all
        .iter()
        .filter(|(n, l, _)| {
            n == "hookrun_hook_last_outcome" && l["hook"] == hook && l["object"] == object
        })
        .map(|s| &s.1)
        .collect();
    assert_eq!(s.len(), 1, "{hook} {object}: {s:?}");
    s[0]["outcome"].clone()
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sync, async, failing and timed-out hooks, and concurrent dispatches with async hooks
/// of their own, all in one textfile that a real node_exporter serves without error and
/// promtool accepts.
#[test]
fn a_real_node_exporter_serves_the_textfile_after_every_kind_of_run() {
    if !require::command_from(NODE_EXPORTER, "prometheus-node-exporter")
        || !require::command_from(PROMTOOL, "prometheus")
    {
        return;
    }
    let env = TestEnv::new();
    let textdir = env.path("textfile");
    std::fs::create_dir(&textdir).unwrap();
    let prom = textdir.join("hookrun.prom");
    let mut config = std::fs::read_to_string(env.config_path()).unwrap();
    config.push_str(&format!("metrics_textfile = \"{}\"\n", prom.display()));
    std::fs::write(env.config_path(), config).unwrap();

    env.hook("10-ok")
        .sync()
        .phases("backup-end")
        .body("exit 0")
        .write();
    env.hook("20-fails")
        .sync()
        .phases("backup-end")
        .header("on-error: warn")
        .body("exit 3")
        .write();
    env.hook("30-times-out")
        .sync()
        .phases("backup-end")
        .header("timeout: 1")
        .header("on-error: warn")
        .body("sleep 30")
        .write();
    env.hook("40-async-fails")
        .phases("backup-end")
        .body("sleep 0.2; exit 6")
        .write();
    env.hook("45-async-times-out")
        .phases("backup-end")
        .header("timeout: 1")
        .body("sleep 30")
        .write();
    for h in ["60-conc-a", "61-conc-b"] {
        env.hook(h).sync().phases("conc").body("exit 0").write();
    }
    env.hook("70-conc-async")
        .phases("conc")
        .body("exit 0")
        .write();

    let t0 = now_secs();
    dispatch(&env, "backup-end", "101").run().assert_success();
    // Label values are escaped as the exposition format wants: node_exporter must
    // parse this object back exactly.
    let odd = "we\"ird\\obj\nx";
    env.hook("15-odd")
        .sync()
        .phases("odd")
        .body("exit 0")
        .write();
    dispatch(&env, "odd", odd).run().assert_success();
    // Two rounds of eight dispatches at once, each with two sync and one async hook:
    // every writer must see the others' series, or a counter stays at 1.
    let objects: Vec<String> = (201..209).map(|n| n.to_string()).collect();
    for _round in 0..2 {
        let running: Vec<_> = objects
            .iter()
            .map(|o| dispatch(&env, "conc", o).spawn())
            .collect();
        for r in running {
            r.wait().assert_success();
        }
    }
    // The async hooks end on their own: wait for their series (after their records).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&prom).unwrap_or_default();
        let all = samples(&text);
        let done = value(
            &all,
            "hookrun_hook_runs_total",
            "backup-end",
            "40-async-fails",
            "101",
        ) == Some(1.0)
            && value(
                &all,
                "hookrun_hook_runs_total",
                "backup-end",
                "45-async-times-out",
                "101",
            ) == Some(1.0)
            && objects.iter().all(|o| {
                value(&all, "hookrun_hook_runs_total", "conc", "70-conc-async", o) == Some(2.0)
            });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "async series never complete:\n{text}\nrecords: {}",
            env.records().len()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let t1 = now_secs();

    let (_daemon, port) = node_exporter(&textdir, &env.path("node_exporter.log"));
    let body = scrape(port).unwrap();
    let all = samples(&body);
    let v = |name: &str, phase: &str, hook: &str, object: &str| {
        value(&all, name, phase, hook, object)
            .unwrap_or_else(|| panic!("no {name} for {hook} {object} in\n{body}"))
    };
    let scrape_error: Vec<f64> = all
        .iter()
        .filter(|s| s.0 == "node_textfile_scrape_error")
        .map(|s| s.2)
        .collect();
    assert_eq!(scrape_error, [0.0], "{body}");

    // Sync ok.
    assert_eq!(
        v("hookrun_hook_runs_total", "backup-end", "10-ok", "101"),
        1.0
    );
    assert_eq!(
        v("hookrun_hook_failures_total", "backup-end", "10-ok", "101"),
        0.0
    );
    assert_eq!(
        v("hookrun_hook_last_success", "backup-end", "10-ok", "101"),
        1.0
    );
    assert_eq!(
        v("hookrun_hook_last_exit_code", "backup-end", "10-ok", "101"),
        0.0
    );
    assert_eq!(outcome_label(&all, "10-ok", "101"), "ok");
    let start = v(
        "hookrun_hook_last_start_timestamp_seconds",
        "backup-end",
        "10-ok",
        "101",
    );
    let end = v(
        "hookrun_hook_last_end_timestamp_seconds",
        "backup-end",
        "10-ok",
        "101",
    );
    let ok_at = v(
        "hookrun_hook_last_success_timestamp_seconds",
        "backup-end",
        "10-ok",
        "101",
    );
    assert!(
        t0 - 1.0 <= start && start <= end && end <= t1 + 1.0,
        "{t0} {start} {end} {t1}"
    );
    assert_eq!(ok_at, end);
    // Sync failure.
    assert_eq!(
        v(
            "hookrun_hook_failures_total",
            "backup-end",
            "20-fails",
            "101"
        ),
        1.0
    );
    assert_eq!(
        v("hookrun_hook_last_success", "backup-end", "20-fails", "101"),
        0.0
    );
    assert_eq!(
        v(
            "hookrun_hook_last_exit_code",
            "backup-end",
            "20-fails",
            "101"
        ),
        3.0
    );
    assert_eq!(outcome_label(&all, "20-fails", "101"), "failed");
    assert_eq!(
        value(
            &all,
            "hookrun_hook_last_success_timestamp_seconds",
            "backup-end",
            "20-fails",
            "101"
        ),
        None,
        "never succeeded"
    );
    // Timeout: SIGTERM after 1 s.
    assert_eq!(outcome_label(&all, "30-times-out", "101"), "timeout");
    assert_eq!(
        v(
            "hookrun_hook_last_exit_code",
            "backup-end",
            "30-times-out",
            "101"
        ),
        143.0
    );
    let d = v(
        "hookrun_hook_last_duration_seconds",
        "backup-end",
        "30-times-out",
        "101",
    );
    assert!((1.0..10.0).contains(&d), "{d}");
    assert_eq!(
        v(
            "hookrun_hook_failures_total",
            "backup-end",
            "30-times-out",
            "101"
        ),
        1.0
    );
    // Async failure, written by its supervisor.
    assert_eq!(outcome_label(&all, "40-async-fails", "101"), "failed");
    assert_eq!(
        v(
            "hookrun_hook_last_exit_code",
            "backup-end",
            "40-async-fails",
            "101"
        ),
        6.0
    );
    assert!(
        v(
            "hookrun_hook_last_duration_seconds",
            "backup-end",
            "40-async-fails",
            "101"
        ) >= 0.2
    );
    // Async timeout, killed by its supervisor after 1 s.
    assert_eq!(outcome_label(&all, "45-async-times-out", "101"), "timeout");
    assert_eq!(
        v(
            "hookrun_hook_last_exit_code",
            "backup-end",
            "45-async-times-out",
            "101"
        ),
        143.0
    );
    let d = v(
        "hookrun_hook_last_duration_seconds",
        "backup-end",
        "45-async-times-out",
        "101",
    );
    assert!((1.0..10.0).contains(&d), "{d}");
    // Concurrent dispatches lost nothing.
    for o in &objects {
        for h in ["60-conc-a", "61-conc-b", "70-conc-async"] {
            assert_eq!(v("hookrun_hook_runs_total", "conc", h, o), 2.0, "{h} {o}");
            assert_eq!(v("hookrun_hook_last_success", "conc", h, o), 1.0, "{h} {o}");
        }
    }
    assert_eq!(
        v("hookrun_hook_runs_total", "odd", "15-odd", odd),
        1.0,
        "{body}"
    );
    let hookrun_sets = all
        .iter()
        .filter(|s| s.0 == "hookrun_hook_runs_total")
        .count();
    assert_eq!(hookrun_sets, 5 + 1 + objects.len() * 3, "{body}");
    // Nothing but the file (and its lock) is left in the collector's directory.
    let mut names: Vec<String> = std::fs::read_dir(&textdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".hookrun.prom.lock", "hookrun.prom"]);

    // promtool's linter accepts the file as it is.
    let out = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {out:?}"
    );
}

/// The README's alert rules, verbatim: the ```yaml block that starts with their file name.
fn readme_alert_rules() -> String {
    let readme =
        std::fs::read_to_string(hookrun_tests::workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# /etc/prometheus/rules/hookrun.yml\n")
        .expect("the README has the alert rules block")
        + "```yaml\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

/// The README's example alert rules are valid and fire when they should, and only then
/// (`promtool test rules` on series like hookrun's).
#[test]
fn the_readmes_alert_rules_pass_promtool() {
    if !require::command_from(PROMTOOL, "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("hookrun.yml");
    std::fs::write(&rules, readme_alert_rules()).unwrap();
    let out = Command::new(PROMTOOL)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool check rules: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 2 rules found"),
        "{out:?}"
    );

    let labels = |hook: &str| {
        format!("platform=\"vzdump\",phase=\"backup-end\",hook=\"{hook}\",object=\"101\"")
    };
    let tests = format!(
        r#"rule_files:
  - hookrun.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hookrun_hook_last_outcome{{{copy},outcome="failed"}}'
        values: '1x1700'
      - series: 'hookrun_hook_last_outcome{{{ok},outcome="ok"}}'
        values: '1x1700'
      - series: 'hookrun_hook_last_outcome{{{skipped},outcome="skipped"}}'
        values: '1x1700'
      - series: 'hookrun_hook_last_success_timestamp_seconds{{{ok}}}'
        values: '0x1700'
    alert_rule_test:
      - eval_time: 5m
        alertname: HookrunHookFailed
        exp_alerts:
          - exp_labels:
              severity: warning
              platform: vzdump
              phase: backup-end
              hook: 20-copy
              object: "101"
              outcome: failed
            exp_annotations:
              summary: "hookrun hook 20-copy (vzdump backup-end 101) ended failed"
      - eval_time: 25h
        alertname: HookrunHookNoSuccessFor26h
        exp_alerts: []
      - eval_time: 27h
        alertname: HookrunHookNoSuccessFor26h
        exp_alerts:
          - exp_labels:
              severity: warning
              platform: vzdump
              phase: backup-end
              hook: 10-ok
              object: "101"
            exp_annotations:
              summary: "hookrun hook 10-ok (vzdump backup-end 101) has not succeeded for 1d 3h 0m 0s"
"#,
        copy = labels("20-copy"),
        ok = labels("10-ok"),
        skipped = labels("30-skipped"),
    );
    let test_file = dir.path().join("hookrun_test.yml");
    std::fs::write(&test_file, tests).unwrap();
    let out = Command::new(PROMTOOL)
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool test rules: {out:?}");
}

/// RFC 3339 (UTC, milliseconds) of a Unix time, as hookrun writes record times.
fn rfc3339(secs: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn summary_record(at: i64, hook: &str, object: &str, outcome: &str, duration_ms: u64) -> String {
    format!(
        "{{\"time\":\"{}\",\"run_id\":\"r{at}\",\"platform\":\"vzdump\",\"phase\":\"backup-end\",\"object\":\"{object}\",\"hook\":{},\"mode\":\"sync\",\"outcome\":\"{outcome}\",\"exit_code\":{},\"signal\":null,\"duration_ms\":{duration_ms},\"job\":\"vzdump-{object}\"}}\n",
        rfc3339(at),
        serde_json::Value::from(hook),
        if outcome == "ok" { 0 } else { 2 },
    )
}

#[test]
fn log_summary_streams_rotated_files_and_marks_failures() {
    let env = TestEnv::new();
    let log = env.log_dir();
    std::fs::create_dir_all(&log).unwrap();
    let now = now_secs() as i64;
    let day = 86_400;
    // Ten days ago (compressed by logrotate), three days ago (rotated), today.
    let old: String = (0..3)
        .map(|i| summary_record(now - 10 * day + i, "20-copy", "101", "ok", 9000))
        .collect();
    write_file(&log.join("runs.jsonl.2"), old, 0o640);
    let status = Command::new("gzip")
        .arg("-n")
        .arg(log.join("runs.jsonl.2"))
        .status()
        .expect("run gzip");
    assert!(status.success());
    let mid = summary_record(now - 3 * day, "20-copy", "101", "failed", 500)
        + &summary_record(now - 3 * day + 10, "20-copy", "102", "ok", 1000);
    write_file(&log.join("runs.jsonl.1"), mid, 0o640);
    let new = summary_record(now - 3600, "20-copy", "101", "ok", 2000)
        + &summary_record(now - 60, "20-copy", "101", "ok", 4000)
        + &summary_record(now - 30, "10-announce\x1b[31m\nforged", "101", "ok", 10);
    write_file(&log.join("runs.jsonl"), new, 0o640);

    let json = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = hookrun(&env)
            .args(["log", "--summary", "--json"])
            .args(extra)
            .run();
        out.assert_success();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = json(&[]);
    assert_eq!(all.len(), 3, "{all:?}");
    let copy101 = all
        .iter()
        .find(|v| v["hook"] == "20-copy" && v["object"] == "101")
        .unwrap();
    assert_eq!(copy101["runs"], 6);
    assert_eq!(copy101["failures"], 1);
    assert_eq!(copy101["max_ms"], 9000);
    // 500 2000 4000 9000 9000 9000: the median is between the 3rd and 4th.
    assert_eq!(copy101["median_ms"], 6500);
    assert_eq!(copy101["last_success"], rfc3339(now - 60));
    assert_eq!(copy101["last_failure"], rfc3339(now - 3 * day));
    let recent: Vec<(u64, bool)> = copy101["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["duration_ms"].as_u64().unwrap(),
                r["failed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recent,
        [
            (9000, false),
            (9000, false),
            (9000, false),
            (500, true),
            (2000, false),
            (4000, false)
        ]
    );
    // --since leaves the old runs out (and with them the compressed file's).
    let week = json(&["--since", "7d"]);
    let copy101 = week
        .iter()
        .find(|v| v["hook"] == "20-copy" && v["object"] == "101")
        .unwrap();
    assert_eq!(copy101["runs"], 3);
    assert_eq!(copy101["max_ms"], 4000);
    assert_eq!(json(&["--since", "2h"]).len(), 2);

    // The table: a header and one line per hook and object, plain in a pipe, escaped.
    let out = hookrun(&env).args(["log", "--summary"]).run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("platform  hook"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
    assert!(
        out.stdout.contains("10-announce\\u{1b}[31m\\nforged"),
        "{}",
        out.stdout
    );
    let row = lines
        .iter()
        .find(|l| l.contains("20-copy") && l.contains(" 101 "))
        .unwrap();
    assert!(row.ends_with("███x▁▃"), "{row:?}");
    assert!(row.contains("6.5s") && row.contains("9.0s"), "{row:?}");

    // On a terminal, failures are red; NO_COLOR turns that off.
    let tty = |no_color: bool| {
        let (k, v) = env.config_var();
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            &format!("{} log --summary", bin("hookrun").display()),
            "/dev/null",
        ])
        .env_clear()
        .env(k, v)
        .env("PATH", "/usr/bin:/bin");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = cmd.output().expect("run script(1)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let coloured = tty(false);
    assert!(coloured.contains("\x1b[31mx\x1b[0m"), "{coloured:?}");
    let plain = tty(true);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("███x▁▃"), "{plain:?}");
}

/// A textfile that cannot be written (its directory is missing) changes nothing for the
/// hooks or the exit code, and is said once per dispatch, not once per hook.
#[test]
fn an_unwritable_metrics_textfile_is_one_warning_and_fails_nothing() {
    let env = TestEnv::new();
    let mut config = std::fs::read_to_string(env.config_path()).unwrap();
    let missing = env.path("no-such-dir/hookrun.prom");
    config.push_str(&format!("metrics_textfile = \"{}\"\n", missing.display()));
    std::fs::write(env.config_path(), config).unwrap();
    env.hook("10-a")
        .sync()
        .phases("backup-end")
        .body("exit 0")
        .write();
    env.hook("20-b")
        .sync()
        .phases("backup-end")
        .body("exit 0")
        .write();
    env.hook("30-c")
        .sync()
        .phases("backup-end")
        .header("on-error: warn")
        .body("exit 4")
        .write();
    let out = dispatch(&env, "backup-end", "101").run();
    out.assert_success();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("metrics"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].starts_with("hookrun: warning: metrics: cannot open the lock file")
            && warnings[0].contains("no-such-dir")
            && warnings[0].contains("hooks still run"),
        "{}",
        warnings[0]
    );
    let outcomes: Vec<String> = env
        .records()
        .iter()
        .map(|r| r.outcome().to_owned())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "failed"]);
    assert!(!missing.parent().unwrap().exists());
}

/// Quick runs are batched, but never held back for long: while a long hook runs, the
/// quick one before it is in the textfile within about a second (the flusher thread).
/// That thread must not take the dispatcher's signals: SIGTERM still goes through the
/// signalfd to the hook, and the dispatch ends as it does without metrics.
#[test]
fn batched_metrics_are_written_while_a_long_hook_runs_and_signals_still_work() {
    let env = TestEnv::new();
    let textdir = env.path("textfile");
    std::fs::create_dir(&textdir).unwrap();
    let prom = textdir.join("hookrun.prom");
    let mut config = std::fs::read_to_string(env.config_path()).unwrap();
    config.push_str(&format!("metrics_textfile = \"{}\"\n", prom.display()));
    std::fs::write(env.config_path(), config).unwrap();
    env.hook("10-quick")
        .sync()
        .phases("backup-end")
        .body("exit 0")
        .write();
    let started = env.path("started");
    env.hook("20-long")
        .sync()
        .phases("backup-end")
        .body(&format!(
            "touch {}; sleep 30",
            shell_quote(&started.display().to_string())
        ))
        .write();

    let running = dispatch(&env, "backup-end", "101").spawn();
    let t0 = std::time::Instant::now();
    let quick_written = loop {
        let all = samples(&std::fs::read_to_string(&prom).unwrap_or_default());
        if value(
            &all,
            "hookrun_hook_runs_total",
            "backup-end",
            "10-quick",
            "101",
        ) == Some(1.0)
        {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "10-quick's series did not appear while 20-long ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(started.exists(), "20-long is running");
    assert!(
        quick_written < std::time::Duration::from_secs(3),
        "{quick_written:?}"
    );
    running.signal(nix::sys::signal::Signal::SIGTERM);
    let out = running.wait();
    out.assert_code(143);
    out.assert_stderr_contains("20-long");
    let outcomes: Vec<String> = env
        .records()
        .iter()
        .map(|r| r.outcome().to_owned())
        .collect();
    assert_eq!(outcomes, ["ok", "signal"]);
    let all = samples(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(outcome_label(&all, "20-long", "101"), "signal");
    assert_eq!(
        value(
            &all,
            "hookrun_hook_last_exit_code",
            "backup-end",
            "20-long",
            "101"
        ),
        Some(143.0)
    );
}
