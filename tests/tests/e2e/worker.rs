//! Container and cron workers through the real `hookrun-worker`: `run <worker> -- <cmd>`
//! (hooks around a command, its exit code, locks, signals), `hook <phase>`,
//! `HOOK_TIMEOUT`, the seed's header-less `pre-<worker>.sh` layout, the hooks directory
//! (including `/hooks` in a private mount namespace) and a real worker: restic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookrun_tests::{
    HookCall, Outcome, Run, TestEnv, bin, is_rfc3339, kill_all, mkdir, read_pids, require,
    shell_quote, wait_dead, wait_for_lines, write_file,
};
use nix::sys::signal::Signal;

use crate::{rec, record_summary};

/// `PATH` in a typical container image.
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `hookrun-worker` symlinked into the test tree's entry directory, so the tree's
/// `hooks.d` beside it is the hooks directory; environment `PATH` and `HOOKRUN_CONFIG`.
fn worker(env: &TestEnv) -> Run {
    let entry = env.entry_dir().join("hookrun-worker");
    if std::fs::symlink_metadata(&entry).is_err() {
        std::os::unix::fs::symlink(bin("hookrun-worker"), &entry)
            .expect("symlink hookrun-worker into the test tree");
    }
    let (k, v) = env.config_var();
    Run::new(entry).env("PATH", CONTAINER_PATH).env(k, v)
}

/// `hookrun-worker run backup -- sh -c <script>`.
fn run_backup(env: &TestEnv, script: &str) -> Run {
    worker(env).args(["run", "backup", "--", "sh", "-c", script])
}

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

/// A post-backup hook that writes `$1 $HOOKRUN_EXIT_CODE` to `<root>/post-saw` and
/// prints `post $1`.
fn post_hook(env: &TestEnv, name: &str) {
    env.hook(name)
        .sync()
        .phases("post-backup")
        .body(&format!(
            "echo \"$1 $HOOKRUN_EXIT_CODE\" > {}\necho \"post $1\"",
            q(&env.path("post-saw"))
        ))
        .write();
}

/// What the post hook of [`post_hook`] saw: `$1 $HOOKRUN_EXIT_CODE`.
fn post_saw(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("post-saw"))
        .unwrap_or_else(|e| panic!("the post hook did not run: {e}"))
        .trim_end()
        .to_owned()
}

fn exists(env: &TestEnv, rel: &str) -> bool {
    env.path(rel).exists()
}

/// Every stderr line is either a hook's (`[<hook>] `), one of `command_lines`, or
/// hookrun-worker's own, which starts with an RFC 3339 time.
fn assert_stderr_lines_attributed(out: &Outcome, command_lines: &[&str]) {
    for line in out.stderr.lines() {
        if line.starts_with('[') || command_lines.contains(&line) {
            continue;
        }
        let mut words = line.splitn(3, ' ');
        let (time, who) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        out.check(
            is_rfc3339(time) && who == "hookrun-worker:",
            &format!("stderr line {line:?} is neither a hook's nor a timestamped adapter line"),
        );
    }
}

#[test]
fn run_wraps_the_command_between_pre_and_post_hooks() {
    let env = TestEnv::new();
    env.hook("10-pre")
        .sync()
        .phases("pre-backup")
        .log_calls()
        .body("echo pre\necho \"pre stdin: $(readlink /proc/self/fd/0)\"\necho pre-err >&2")
        .write();
    env.hook("20-post")
        .sync()
        .phases("post-backup")
        .log_calls()
        .body("echo \"post $1 $HOOKRUN_EXIT_CODE\"")
        .write();
    env.hook("30-other-worker")
        .sync()
        .phases("pre-check post-check")
        .log_calls()
        .write();

    let out = worker(&env)
        .env("RESTIC_REPOSITORY", "/srv/restic-repo")
        .args(["run", "backup", "--", "sh", "-c"])
        .arg("echo 'command says hi'; echo \"command stdin: $(readlink /proc/self/fd/0)\"; echo command-err >&2")
        .run();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert_eq!(lines[0], "[10-pre] pre");
    // Hooks read EOF from /dev/null; the command gets the caller's own stdin (a pipe).
    assert_eq!(lines[1], "[10-pre] pre stdin: /dev/null");
    assert_eq!(
        lines[2], "command says hi",
        "the command's output is not prefixed"
    );
    assert!(
        lines[3].starts_with("command stdin: pipe:["),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], "[20-post] post 0 0");
    out.assert_stderr_contains("[10-pre] pre-err\n")
        .assert_stderr_contains("\ncommand-err\n")
        .assert_stderr_line(&["hookrun-worker:", "10-pre: ok"]);
    assert_stderr_lines_attributed(&out, &["command-err"]);

    let mut calls = env.calls();
    for c in &mut calls {
        assert!(c.take_run_id().is_some_and(|id| !id.is_empty()), "{c:?}");
    }
    let base: BTreeMap<String, String> = [
        ("PATH", CONTAINER_PATH.to_owned()),
        ("RESTIC_REPOSITORY", "/srv/restic-repo".to_owned()),
        ("HOOKRUN_CONFIG", env.config_var().1),
        ("HOOKRUN_PLATFORM", "worker".to_owned()),
        ("HOOKRUN_OBJECT", "backup".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let with = |extra: &[(&str, &str)]| {
        let mut e = base.clone();
        e.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        e
    };
    assert_eq!(
        calls,
        [
            HookCall {
                hook: "10-pre".into(),
                argv: vec![],
                env: with(&[
                    ("HOOKRUN_PHASE", "pre-backup"),
                    ("HOOKRUN_HOOK", "10-pre"),
                    ("HOOKRUN_JOB", "worker-10-pre-backup"),
                ]),
            },
            HookCall {
                hook: "20-post".into(),
                argv: vec!["0".into()],
                env: with(&[
                    ("HOOKRUN_PHASE", "post-backup"),
                    ("HOOKRUN_HOOK", "20-post"),
                    ("HOOKRUN_JOB", "worker-20-post-backup"),
                    ("HOOKRUN_EXIT_CODE", "0"),
                ]),
            },
        ]
    );
    let records = env.records();
    assert_eq!(records.len(), 2, "{records:?}");
    for (r, (hook, phase)) in records
        .iter()
        .zip([("10-pre", "pre-backup"), ("20-post", "post-backup")])
    {
        r.assert_well_formed();
        assert_eq!(
            (
                r.str("platform"),
                r.str("phase"),
                r.str("object"),
                r.hook(),
                r.outcome()
            ),
            (Some("worker"), Some(phase), Some("backup"), hook, "ok"),
            "{r:?}"
        );
        assert_eq!(r.str("job"), Some(format!("worker-{hook}-backup").as_str()));
    }
}

#[test]
fn the_adapter_exits_with_the_commands_code_and_post_hooks_get_it() {
    for (script, code) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
    ] {
        let env = TestEnv::new();
        post_hook(&env, "90-post");
        run_backup(&env, script)
            .run()
            .assert_code(code)
            .assert_stdout_eq(&format!("[90-post] post {code}\n"));
        assert_eq!(post_saw(&env), format!("{code} {code}"), "{script}");
    }
}

