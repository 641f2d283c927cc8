//! Real processes: timeouts, signals, pipes held by background children, permission
//! refusals, spawn errors, output prefixing, stdin and ordering. Each test dispatches the
//! job-level vzdump phase `job-start` (whose failures vzdump passes on) unless it says
//! otherwise.

use std::time::Duration;

use hookrun_tests::{
    StdinMode, TestEnv, chmod, kill_all, read_pids, shell_quote, wait_dead, wait_for_lines,
};
use nix::sys::signal::Signal;

use crate::{rec, record_summary, vzdump_call};

/// Shell code that appends `var` (a pid: `$$`, `$!`) to `<root>/pids`.
fn note_pid(env: &TestEnv, var: &str) -> String {
    format!(
        "echo {var} >> {}",
        shell_quote(&env.path("pids").to_string_lossy())
    )
}

/// How long a process SIGKILLed by the dispatcher may take to be gone after the
/// dispatcher returned. The kernel closes a dying process's files (the dispatcher's EOF)
/// before the process turns into a zombie, so the dispatcher can return a moment before
/// the last member of the group is gone; a member that was *not* killed would still be
/// sleeping long after this.
const DEATH_GRACE: Duration = Duration::from_secs(1);

/// Whether the hook wrote its marker file (i.e. ran at all).
fn ran(env: &TestEnv) -> bool {
    env.path("ran").exists()
}

fn mark_ran(env: &TestEnv) -> String {
    format!("touch {}", shell_quote(&env.path("ran").to_string_lossy()))
}

#[test]
fn timeout_kills_the_hook_and_its_children() {
    let env = TestEnv::new();
    let pids = env.path("pids");
    env.hook("10-hang")
        .sync()
        .phases("job-start")
        // 2 s: time enough for all three pids to be written even on a loaded machine.
        .header("timeout: 2")
        .body(&format!(
            "sleep 300 &\n{}\n{}\nsh -c {}",
            note_pid(&env, "$!"),
            note_pid(&env, "$$"),
            shell_quote(&format!("{}; exec sleep 300", note_pid(&env, "$$")))
        ))
        .write();

    let out = vzdump_call(&env).arg("job-start").run();
    let hook_pids = read_pids(&pids);
    let alive = wait_dead(&hook_pids, DEATH_GRACE);
    kill_all(&hook_pids);
    out.assert_code(124)
        .assert_stderr_line(&["10-hang", "timed out"])
        // 2 s timeout; SIGTERM kills the whole group at once, so no kill_grace (5 s).
        .assert_faster_than(Duration::from_secs(6));
    assert_eq!(
        hook_pids.len(),
        3,
        "the hook, its background child and its foreground child"
    );
    assert!(
        alive.is_empty(),
        "still alive {DEATH_GRACE:?} after the dispatcher returned: {alive:?}"
    );

    let records = env.records();
    assert_eq!(records.len(), 1);
    let r = records[0].assert_well_formed();
    assert_eq!(r.outcome(), "timeout", "{r:?}");
    let ms = r.int("duration_ms").unwrap_or_default();
    assert!((2000..6000).contains(&ms), "duration_ms {ms}");
}

#[test]
fn a_hook_exiting_124_itself_is_failed_not_timed_out() {
    let env = TestEnv::new();
    env.hook("10-fake")
        .sync()
        .phases("job-start")
        .header("timeout: 60")
        .body("exit 124")
        .write();
    vzdump_call(&env).arg("job-start").run().assert_code(124);
    assert_eq!(
        record_summary(&env),
        [rec("10-fake", "job-start", "failed", Some(124))]
    );
}

#[test]
fn a_background_child_holding_stdout_does_not_hold_up_the_dispatcher() {
    let env = TestEnv::new();
    env.hook("10-bg")
        .sync()
        .phases("job-start")
        .body(&format!(
            "sleep 30 &\n{}\necho started",
            note_pid(&env, "$!")
        ))
        .write();

    let out = vzdump_call(&env).arg("job-start").run();
    kill_all(&read_pids(&env.path("pids")));
    // The child lives 30 s; hookrun stops reading about 1 s after the hook exits.
    out.assert_success()
        .assert_faster_than(Duration::from_secs(5))
        .assert_stdout_eq("[10-bg] started\n")
        .assert_stderr_line(&["10-bg", "background"]);
    assert_eq!(
        record_summary(&env),
        [rec("10-bg", "job-start", "ok", Some(0))]
    );
}

