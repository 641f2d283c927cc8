//! Async hooks, locks and Checkmk job files, through the real `hookrun-vzdump` binary
//! called the way vzdump calls it (pipes read to EOF, cleared environment).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookrun_tests::{
    HookCall, Record, Run, TestEnv, bin, kill_all, read_pids, shell_quote, wait_dead,
    wait_for_lines, write_file,
};

use crate::vzdump_call;

const TARGET: &str = "/var/lib/vz/dump/vzdump-qemu-101-2026_11_21-03_00_00.vma.zst";

/// A guest phase call with the variables vzdump sets for it.
fn log_end(env: &TestEnv) -> Run {
    vzdump_call(env)
        .args(["log-end", "snapshot", "101"])
        .env("STOREID", "local")
        .env("DUMPDIR", "/var/lib/vz/dump")
        .env("VMTYPE", "qemu")
        .env("HOSTNAME", "web")
        .env("TARGET", TARGET)
}

/// Waits until `count` records exist (async ones arrive when their hooks end).
fn wait_for_records(env: &TestEnv, count: usize, deadline: Duration) -> Vec<Record> {
    let start = Instant::now();
    loop {
        let records = env.records();
        if records.len() >= count {
            return records;
        }
        assert!(
            start.elapsed() < deadline,
            "only {} of {count} records after {deadline:?}: {records:?}",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

#[test]
fn async_hook_does_not_hold_the_platforms_pipes() {
    let env = TestEnv::new();
    env.hook("50-copy")
        .phases("log-end")
        .log_calls()
        .body("echo \"copy of $3 starting\"; sleep 3; echo 'copy done' >&2")
        .write();

    let out = log_end(&env).run();
    // vzdump waits for EOF on both pipes; the hook sleeps 3 s.
    out.assert_success()
        .assert_faster_than(Duration::from_millis(900));
    out.assert_stderr_line(&["50-copy", "started async"]);

    let lines = wait_for_lines(&env.calls_log(), 1, Duration::from_secs(10));
    let mut call = HookCall::parse(&lines[0]);
    let run_id = call.take_run_id().expect("HOOKRUN_RUN_ID is set");
    assert_eq!(call.argv, ["log-end", "snapshot", "101"]);
    assert_eq!(call.env.get("TARGET").map(String::as_str), Some(TARGET));
    assert_eq!(
        call.env.get("HOOKRUN_PHASE").map(String::as_str),
        Some("log-end")
    );
    assert_eq!(
        call.env.get("HOOKRUN_JOB").map(String::as_str),
        Some("vzdump-50-copy-101")
    );
    assert_eq!(
        call.env.get("HOOKRUN_OBJECT").map(String::as_str),
        Some("101")
    );

    let records = wait_for_records(&env, 1, Duration::from_secs(15));
    let r = records[0].assert_well_formed();
    assert_eq!((r.hook(), r.outcome()), ("50-copy", "ok"));
    assert_eq!(r.str("mode"), Some("async"));
    assert_eq!(r.str("run_id"), Some(run_id.as_str()));
    let ms = r.int("duration_ms").unwrap();
    assert!(
        (3000..6000).contains(&ms),
        "the record has the real duration, got {ms} ms"
    );

    let log = std::fs::read_to_string(env.log_dir().join("async/vzdump-50-copy-101.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].starts_with("=== ") && lines[0].contains(&format!("start run {run_id}")),
        "{log}"
    );
    assert!(
        log.contains("copy of 101 starting\n") && log.contains("copy done\n"),
        "{log}"
    );
    assert!(
        lines.last().unwrap().contains(&format!("end run {run_id}")),
        "{log}"
    );
    assert!(lines.last().unwrap().contains(": ok"), "{log}");
}

#[test]
fn async_hook_over_its_timeout_is_killed_with_its_group() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("60-hang")
        .phases("log-end")
        .header("timeout: 1")
        .body(&format!("sleep 300 & echo $$ $! > {}; sleep 300", q(&pids)))
        .write();
    log_end(&env)
        .run()
        .assert_success()
        .assert_faster_than(Duration::from_millis(900));

    let records = wait_for_records(&env, 1, Duration::from_secs(15));
    assert_eq!(records[0].outcome(), "timeout");
    let pids = read_pids(&pids);
    assert_eq!(pids.len(), 2);
    let alive = wait_dead(&pids, Duration::from_secs(5));
    kill_all(&alive);
    assert!(
        alive.is_empty(),
        "hook processes survived the timeout: {alive:?}"
    );
    let log = std::fs::read_to_string(env.log_dir().join("async/vzdump-60-hang-101.log")).unwrap();
    assert!(log.contains("timed out after 1s"), "{log}");
}

/// Intervals `(start, end)` in nanoseconds from lines `start <ns>` / `end <ns>` per tag.
fn intervals(lines: &[String]) -> Vec<(String, u128, u128)> {
    let mut starts = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace();
        let (Some(kind), Some(tag), Some(ns)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let ns: u128 = ns.parse().unwrap();
        match kind {
            "start" => {
                starts.insert(tag.to_owned(), ns);
            }
            "end" => out.push((tag.to_owned(), starts[tag], ns)),
            _ => {}
        }
    }
    out
}

#[test]
fn locked_sync_and_async_hooks_never_overlap_across_dispatches() {
    let env = TestEnv::new();
    let trace = env.path("trace");
    let fds = env.path("fds");
    // Each run appends `start`, waits, appends `end`, and lists its own descriptors.
    let body = format!(
        "tag=\"$HOOKRUN_HOOK-$$\"\n\
         echo \"start $tag $(date +%s%N)\" >> {t}\n\
         ls -l /proc/$$/fd/ >> {f} 2>&1\n\
         sleep 0.3\n\
         echo \"end $tag $(date +%s%N)\" >> {t}\n",
        t = q(&trace),
        f = q(&fds)
    );
    env.hook("10-sync-locked")
        .sync()
        .phases("log-end")
        .header("lock: shared")
        .body(&body)
        .write();
    env.hook("20-async-locked")
        .phases("log-end")
        .header("lock: shared")
        .body(&body)
        .write();

    const DISPATCHES: usize = 4;
    let running: Vec<_> = (0..DISPATCHES).map(|_| log_end(&env).spawn()).collect();
    for r in running {
        r.wait().assert_success();
    }
    let lines = wait_for_lines(&trace, DISPATCHES * 2 * 2, Duration::from_secs(30));
    let mut iv = intervals(&lines);
    assert_eq!(iv.len(), DISPATCHES * 2, "{lines:?}");
    iv.sort_by_key(|(_, s, _)| *s);
    for pair in iv.windows(2) {
        let ((a, _, a_end), (b, b_start, _)) = (&pair[0], &pair[1]);
        assert!(
            a_end <= b_start,
            "{a} and {b} held lock 'shared' at the same time: {iv:?}"
        );
    }
    let listing = std::fs::read_to_string(&fds).unwrap();
    assert!(
        listing.contains("/proc/") || listing.contains("pipe:"),
        "{listing}"
    );
    assert!(
        !listing.contains(".lock"),
        "a hook saw the lock descriptor:\n{listing}"
    );
    wait_for_records(&env, DISPATCHES * 2, Duration::from_secs(15));
    assert!(env.path("lock/shared.lock").is_file());
}

/// The keys Checkmk's 2.3/2.4 job parser knows; any other two-word line crashes it.
const MK_JOB_KEYS: &[&str] = &[
    "start_time",
    "exit_code",
    "real",
    "user",
    "sys",
    "reads",
    "writes",
    "max_res_kbytes",
    "avg_mem_kbytes",
    "invol_context_switches",
    "vol_context_switches",
];

fn job_dir(env: &TestEnv) -> PathBuf {
    env.path("mk/root")
}

fn assert_job_file(path: &Path, exit_code: i32) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(keys.first(), Some(&"start_time"), "{text}");
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 2, "not a `key value` line: {line:?}");
        assert!(MK_JOB_KEYS.contains(&words[0]), "unknown key in {line:?}");
    }
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        MK_JOB_KEYS.len(),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nexit_code {exit_code}\n")),
        "{text}"
    );
}