#[test]
fn failing_hooks_never_change_the_commands_code() {
    for code in [0, 3] {
        let env = TestEnv::new();
        env.hook("10-pre-warn")
            .sync()
            .phases("pre-backup")
            .body("exit 9")
            .write();
        env.hook("15-pre-fail")
            .sync()
            .phases("pre-backup")
            .header("on-error: fail")
            .body("exit 8")
            .write();
        env.hook("20-post-warn")
            .sync()
            .phases("post-backup")
            .body("exit 7")
            .write();
        env.hook("25-post-fail")
            .sync()
            .phases("post-backup")
            .header("on-error: fail")
            .body("exit 6")
            .write();
        env.hook("27-post-abort")
            .sync()
            .phases("post-backup")
            .header("on-error: abort")
            .body("exit 5")
            .write();
        let out = run_backup(&env, &format!("touch {}; exit {code}", q(&env.path("ran")))).run();
        out.assert_code(code)
            .assert_stderr_line(&["warning", "10-pre-warn", "failed with exit code 9"])
            .assert_stderr_line(&["15-pre-fail", "failed with exit code 8"])
            .assert_stderr_line(&["27-post-abort", "failed with exit code 5"]);
        assert!(
            exists(&env, "ran"),
            "the command runs despite failed pre hooks"
        );
        assert_eq!(
            record_summary(&env),
            [
                rec("10-pre-warn", "pre-backup", "failed", Some(9)),
                rec("15-pre-fail", "pre-backup", "failed", Some(8)),
                rec("20-post-warn", "post-backup", "failed", Some(7)),
                rec("25-post-fail", "post-backup", "failed", Some(6)),
                rec("27-post-abort", "post-backup", "failed", Some(5)),
            ]
        );
    }
}

#[test]
fn a_pre_hook_with_on_error_abort_cancels_the_command_with_75() {
    let env = TestEnv::new();
    env.hook("10-guard")
        .sync()
        .phases("pre-backup")
        .header("on-error: abort")
        .body("echo 'source not mounted' >&2; exit 1")
        .write();
    env.hook("20-pre-later")
        .sync()
        .phases("pre-backup")
        .body(&format!("touch {}", q(&env.path("pre-later-ran"))))
        .write();
    post_hook(&env, "90-post");
    let out = run_backup(&env, &format!("touch {}", q(&env.path("command-ran")))).run();
    out.assert_code(75)
        .assert_stdout_eq("[90-post] post 75\n")
        .assert_stderr_line(&["error", "10-guard", "cancelled", "75"]);
    assert!(!exists(&env, "command-ran"), "the command must not run");
    assert!(!exists(&env, "pre-later-ran"));
    assert_eq!(post_saw(&env), "75 75");
    assert_eq!(
        record_summary(&env),
        [
            rec("10-guard", "pre-backup", "failed", Some(1)),
            rec("20-pre-later", "pre-backup", "skipped", None),
            rec("90-post", "post-backup", "ok", Some(0)),
        ]
    );
}

/// Appends `<event> $TAG <nanoseconds>` to `<root>/order.log`.
fn note(env: &TestEnv, event: &str) -> String {
    format!(
        "echo \"{event} $TAG $(date +%s%N)\" >> {}",
        q(&env.path("order.log"))
    )
}

/// A command that notes its start, waits until `<root>/release` exists, notes its end.
fn held_command(env: &TestEnv) -> String {
    format!(
        "{}; while [ ! -e {} ]; do sleep 0.05; done; {}",
        note(env, "start"),
        q(&env.path("release")),
        note(env, "end")
    )
}