/// A sync hook with a background and a foreground child; the dispatcher gets `sig`
/// while it runs: the whole group dies, the dispatcher exits 128+sig, the record says
/// `signal`, and the hooks after it do not start.
fn dispatcher_signal_stops_the_hook_group(sig: Signal) {
    // Background children of a non-interactive shell ignore SIGINT, so SIGINT needs the
    // SIGKILL that follows after kill_grace; keep that short.
    let env = TestEnv::with_config("kill_grace = 1");
    env.hook("10-sleepy")
        .sync()
        .phases("job-start")
        .body(&format!(
            "sleep 300 &\n{}\n{}\nsh -c {}",
            note_pid(&env, "$!"),
            note_pid(&env, "$$"),
            shell_quote(&format!("{}; exec sleep 300", note_pid(&env, "$$")))
        ))
        .write();
    env.hook("20-later")
        .sync()
        .phases("job-start")
        .body(&mark_ran(&env))
        .write();

    let running = vzdump_call(&env).arg("job-start").spawn();
    let hook_pids: Vec<_> = wait_for_lines(&env.path("pids"), 3, Duration::from_secs(10))
        .iter()
        .map(|l| nix::unistd::Pid::from_raw(l.parse().expect("pid")))
        .collect();
    running.signal(sig);
    let out = running.wait();
    let alive = wait_dead(&hook_pids, DEATH_GRACE);
    kill_all(&hook_pids);

    out.assert_code(128 + sig as i32)
        .assert_faster_than(Duration::from_secs(8));
    assert!(
        alive.is_empty(),
        "still alive {DEATH_GRACE:?} after the dispatcher returned: {alive:?}"
    );
    assert!(
        !ran(&env),
        "no hook may start after the dispatcher was told to stop"
    );
    let records = env.records();
    let r = records
        .first()
        .expect("a record for the interrupted hook")
        .assert_well_formed();
    assert_eq!((r.hook(), r.outcome()), ("10-sleepy", "signal"), "{r:?}");
    assert_eq!(r.int("signal"), Some(sig as i64), "{r:?}");
    assert!(
        records.iter().skip(1).all(|r| r.outcome() == "skipped"),
        "later hooks are skipped, if recorded: {records:?}"
    );
}

#[test]
fn sigterm_to_the_dispatcher_kills_the_hook_group_and_exits_143() {
    dispatcher_signal_stops_the_hook_group(Signal::SIGTERM);
}

#[test]
fn sigint_to_the_dispatcher_kills_the_hook_group_and_exits_130() {
    dispatcher_signal_stops_the_hook_group(Signal::SIGINT);
}

#[test]
fn sighup_to_the_dispatcher_kills_the_hook_group_and_exits_129() {
    dispatcher_signal_stops_the_hook_group(Signal::SIGHUP);
}

#[test]
fn a_world_writable_hook_is_refused() {
    for mode in [0o757, 0o777] {
        let env = TestEnv::new();
        let path = env
            .hook("10-open")
            .sync()
            .phases("job-start")
            .body(&mark_ran(&env))
            .write();
        chmod(&path, mode);
        vzdump_call(&env)
            .arg("job-start")
            .run()
            .assert_code(126)
            .assert_stderr_line(&["chmod go-w", &path.to_string_lossy()]);
        assert!(!ran(&env), "mode {mode:o}");
        assert_eq!(
            record_summary(&env),
            [rec("10-open", "job-start", "refused", Some(126))]
        );
    }
}

#[test]
fn a_hook_owned_by_another_user_is_refused() {
    let env = TestEnv::new();
    let path = env
        .hook("10-theirs")
        .sync()
        .phases("job-start")
        .body(&mark_ran(&env))
        .write();
    std::os::unix::fs::chown(&path, Some(65534), None).expect("chown 65534 (tests run as root)");
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_code(126)
        .assert_stderr_line(&["chown root", &path.to_string_lossy()]);
    assert!(!ran(&env));
    assert_eq!(
        record_summary(&env),
        [rec("10-theirs", "job-start", "refused", Some(126))]
    );
}

#[test]
fn a_group_writable_hooks_directory_is_refused() {
    let env = TestEnv::new();
    env.hook("10-fine")
        .sync()
        .phases("job-start")
        .body(&mark_ran(&env))
        .write();
    chmod(&env.hooks_dir(), 0o775);
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_code(126)
        .assert_stderr_line(&["chmod go-w", &env.hooks_dir().to_string_lossy()]);
    assert!(!ran(&env));
    assert_eq!(
        record_summary(&env),
        [rec("10-fine", "job-start", "refused", Some(126))]
    );
}