/// A tree whose Checkmk job directory is `<root>/mk`.
fn env_with_mk_job_dir() -> TestEnv {
    let env = TestEnv::new();
    let config = format!(
        "log_dir = {:?}\nlock_dir = {:?}\nmk_job_dir = {:?}\n",
        env.log_dir().display().to_string(),
        env.path("lock").display().to_string(),
        env.path("mk").display().to_string()
    );
    write_file(&env.config_path(), config, 0o644);
    env
}

#[test]
fn mk_job_sync_hook_writes_the_job_file() {
    let env = env_with_mk_job_dir();
    env.hook("30-report.sh")
        .sync()
        .phases("log-end")
        .header("mk-job")
        .body("echo reporting; exit 2")
        .write();

    log_end(&env).run().assert_code(2);
    assert_job_file(&job_dir(&env).join("vzdump-30-report-101"), 2);
    let leftovers: Vec<_> = std::fs::read_dir(job_dir(&env))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["vzdump-30-report-101"],
        "no running or temp files are left"
    );
}

#[test]
fn mk_job_async_hook_shows_its_running_file_while_it_runs() {
    let env = env_with_mk_job_dir();
    let go = env.path("go");
    env.hook("40-offsite")
        .phases("log-end")
        .header("mk-job")
        .body(&format!(
            "while [ ! -e {} ]; do sleep 0.05; done; exit 0",
            q(&go)
        ))
        .write();
    log_end(&env).run().assert_success();

    let deadline = Instant::now() + Duration::from_secs(10);
    let running = loop {
        let found: Vec<String> = std::fs::read_dir(job_dir(&env))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(f) = found.iter().find(|f| f.ends_with("running")) {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no running file appeared: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        running.starts_with("vzdump-40-offsite-101.") && running.ends_with("running"),
        "{running}"
    );
    let text = std::fs::read_to_string(job_dir(&env).join(&running)).unwrap();
    assert!(
        text.starts_with("start_time ") && text.lines().count() == 1,
        "{text}"
    );
    assert!(
        !job_dir(&env).join("vzdump-40-offsite-101").exists(),
        "no completed file yet"
    );

    write_file(&go, "", 0o644);
    wait_for_records(&env, 1, Duration::from_secs(10));
    assert!(
        !job_dir(&env).join(&running).exists(),
        "the running file is removed"
    );
    assert_job_file(&job_dir(&env).join("vzdump-40-offsite-101"), 0);
}

#[test]
fn mk_job_external_wraps_the_hook_with_the_agents_mk_job() {
    let env = TestEnv::with_config("mk_job = \"external\"");
    let stand_in_dir = env.path("bin");
    let seen = env.path("mk-job-argv");
    std::fs::create_dir(&stand_in_dir).unwrap();
    // A stand-in for Checkmk's mk-job: records its argv, then runs the program like it.
    write_file(
        &stand_in_dir.join("mk-job"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nshift\nexec \"$@\"\n",
            q(&seen)
        ),
        0o755,
    );
    let hook = env
        .hook("30-report.sh")
        .sync()
        .phases("log-end")
        .header("mk-job")
        .log_calls()
        .body("exit 0")
        .write();
    log_end(&env)
        .env("PATH", format!("{}:/usr/bin:/bin", stand_in_dir.display()))
        .run()
        .assert_success();
    let argv: Vec<String> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        argv,
        [
            "vzdump-30-report-101".to_owned(),
            hook.display().to_string(),
            "log-end".into(),
            "snapshot".into(),
            "101".into()
        ]
    );
    let calls = env.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].argv, ["log-end", "snapshot", "101"]);
    assert!(!env.path("mk").exists());
}