/// Waits until `pid` has the lock file `worker-<worker>.lock` open (it is then trying
/// to take the lock).
fn wait_until_lock_open(pid: nix::unistd::Pid, worker: &str) {
    let want = format!("worker-{worker}.lock");
    let start = Instant::now();
    loop {
        // The lock is taken by the worker process, a child of the pid started.
        let open = std::iter::once(pid.as_raw())
            .chain(hookrun_tests::children_of(pid.as_raw()))
            .any(|p| {
                std::fs::read_dir(format!("/proc/{p}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .any(|t| t.file_name().is_some_and(|n| n.to_string_lossy() == want))
            });
        if open {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pid {pid} never opened {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn order_hooks(env: &TestEnv) {
    env.hook("10-pre")
        .sync()
        .phases("pre-backup")
        .body(&note(env, "pre"))
        .write();
    env.hook("90-post")
        .sync()
        .phases("post-backup")
        .body(&note(env, "post"))
        .write();
}

#[test]
fn no_wait_skips_while_another_run_of_the_same_worker_holds_the_lock() {
    let env = TestEnv::new();
    order_hooks(&env);
    let first = run_backup(&env, &held_command(&env))
        .env("TAG", "A")
        .spawn();
    wait_for_lines(&env.path("order.log"), 2, Duration::from_secs(20));
    assert!(env.path("lock/worker-backup.lock").exists());

    let second = worker(&env)
        .env("TAG", "B")
        .args(["run", "--no-wait", "backup", "--", "touch"])
        .arg(env.path("second-ran"))
        .run();
    // Another worker has its own lock.
    let other = worker(&env)
        .args(["run", "--no-wait", "check", "--", "touch"])
        .arg(env.path("check-ran"))
        .run();
    write_file(&env.path("release"), "", 0o644);
    let first = first.wait();

    second
        .assert_success()
        .assert_stdout_eq("")
        .assert_stderr_line(&["skipped: previous run still active", "worker-backup"]);
    assert!(!exists(&env, "second-ran"), "the skipped run's command ran");
    other.assert_success();
    assert!(exists(&env, "check-ran"));
    first.assert_success();
    let events: Vec<String> = std::fs::read_to_string(env.path("order.log"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect();
    assert_eq!(events, ["pre A", "start A", "end A", "post A"]);
}

#[test]
fn without_no_wait_a_second_run_waits_for_the_first_then_runs() {
    let env = TestEnv::new();
    order_hooks(&env);
    let first = run_backup(&env, &held_command(&env))
        .env("TAG", "A")
        .spawn();
    wait_for_lines(&env.path("order.log"), 2, Duration::from_secs(20));
    let second = run_backup(&env, &held_command(&env))
        .env("TAG", "B")
        .spawn();
    wait_until_lock_open(second.pid(), "backup");
    // Give the second run a moment in which it could (wrongly) go ahead.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        wait_for_lines(&env.path("order.log"), 2, Duration::from_secs(1)).len(),
        2,
        "the second run went ahead while the first held the lock"
    );
    write_file(&env.path("release"), "", 0o644);
    let (first, second) = (first.wait(), second.wait());
    first.assert_success();
    second
        .assert_success()
        .assert_stderr_line(&["waiting for lock worker-backup"]);

    let lines = wait_for_lines(&env.path("order.log"), 8, Duration::from_secs(1));
    let parsed: Vec<(String, u128)> = lines
        .iter()
        .map(|l| {
            let (what, ts) = l.rsplit_once(' ').unwrap();
            (what.to_owned(), ts.parse().expect("date +%s%N"))
        })
        .collect();
    let events: Vec<&str> = parsed.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        events,
        [
            "pre A", "start A", "end A", "post A", "pre B", "start B", "end B", "post B"
        ]
    );
    let stamps: Vec<u128> = parsed.iter().map(|(_, t)| *t).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "the runs overlapped: {lines:?}"
    );
}

/// SIGTERM/SIGINT/SIGHUP to hookrun-worker while the command runs: the command's whole
/// process group gets it (the command traps it and exits 7; its background child is
/// gone), the post hooks still run with the command's code, and the adapter exits
/// 128+N.
fn signal_reaches_the_command(sig: Signal) {
    // A non-interactive shell's background child ignores SIGINT, so SIGINT needs the
    // SIGKILL that follows after kill_grace; keep it short.
    let env = TestEnv::with_config("kill_grace = 1");
    post_hook(&env, "90-post");
    let pids = env.path("pids");
    let script = format!(
        "trap 'echo got >> {got}; exit 7' TERM INT HUP\necho $$ >> {pids}\nsleep 300 &\necho $! >> {pids}\nwait",
        got = q(&env.path("got")),
        pids = q(&pids)
    );
    let running = run_backup(&env, &script).spawn();
    wait_for_lines(&pids, 2, Duration::from_secs(20));
    let command_pids = read_pids(&pids);
    running.signal(sig);
    let out = running.wait();
    let alive = wait_dead(&command_pids, Duration::from_secs(2));
    kill_all(&command_pids);

    out.assert_code(128 + sig as i32)
        .assert_stdout_eq("[90-post] post 7\n")
        .assert_faster_than(Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(env.path("got")).unwrap_or_default(),
        "got\n",
        "the command did not get {sig}"
    );
    assert_eq!(post_saw(&env), "7 7");
    assert!(alive.is_empty(), "still alive: {alive:?}");
    assert_eq!(
        record_summary(&env),
        [rec("90-post", "post-backup", "ok", Some(0))]
    );
}

#[test]
fn sigterm_to_the_adapter_reaches_the_command_and_exits_143() {
    signal_reaches_the_command(Signal::SIGTERM);
}

#[test]
fn sigint_to_the_adapter_reaches_the_command_and_exits_130() {
    signal_reaches_the_command(Signal::SIGINT);
}

#[test]
fn sighup_to_the_adapter_reaches_the_command_and_exits_129() {
    signal_reaches_the_command(Signal::SIGHUP);
}

#[test]
fn a_signal_before_the_command_started_runs_neither_it_nor_the_post_hooks() {
    // During a pre hook.
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("10-slow-pre")
        .sync()
        .phases("pre-backup")
        .body(&format!("echo $$ >> {}\nexec sleep 300", q(&pids)))
        .write();
    post_hook(&env, "90-post");
    let running = run_backup(&env, &format!("touch {}", q(&env.path("command-ran")))).spawn();
    wait_for_lines(&pids, 1, Duration::from_secs(20));
    let hook_pids = read_pids(&pids);
    running.signal(Signal::SIGTERM);
    let out = running.wait();
    kill_all(&hook_pids);
    out.assert_code(143).assert_stdout_eq("");
    assert!(!exists(&env, "command-ran") && !exists(&env, "post-saw"));

    // While waiting for the lock another run holds.
    let env = TestEnv::new();
    post_hook(&env, "90-post");
    let first = run_backup(&env, &held_command(&env))
        .env("TAG", "A")
        .spawn();
    wait_for_lines(&env.path("order.log"), 1, Duration::from_secs(20));
    let second = run_backup(&env, &format!("touch {}", q(&env.path("second-ran")))).spawn();
    wait_until_lock_open(second.pid(), "backup");
    second.signal(Signal::SIGINT);
    let second = second.wait();
    write_file(&env.path("release"), "", 0o644);
    first.wait().assert_success();
    second
        .assert_code(130)
        .assert_stdout_eq("")
        .assert_stderr_line(&["signal 2", "waiting for lock worker-backup", "not run"]);
    assert!(!exists(&env, "second-ran"));
    assert_eq!(post_saw(&env), "0 0", "only the first run's post hook ran");
    assert_eq!(
        record_summary(&env),
        [rec("90-post", "post-backup", "ok", Some(0))]
    );
}

#[test]
fn a_signal_during_the_post_hooks_stops_them_and_the_adapter_exits_128_plus_n() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("80-slow-post")
        .sync()
        .phases("post-backup")
        .body(&format!("echo $$ >> {}\nexec sleep 300", q(&pids)))
        .write();
    env.hook("90-later")
        .sync()
        .phases("post-backup")
        .body(&format!("touch {}", q(&env.path("later-ran"))))
        .write();
    let running = run_backup(&env, "echo backed-up").spawn();
    wait_for_lines(&pids, 1, Duration::from_secs(20));
    let hook_pids = read_pids(&pids);
    running.signal(Signal::SIGTERM);
    let out = running.wait();
    let alive = wait_dead(&hook_pids, Duration::from_secs(2));
    kill_all(&hook_pids);
    out.assert_code(143)
        .assert_stdout_eq("backed-up\n")
        .assert_faster_than(Duration::from_secs(10));
    assert!(alive.is_empty(), "still alive: {alive:?}");
    assert!(!exists(&env, "later-ran"));
    let records = env.records();
    assert_eq!(
        (
            records[0].hook(),
            records[0].outcome(),
            records[0].int("signal")
        ),
        ("80-slow-post", "signal", Some(15)),
        "{records:?}"
    );
    assert!(
        records.iter().skip(1).all(|r| r.outcome() == "skipped"),
        "{records:?}"
    );
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126_and_post_hooks_get_that() {
    let env = TestEnv::new();
    let not_exec = env.path("not-executable.sh");
    write_file(&not_exec, "#!/bin/sh\ntrue\n", 0o644);
    for (command, code) in [
        (PathBuf::from("/nonexistent/backup.sh"), 127),
        (PathBuf::from("no-such-command-anywhere"), 127),
        (not_exec, 126),
    ] {
        let _ = std::fs::remove_file(env.path("post-saw"));
        post_hook(&env, "90-post");
        worker(&env)
            .args(["run", "backup", "--"])
            .arg(&command)
            .run()
            .assert_code(code)
            .assert_stdout_eq(&format!("[90-post] post {code}\n"))
            .assert_stderr_line(&["error", "cannot run", &command.to_string_lossy()]);
        assert_eq!(post_saw(&env), format!("{code} {code}"));
    }
}

#[test]
fn hook_dispatches_one_phase_with_its_args_and_the_worker_as_object() {
    let env = TestEnv::new();
    env.hook("10-any")
        .sync()
        .phases("pre-backup post-backup pre-check nightly")
        .log_calls()
        .write();
    env.hook("20-backup-only")
        .sync()
        .phases("*")
        .header("objects: backup")
        .body("echo \"for $HOOKRUN_OBJECT\"")
        .write();
    env.hook("30-check-only")
        .sync()
        .phases("*")
        .header("objects: check")
        .body("echo \"for $HOOKRUN_OBJECT\"")
        .write();
    env.hook("40-post-fail")
        .sync()
        .phases("post-backup")
        .header("on-error: fail")
        .body("exit 4")
        .write();

    worker(&env)
        .args(["hook", "pre-backup", "a", "b c", "--flag"])
        .run()
        .assert_success()
        .assert_stdout_eq("[20-backup-only] for backup\n");
    worker(&env)
        .args(["hook", "pre-check"])
        .run()
        .assert_success()
        .assert_stdout_eq("[30-check-only] for check\n");
    // The worker's failure policy: default warn; a hook's own on-error fail counts.
    worker(&env)
        .args(["hook", "post-backup", "3"])
        .run()
        .assert_code(4)
        .assert_stdout_eq("[20-backup-only] for backup\n");
    // A phase that names no worker has no object: hooks with '# objects:' stay out.
    worker(&env)
        .args(["hook", "nightly"])
        .run()
        .assert_success()
        .assert_stdout_eq("");

    let calls: Vec<(Vec<String>, Option<String>, Option<String>)> = env
        .calls()
        .into_iter()
        .map(|c| {
            (
                c.argv,
                c.env.get("HOOKRUN_PHASE").cloned(),
                c.env.get("HOOKRUN_OBJECT").cloned(),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        calls,
        [
            (
                vec!["a".into(), "b c".into(), "--flag".into()],
                s("pre-backup"),
                s("backup")
            ),
            (vec![], s("pre-check"), s("check")),
            (vec!["3".into()], s("post-backup"), s("backup")),
            (vec![], s("nightly"), None),
        ]
    );
}

#[test]
fn hook_timeout_kills_a_hook_and_records_timeout_not_124() {
    let env = TestEnv::with_config("kill_grace = 1");
    env.hook("10-sleepy")
        .sync()
        .phases("pre-backup")
        .body("sleep 30")
        .write();
    env.hook("20-exits-124")
        .sync()
        .phases("pre-backup")
        .body("exit 124")
        .write();
    // The command outlives HOOK_TIMEOUT: it limits hooks only.
    let out = run_backup(&env, "sleep 1.5; echo ran; exit 0")
        .env("HOOK_TIMEOUT", "1")
        .run();
    out.assert_success()
        .assert_stdout_eq("ran\n")
        .assert_stderr_line(&["10-sleepy", "timed out after 1s"])
        .assert_stderr_line(&["20-exits-124", "failed with exit code 124"])
        .assert_faster_than(Duration::from_secs(10));
    // `hook` honours HOOK_TIMEOUT too.
    worker(&env)
        .args(["hook", "pre-backup"])
        .env("HOOK_TIMEOUT", "1")
        .run()
        .assert_success()
        .assert_stderr_line(&["10-sleepy", "timed out after 1s"]);
    let records = env.records();
    assert_eq!(records.len(), 4, "{records:?}");
    for pair in records.chunks(2) {
        let (t, f) = (pair[0].assert_well_formed(), pair[1].assert_well_formed());
        assert_eq!((t.hook(), t.outcome()), ("10-sleepy", "timeout"), "{t:?}");
        assert_eq!(t.int("exit_code"), None, "{t:?}");
        let ms = t.int("duration_ms").unwrap_or_default();
        assert!((1000..8000).contains(&ms), "duration_ms {ms}");
        assert_eq!(
            (f.hook(), f.outcome(), f.int("exit_code")),
            ("20-exits-124", "failed", Some(124)),
            "{f:?}"
        );
    }
}

#[test]
fn hook_timeout_zero_means_none_and_a_header_timeout_wins() {
    let env = TestEnv::new();
    env.hook("10-slowish")
        .sync()
        .phases("pre-backup")
        .body("sleep 1.5")
        .write();
    env.hook("20-own-timeout")
        .sync()
        .phases("pre-check")
        .header("timeout: 30")
        .body("sleep 1.5")
        .write();
    for (worker_name, value) in [("backup", "0"), ("check", "1"), ("backup", "5m")] {
        let out = worker(&env)
            .args(["run", worker_name, "--", "true"])
            .env("HOOK_TIMEOUT", value)
            .run();
        out.assert_success().assert_stderr_lacks("timed out");
        if value == "5m" {
            out.assert_stderr_line(&[
                "warning",
                "HOOK_TIMEOUT=\"5m\"",
                "without a default timeout",
            ]);
        }
    }
    assert_eq!(
        record_summary(&env),
        [
            rec("10-slowish", "pre-backup", "ok", Some(0)),
            rec("20-own-timeout", "pre-check", "ok", Some(0)),
            rec("10-slowish", "pre-backup", "ok", Some(0)),
        ]
    );
}

#[test]
fn hook_timeout_zero_leaves_a_configured_default_timeout_in_place() {
    let env = TestEnv::with_config("kill_grace = 1\ndefault_timeout = 1");
    env.hook("10-sleepy")
        .sync()
        .phases("pre-backup")
        .body("sleep 30")
        .write();
    run_backup(&env, "true")
        .env("HOOK_TIMEOUT", "0")
        .run()
        .assert_success()
        .assert_stderr_line(&["10-sleepy", "timed out after 1s"]);
    assert_eq!(
        record_summary(&env),
        [rec("10-sleepy", "pre-backup", "timeout", None)]
    );
}

#[test]
fn header_less_pre_and_post_scripts_run_as_sync_hooks_of_their_phase() {
    let env = TestEnv::new();
    // The seed's layout: /hooks/pre-backup.sh and /hooks/post-backup.sh, no header keys.
    env.hook("pre-backup.sh")
        .body("echo \"pre with $# args\"")
        .write();
    env.hook("post-backup.sh")
        .shebang("#!/bin/bash")
        .body("# exit code of the backup\necho \"post $1\"")
        .write();
    env.hook("pre-check.sh").body("echo pre-check").write();
    env.hook("post-check.sh")
        .body("echo post-check")
        .mode(0o644)
        .write();
    // Not the convention: no ".sh", or no "pre-"/"post-".
    env.hook("pre-backup").body("echo wrong").write();
    env.hook("backup.sh").body("echo wrong").write();
    // A header of its own wins over the name.
    env.hook("pre-prune.sh")
        .sync()
        .phases("post-prune")
        .body("echo \"in $HOOKRUN_PHASE\"")
        .write();

    for (code, post) in [(0, "post 0"), (3, "post 3")] {
        run_backup(&env, &format!("echo backup; exit {code}"))
            .run()
            .assert_code(code)
            .assert_stdout_eq(&format!(
                "[pre-backup.sh] pre with 0 args\nbackup\n[post-backup.sh] {post}\n"
            ));
    }
    worker(&env)
        .args(["run", "check", "--", "echo", "check"])
        .run()
        .assert_success()
        .assert_stdout_eq("[pre-check.sh] pre-check\ncheck\n")
        .assert_stderr_line(&["warning", "post-check.sh", "not executable"]);
    worker(&env)
        .args(["run", "prune", "--", "echo", "prune"])
        .run()
        .assert_success()
        .assert_stdout_eq("prune\n[pre-prune.sh] in post-prune\n");

    let records = env.records();
    assert!(
        records.iter().all(|r| r.str("mode") == Some("sync")),
        "{records:?}"
    );
    assert_eq!(
        record_summary(&env),
        [
            rec("pre-backup.sh", "pre-backup", "ok", Some(0)),
            rec("post-backup.sh", "post-backup", "ok", Some(0)),
            rec("pre-backup.sh", "pre-backup", "ok", Some(0)),
            rec("post-backup.sh", "post-backup", "ok", Some(0)),
            rec("pre-check.sh", "pre-check", "ok", Some(0)),
            rec("pre-prune.sh", "post-prune", "ok", Some(0)),
        ]
    );
}

#[test]
fn a_header_less_script_with_an_invalid_header_line_is_refused_not_ignored() {
    let env = TestEnv::new();
    env.hook("pre-backup.sh")
        .header("mode: asnyc")
        .body("echo ran")
        .write();
    let out = run_backup(&env, "echo backup").run();
    // Hooks never change the worker's code, but the problem is loud and recorded.
    out.assert_success()
        .assert_stdout_eq("backup\n")
        .assert_stderr_line(&["pre-backup.sh", "refused", "asnyc"]);
    assert_eq!(
        record_summary(&env),
        [rec("pre-backup.sh", "pre-backup", "refused", Some(126))]
    );
}

#[test]
fn on_a_terminal_the_command_is_the_foreground_job() {
    // `script` gives the adapter a terminal as a container started with `-it` would.
    // A command left in a background process group would be stopped by SIGTTIN when
    // it reads from the terminal; the command must own the terminal while it runs,
    // and the adapter must get it back for the post hooks.
    let env = TestEnv::new();
    let probe = env.path("fg.sh");
    hookrun_tests::write_file(
        &probe,
        "#!/bin/sh\n\
         stat=$(cat /proc/$$/stat); rest=${stat##*) }; set -- $rest\n\
         # after the command name: state ppid pgrp session tty_nr tpgid\n\
         if [ \"$3\" = \"$6\" ]; then echo command-foreground; else echo command-background; fi\n",
        0o755,
    );
    post_hook(&env, "90-post");
    let entry = env.entry_dir().join("hookrun-worker");
    std::os::unix::fs::symlink(bin("hookrun-worker"), &entry).unwrap();
    let (k, v) = env.config_var();
    let inner = format!(
        "{k}={} {} run backup -- {}",
        q(Path::new(&v)),
        q(&entry),
        q(&probe)
    );
    let out = Run::new("/usr/bin/script")
        .env("PATH", CONTAINER_PATH)
        .args(["-qec", &format!("env {inner}"), "/dev/null"])
        .deadline(Duration::from_secs(20))
        .run();
    out.assert_success();
    assert!(out.stdout.contains("command-foreground"), "{}", out.stdout);
    assert!(
        out.stdout.contains("post 0"),
        "post hooks ran after: {}",
        out.stdout
    );
    assert_eq!(post_saw(&env), "0 0");
}

#[test]
fn hookrun_hooks_dir_wins_and_a_missing_one_only_warns() {
    let env = TestEnv::new();
    env.hook("10-beside")
        .sync()
        .phases("pre-backup")
        .body("echo beside")
        .write();
    let dir = env.path("env-hooks");
    mkdir(&dir, 0o755);
    write_file(
        &dir.join("10-env"),
        "#!/bin/sh\n# mode: sync\n# phases: pre-backup\necho from-env\n",
        0o755,
    );
    run_backup(&env, "exit 0")
        .env("HOOKRUN_HOOKS_DIR", &dir)
        .run()
        .assert_success()
        .assert_stdout_eq("[10-env] from-env\n");
    let missing = env.path("no-such-hooks");
    run_backup(&env, "echo still-runs; exit 3")
        .env("HOOKRUN_HOOKS_DIR", &missing)
        .run()
        .assert_code(3)
        .assert_stdout_eq("still-runs\n")
        .assert_stderr_line(&["warning", &missing.to_string_lossy(), "no pre-backup hooks"]);
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    for (args, says) in [
        (&["run", "backup"][..], "required"),
        (&["run", "backup", "--"], "required"),
        (&["run", "../x", "--", "true"], "worker name"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&[], "Usage"),
    ] {
        worker(&env)
            .args(args)
            .run()
            .assert_code(2)
            .assert_stderr_contains(says);
    }
    worker(&env)
        .arg("--help")
        .run()
        .assert_success()
        .assert_stdout_contains("post-WORKER");
}

// ---------------------------------------------------------------------------------------
// A container: hooks mounted at /hooks
// ---------------------------------------------------------------------------------------

/// A minimal root filesystem in the test tree for `hookrun-worker` to run in, chrooted
/// inside a private mount namespace: the host's `/usr` (read-only) and `/dev/null` are
/// bind-mounted in, the binary appears as `/hookrun-worker`, the config is
/// `/hookrun.toml` (records in `/log`, locks in `/lock`). Nothing is mounted or created
/// outside the test tree: the mounts live only as long as the namespace.
struct Container {
    root: PathBuf,
}

impl Container {
    fn new(env: &TestEnv) -> Container {
        let root = env.path("rootfs");
        mkdir(&root, 0o755);
        for d in ["usr", "dev"] {
            mkdir(&root.join(d), 0o755);
        }
        for top in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
            let host = Path::new("/").join(top);
            match std::fs::read_link(&host) {
                Ok(target) => std::os::unix::fs::symlink(target, root.join(top)).unwrap(),
                Err(_) => assert!(
                    !host.exists(),
                    "{} is a real directory; this harness expects a merged-/usr system (Debian 12)",
                    host.display()
                ),
            }
        }
        write_file(&root.join("dev/null"), "", 0o644);
        write_file(&root.join("hookrun-worker"), "", 0o755);
        write_file(
            &root.join("hookrun.toml"),
            "log_dir = \"/log\"\nlock_dir = \"/lock\"\n",
            0o644,
        );
        Container { root }
    }

    /// Creates `<dir>` in the container with one header-less `pre-backup.sh` that
    /// prints `from <dir>`.
    fn hooks_in(&self, dir: &str) {
        let d = self.root.join(dir.trim_start_matches('/'));
        mkdir(&d, 0o755);
        write_file(
            &d.join("pre-backup.sh"),
            format!("#!/bin/sh\necho 'from {dir}'\n"),
            0o755,
        );
    }

    /// `hookrun-worker <args>` in the container, with `extra` in its environment.
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Outcome {
        const SETUP: &str = r#"r=$1; b=$2; shift 2
mount -o bind,ro /usr "$r/usr" && mount --bind /dev/null "$r/dev/null" && mount -o bind,ro "$b" "$r/hookrun-worker" || { echo "HARNESS: cannot bind-mount in a private mount namespace" >&2; exit 99; }
exec chroot "$r" /hookrun-worker "$@""#;
        let out = Run::new("/usr/bin/unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(&self.root)
            .arg(bin("hookrun-worker"))
            .args(args)
            .env("PATH", CONTAINER_PATH)
            .env("HOOKRUN_CONFIG", "/hookrun.toml")
            .envs(extra.iter().copied())
            .run();
        assert!(
            !out.stderr.contains("HARNESS:") && !out.stderr.starts_with("unshare:"),
            "this test needs root with CAP_SYS_ADMIN (unshare --mount, mount --bind, chroot) to give hookrun-worker a private /hooks without touching the real root filesystem:\n{}",
            out.stderr
        );
        // The bind mounts must have gone with the namespace (the tree is deleted later).
        assert_eq!(
            std::fs::read_dir(self.root.join("usr"))
                .map(|d| d.count())
                .ok(),
            Some(0),
            "the host's /usr is still mounted in the test tree"
        );
        out
    }
}

#[test]
fn in_a_container_hooks_mounted_at_slash_hooks_are_used() {
    if !require::cap_sys_admin() {
        return;
    }
    let env = TestEnv::new();
    let c = Container::new(&env);
    c.hooks_in("/etc/hookrun/worker.d");
    let backup = [
        "run",
        "backup",
        "--",
        "/bin/sh",
        "-c",
        "echo backup; exit 3",
    ];

    // Only /etc/hookrun/worker.d: it is used.
    c.run(&backup, &[])
        .assert_code(3)
        .assert_stdout_eq("[pre-backup.sh] from /etc/hookrun/worker.d\nbackup\n");
    // /hooks exists: it wins over /etc/hookrun/worker.d.
    c.hooks_in("/hooks");
    c.run(&backup, &[])
        .assert_code(3)
        .assert_stdout_eq("[pre-backup.sh] from /hooks\nbackup\n");
    // HOOKRUN_HOOKS_DIR wins over /hooks.
    c.hooks_in("/custom");
    c.run(&backup, &[("HOOKRUN_HOOKS_DIR", "/custom")])
        .assert_code(3)
        .assert_stdout_eq("[pre-backup.sh] from /custom\nbackup\n");
    let records = std::fs::read_to_string(c.root.join("log/runs.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 3, "{records}");
}

#[test]
fn in_a_container_without_any_hooks_directory_the_command_just_runs() {
    if !require::cap_sys_admin() {
        return;
    }
    let env = TestEnv::new();
    let c = Container::new(&env);
    let out = c.run(
        &[
            "run",
            "backup",
            "--",
            "/bin/sh",
            "-c",
            "echo backup; exit 3",
        ],
        &[],
    );
    out.assert_code(3).assert_stdout_eq("backup\n");
    out.check(
        out.stderr.is_empty(),
        "no hooks directory is not worth a message",
    );
    c.run(&["hook", "pre-backup"], &[])
        .assert_success()
        .assert_stdout_eq("");
    assert!(!c.root.join("hooks").exists());
}

#[test]
fn in_a_container_hooks_must_be_safe_or_strict_permissions_turned_off() {
    if !require::cap_sys_admin() {
        return;
    }
    let env = TestEnv::new();
    let c = Container::new(&env);
    let hooks = c.root.join("hooks");
    let backup = [
        "run",
        "backup",
        "--",
        "/bin/sh",
        "-c",
        "echo backup; exit 3",
    ];

    // docker run -v ./hooks:/hooks:ro with a checkout owned by the host's user 1000.
    c.hooks_in("/hooks");
    for p in [&hooks, &hooks.join("pre-backup.sh")] {
        std::os::unix::fs::chown(p, Some(1000), Some(1000)).expect("chown (tests run as root)");
    }
    c.run(&backup, &[])
        .assert_code(3)
        .assert_stdout_eq("backup\n")
        .assert_stderr_line(&[
            "pre-backup.sh",
            "refused",
            "owned by uid 1000",
            "chown root /hooks",
        ]);
    for p in [&hooks, &hooks.join("pre-backup.sh")] {
        std::os::unix::fs::chown(p, Some(0), Some(0)).unwrap();
    }
    c.run(&backup, &[])
        .assert_code(3)
        .assert_stdout_eq("[pre-backup.sh] from /hooks\nbackup\n");

    // A Kubernetes ConfigMap volume at /hooks (defaultMode 0o755): the files are
    // symlinks through ..data into a timestamped directory, and the volume's own
    // directory is world-writable (1777), although the mount is read-only.
    std::fs::remove_dir_all(&hooks).unwrap();
    let stamp = "..2026_11_21_03_00_00.123456789";
    mkdir(&hooks.join(stamp), 0o755);
    chmod_exact(&hooks, 0o1777);
    write_file(
        &hooks.join(stamp).join("pre-backup.sh"),
        "#!/bin/sh\necho from-configmap\n",
        0o755,
    );
    write_file(
        &hooks.join(stamp).join("hookrun.toml"),
        "log_dir = \"/log\"\nlock_dir = \"/lock\"\n[worker]\nstrict_permissions = false\n",
        0o755,
    );
    std::os::unix::fs::symlink(stamp, hooks.join("..data")).unwrap();
    for f in ["pre-backup.sh", "hookrun.toml"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), hooks.join(f)).unwrap();
    }
    c.run(&backup, &[])
        .assert_code(3)
        .assert_stdout_eq("backup\n")
        .assert_stderr_line(&[
            "pre-backup.sh",
            "refused",
            "directory /hooks is writable by group and others",
            "chmod go-w /hooks",
        ]);
    // The documented way out: strict_permissions = false for the worker, from a config
    // file shipped in the same ConfigMap (it is no hook: no phases, no pre-/post- name).
    c.run(&backup, &[("HOOKRUN_CONFIG", "/hooks/hookrun.toml")])
        .assert_code(3)
        .assert_stdout_eq("[pre-backup.sh] from-configmap\nbackup\n")
        .assert_stderr_lacks("hookrun.toml");
}

/// Sets the mode exactly, sticky bit included.
fn chmod_exact(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// A real worker: restic
// ---------------------------------------------------------------------------------------

const RESTIC: &str = "/usr/bin/restic";

/// A temporary restic setup: data to back up, a repository, its password file and a
/// wrong one.
struct Restic {
    data: PathBuf,
    repo: PathBuf,
    password: PathBuf,
    wrong_password: PathBuf,
    home: PathBuf,
}

impl Restic {
    fn new(env: &TestEnv) -> Restic {
        let base = env.path("restic");
        let r = Restic {
            data: base.join("data"),
            repo: base.join("repo"),
            password: base.join("password"),
            wrong_password: base.join("wrong-password"),
            home: base.join("home"),
        };
        mkdir(&r.data, 0o755);
        mkdir(&r.home, 0o700);
        write_file(&r.data.join("important.txt"), "precious bytes\n", 0o644);
        write_file(&r.password, "correct horse battery staple\n", 0o600);
        write_file(&r.wrong_password, "tr0ub4dor&3\n", 0o600);
        r.restic(&["init"], &r.password).run().assert_success();
        r
    }

    /// `restic -r <repo> --password-file <password> --no-cache <args>`.
    fn argv(&self, args: &[&str], password: &Path) -> Vec<String> {
        let mut v = vec![
            "-r".to_owned(),
            self.repo.to_string_lossy().into_owned(),
            "--password-file".to_owned(),
            password.to_string_lossy().into_owned(),
            "--no-cache".to_owned(),
        ];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    }

    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("PATH", CONTAINER_PATH.to_owned()),
            ("HOME", self.home.to_string_lossy().into_owned()),
        ]
    }

    /// restic run directly.
    fn restic(&self, args: &[&str], password: &Path) -> Run {
        Run::new(RESTIC)
            .args(self.argv(args, password))
            .envs(self.env())
    }

    /// `hookrun-worker run backup -- restic ... backup <data>`.
    fn backup_under_worker(&self, env: &TestEnv, password: &Path) -> Run {
        let data = self.data.to_string_lossy().into_owned();
        worker(env)
            .envs(self.env())
            .args(["run", "backup", "--", RESTIC])
            .args(self.argv(&["backup", &data], password))
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.restic(&["snapshots", "--json"], &self.password).run();
        out.assert_success();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }
}

/// The pre hook writes a "dump" into the data directory; the post hook records what it
/// was told.
fn restic_hooks(env: &TestEnv, r: &Restic) {
    env.hook("10-dump")
        .sync()
        .phases("pre-backup")
        .body(&format!(
            "echo \"dump taken before the backup\" > {}",
            q(&r.data.join("dump.sql"))
        ))
        .write();
    post_hook(env, "90-post");
}

#[test]
fn restic_backup_under_hookrun_worker_succeeds_and_post_hooks_see_0() {
    if !require::command_from(RESTIC, "restic") {
        return;
    }
    let env = TestEnv::new();
    let r = Restic::new(&env);
    restic_hooks(&env, &r);
    let out = r.backup_under_worker(&env, &r.password).run();
    out.assert_success()
        // restic's own output reaches the caller unprefixed.
        .assert_stdout_contains("snapshot ")
        .assert_stdout_contains(" saved\n")
        .assert_stdout_contains("\n[90-post] post 0\n");
    assert_eq!(post_saw(&env), "0 0");

    let snaps = r.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([r.data.to_string_lossy()])
    );
    // The pre hook ran before the backup: its dump is in the snapshot.
    let ls = r.restic(&["ls", "latest"], &r.password).run();
    ls.assert_success()
        .assert_stdout_contains(&format!("{}\n", r.data.join("dump.sql").display()))
        .assert_stdout_contains(&format!("{}\n", r.data.join("important.txt").display()));
    assert_eq!(
        record_summary(&env),
        [
            rec("10-dump", "pre-backup", "ok", Some(0)),
            rec("90-post", "post-backup", "ok", Some(0)),
        ]
    );
}

#[test]
fn a_failing_restic_backup_passes_its_real_exit_code_to_post_hooks_and_the_caller() {
    if !require::command_from(RESTIC, "restic") {
        return;
    }
    let env = TestEnv::new();
    let r = Restic::new(&env);
    restic_hooks(&env, &r);
    let data = r.data.to_string_lossy().into_owned();
    // What restic itself returns for a wrong password (1 in 0.14; newer ones differ).
    let direct = r.restic(&["backup", &data], &r.wrong_password).run();
    let code = direct.code().expect("restic exits, not killed");
    assert_ne!(code, 0, "a wrong password must fail: {direct:?}");
    direct.assert_stderr_contains("wrong password");

    let out = r.backup_under_worker(&env, &r.wrong_password).run();
    out.assert_code(code)
        .assert_stderr_contains("wrong password")
        .assert_stdout_contains(&format!("[90-post] post {code}\n"));
    assert_eq!(post_saw(&env), format!("{code} {code}"));
    assert!(r.snapshots().is_empty());
    assert_eq!(
        record_summary(&env),
        [
            rec("10-dump", "pre-backup", "ok", Some(0)),
            rec("90-post", "post-backup", "ok", Some(0)),
        ]
    );
}