#[test]
fn a_hook_that_is_not_executable_is_reported_and_not_run() {
    let env = TestEnv::new();
    env.hook("10-noexec")
        .sync()
        .phases("job-start")
        .body(&mark_ran(&env))
        .mode(0o644)
        .write();
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_success()
        .assert_stderr_line(&["warning", "10-noexec", "not executable"]);
    assert!(!ran(&env));
}

#[test]
fn an_invalid_header_value_is_refused_naming_file_and_line() {
    let env = TestEnv::new();
    let path = env
        .hook("10-typo")
        .header("mode: asnyc")
        .phases("job-start")
        .body(&mark_ran(&env))
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(126);
    // `<file>:line 2: ...` or `<file>:2: ...`
    let (line_words, line_colon) = (
        format!("{}:line 2", path.display()),
        format!("{}:2:", path.display()),
    );
    out.check(
        out.stderr
            .lines()
            .any(|l| l.contains("asnyc") && (l.contains(&line_words) || l.contains(&line_colon))),
        "expected a stderr line naming the file, line 2 and the value",
    );
    assert!(!ran(&env));
    assert_eq!(
        record_summary(&env),
        [rec("10-typo", "job-start", "refused", Some(126))]
    );
}

#[test]
fn a_bad_interpreter_exits_127() {
    let env = TestEnv::new();
    env.hook("10-interp")
        .shebang("#!/nonexistent/sh")
        .sync()
        .phases("job-start")
        .write();
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_code(127)
        .assert_stderr_line(&["10-interp", "interpreter"]);
    assert_eq!(
        record_summary(&env),
        [rec("10-interp", "job-start", "spawn-error", Some(127))]
    );
}

#[test]
fn a_script_without_a_shebang_line_exits_126_and_does_not_run() {
    let env = TestEnv::new();
    env.hook("10-bare")
        .shebang("")
        .sync()
        .phases("job-start")
        .body(&mark_ran(&env))
        .write();
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_code(126)
        .assert_stderr_line(&["10-bare", "#!"]);
    assert!(
        !ran(&env),
        "execvp's ENOEXEC fallback to /bin/sh must not be used"
    );
    assert_eq!(
        record_summary(&env),
        [rec("10-bare", "job-start", "spawn-error", Some(126))]
    );
}

#[test]
fn output_lines_are_prefixed_with_the_hook_name_on_the_same_stream() {
    let env = TestEnv::new();
    env.hook("10-first")
        .sync()
        .phases("job-start")
        .body("echo hello")
        .write();
    env.hook("20-talk.sh")
        .sync()
        .phases("job-start")
        .body("printf 'out one\\n\\nout two'\nprintf 'err one\\nerr two' >&2")
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success().assert_stdout_eq(
        "[10-first] hello\n[20-talk.sh] out one\n[20-talk.sh] \n[20-talk.sh] out two\n",
    );
    let err: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        err,
        ["[20-talk.sh] err one", "[20-talk.sh] err two"],
        "{}",
        out.stderr
    );
}

#[test]
fn a_hook_reading_stdin_gets_eof_at_once() {
    let env = TestEnv::new();
    env.hook("10-stdin")
        .sync()
        .phases("job-start")
        .header("timeout: 5")
        .body("if IFS= read -r line; then echo \"read: $line\"; else echo eof; fi\ncat\necho done")
        .write();
    // Even when the dispatcher's own stdin stays open (vzdump closes it), the hook
    // reads EOF: it never inherits the platform's stdin.
    let out = vzdump_call(&env)
        .arg("job-start")
        .stdin(StdinMode::OpenPipe)
        .run();
    out.assert_success()
        .assert_stdout_eq("[10-stdin] eof\n[10-stdin] done\n")
        .assert_faster_than(Duration::from_secs(4));
}

#[test]
fn hooks_run_in_byte_order_of_their_file_names() {
    let env = TestEnv::new();
    let names = ["a", "B", "9-x", "10-x", "_u", "Z"];
    for n in names {
        env.hook(n)
            .sync()
            .phases("job-start")
            .body("echo \"$HOOKRUN_HOOK\"")
            .write();
    }
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success();
    let order: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split("] ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(order, ["10-x", "9-x", "B", "Z", "_u", "a"]);
}