#[test]
fn mk_job_external_without_mk_job_installed_is_a_clear_failure() {
    let env = TestEnv::with_config("mk_job = \"external\"");
    env.hook("30-report.sh")
        .sync()
        .phases("log-end")
        .header("mk-job")
        .body("exit 0")
        .write();
    let empty = env.path("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let out = log_end(&env).env("PATH", empty.display().to_string()).run();
    out.assert_stderr_line(&["mk-job", "not found"]);
    let r = env.records();
    assert_eq!(r[0].outcome(), "spawn-error");
    assert_eq!(r[0].int("exit_code"), Some(127));
}

#[test]
fn hookrun_log_shows_running_async_hooks_then_their_outcome() {
    let env = TestEnv::new();
    let go = env.path("go");
    env.hook("40-offsite")
        .phases("log-end")
        .body(&format!(
            "while [ ! -e {} ]; do sleep 0.05; done; exit 4",
            q(&go)
        ))
        .write();
    log_end(&env).run().assert_success();
    let (k, v) = env.config_var();
    let log = || {
        Run::new(bin("hookrun"))
            .env(&k, &v)
            .args(["log", "--json"])
            .run()
    };

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = log();
        out.assert_success();
        if out.stdout.contains("\"outcome\":\"running\"") {
            assert!(
                out.stdout.contains("\"hook\":\"40-offsite\""),
                "{}",
                out.stdout
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never shown as running: {}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    write_file(&go, "", 0o644);
    wait_for_records(&env, 1, Duration::from_secs(10));
    let out = Run::new(bin("hookrun"))
        .env(&k, &v)
        .args(["log", "--failed"])
        .run();
    out.assert_success();
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("40-offsite"))
        .collect();
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    assert!(
        rows[0].contains("failed") && rows[0].contains(" 4 "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("running"), "{}", out.stdout);
}

#[test]
fn several_async_hooks_of_one_dispatch_each_run_with_their_own_log_and_record() {
    let env = TestEnv::new();
    for name in ["10-a", "20-b", "30-c"] {
        env.hook(name)
            .phases("log-end")
            .log_calls()
            .body(&format!("echo \"{name} says hi\"; sleep 0.3"))
            .write();
    }
    log_end(&env)
        .run()
        .assert_success()
        .assert_faster_than(Duration::from_millis(900));
    let records = wait_for_records(&env, 3, Duration::from_secs(15));
    let mut hooks: Vec<&str> = records.iter().map(Record::hook).collect();
    hooks.sort_unstable();
    assert_eq!(hooks, ["10-a", "20-b", "30-c"]);
    assert!(
        records
            .iter()
            .all(|r| r.outcome() == "ok" && r.str("mode") == Some("async"))
    );
    // One run id for the dispatch, each hook its own job and log.
    let ids: BTreeSet<_> = records
        .iter()
        .map(|r| r.str("run_id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{records:?}");
    for name in ["10-a", "20-b", "30-c"] {
        let log =
            std::fs::read_to_string(env.log_dir().join(format!("async/vzdump-{name}-101.log")))
                .unwrap();
        assert!(log.contains(&format!("{name} says hi")), "{log}");
        assert_eq!(log.matches("start run").count(), 1, "{log}");
    }
    let mut calls = env.calls();
    assert_eq!(calls.len(), 3);
    for c in &mut calls {
        assert_eq!(c.argv, ["log-end", "snapshot", "101"]);
        assert_eq!(c.env.get("HOOKRUN_HOOK"), Some(&c.hook));
    }
    // Every supervisor ended: nothing is left in the running directory.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(env.log_dir().join("async/running"))
        .is_ok_and(|mut d| d.next().is_some())
    {
        assert!(Instant::now() < deadline, "running files left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_async_hook_starts_before_a_later_sync_hook_runs() {
    // The async hook creates a marker; the sync hook after it in the directory waits for
    // that marker. If async hooks were only started when the dispatch ends, the sync hook
    // would time out.
    let env = TestEnv::new();
    let marker = env.path("async-started");
    env.hook("10-async")
        .phases("log-end")
        .body(&format!("touch {}", q(&marker)))
        .write();
    env.hook("20-sync")
        .sync()
        .phases("log-end")
        .header("timeout: 10")
        .body(&format!(
            "i=0; while [ ! -e {m} ]; do i=$((i+1)); [ $i -gt 100 ] && exit 9; sleep 0.05; done; echo saw-it",
            m = q(&marker)
        ))
        .write();
    log_end(&env)
        .run()
        .assert_success()
        .assert_stdout_contains("[20-sync] saw-it");
}
