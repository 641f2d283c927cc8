//! Containment (issue 12, DESIGN §4): a hook and everything it starts live, die and lock
//! as one unit, even when hookrun is killed.
//!
//! Each test does what a platform or an operator really does — Proxmox's task stop
//! (SIGTERM to the task's process group, 5 s, SIGKILL to the group), `run_command`
//! dying and closing its pipes, a reader that stops reading, kill -9 at random moments —
//! and then looks at the processes themselves in `/proc`, the records and the locked
//! hooks' own timestamps.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookrun_tests::{
    TestEnv, bin, children_of, kill_all, process_alive, read_pids, shell_quote as q, wait_dead,
    wait_for_lines, write_file,
};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The vzdump entry point started the way `PVE::Tools::run_command` starts it inside a
/// task: environment cleared to vzdump's, in the task's own process group (here a group
/// of its own, so the test can signal it like `check_worker` does).
fn task(env: &TestEnv, phase: &str) -> Command {
    let mut c = Command::new(env.entry_point());
    c.arg(phase)
        .env_clear()
        .env("HOOKRUN_CONFIG", env.config_path())
        .env("LC_ALL", "C")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Reads a pipe to EOF in a thread; the result says when EOF came.
fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<(Vec<u8>, Instant)> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        (buf, Instant::now())
    })
}

fn all_dead_within(pids: &[Pid], d: Duration) {
    let left = wait_dead(pids, d);
    if !left.is_empty() {
        kill_all(&left);
        panic!("processes of the hook outlived it: {left:?}");
    }
}

fn reap(mut child: Child, d: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > d {
            let _ = child.kill();
            panic!("hookrun did not exit within {d:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_proxmox_task_stop_leaves_no_hook_process_and_records_the_run() {
    // kill_grace stays at its default (5 s): under vzdump hookrun must fit it inside the
    // 5 s Proxmox waits before its SIGKILL.
    let env = TestEnv::new();
    let pids = env.path("pids");
    env.hook("10-stubborn")
        .sync()
        .phases("backup-abort")
        .body(&format!(
            "trap '' TERM\necho $$ >> {p}\n(trap '' TERM; exec sleep 300) &\necho $! >> {p}\nsetsid sh -c 'trap \"\" TERM; echo $$ >> {p}; exec sleep 300' &\nwait",
            p = q(&pids.to_string_lossy())
        ))
        .write();
    let mut child = task(&env, "backup-abort")
        .args(["stop", "101"])
        .spawn()
        .unwrap();
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    wait_for_lines(&pids, 3, Duration::from_secs(20));
    let hook_pids = read_pids(&pids);
    let group = Pid::from_raw(child.id() as i32);
    killpg(group, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let _ = killpg(group, Signal::SIGKILL);
    let stopped = Instant::now();
    reap(child, Duration::from_secs(5));
    all_dead_within(&hook_pids, Duration::from_secs(3));
    let (_, eof) = out.join().unwrap();
    let (stderr, _) = err.join().unwrap();
    assert!(
        eof.saturating_duration_since(stopped) < Duration::from_secs(3),
        "the task's pipes stayed open {:?} after its SIGKILL",
        eof.saturating_duration_since(stopped)
    );
    let rec = wait_for_record(&env, "10-stubborn");
    assert_eq!(
        rec.outcome(),
        "signal",
        "{:?}\n{}",
        rec.0,
        String::from_utf8_lossy(&stderr)
    );
}

/// Waits for the one record of `hook` (a dispatcher that outlived the platform's
/// SIGKILL writes it a moment later).
fn wait_for_record(env: &TestEnv, hook: &str) -> hookrun_tests::Record {
    let mut found = None;
    wait_until(
        &format!("a record for {hook}"),
        Duration::from_secs(10),
        || {
            found = env.records().into_iter().find(|r| r.hook() == hook);
            found.is_some()
        },
    );
    let r = found.expect("found above");
    r.assert_well_formed();
    r
}

#[test]
fn the_caller_going_away_stops_the_hook_and_skips_the_rest() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("10-ticker")
        .sync()
        .phases("job-start")
        .body(&format!(
            "echo $$ >> {}\nwhile :; do echo tick; sleep 0.1; done",
            q(&pids.to_string_lossy())
        ))
        .write();
    env.hook("20-after")
        .sync()
        .phases("job-start")
        .body(&format!(
            "touch {}",
            q(&env.path("after-ran").to_string_lossy())
        ))
        .write();
    let mut child = task(&env, "job-start").spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "[10-ticker] tick\n");
    wait_for_lines(&pids, 1, Duration::from_secs(10));
    // run_command dies: both of its pipe ends close, and nobody waits for us.
    drop(stdout);
    drop(child.stderr.take());
    let closed = Instant::now();
    all_dead_within(&read_pids(&pids), Duration::from_secs(4));
    let status = reap(child, Duration::from_secs(5));
    assert!(closed.elapsed() < Duration::from_secs(4));
    assert_eq!(
        status.code(),
        Some(128 + 13),
        "exit 128+SIGPIPE: {status:?}"
    );
    assert!(
        !env.path("after-ran").exists(),
        "no hook starts after the caller is gone"
    );
    let ticker = wait_for_record(&env, "10-ticker");
    assert_eq!(ticker.outcome(), "signal");
    assert_eq!(ticker.int("signal"), Some(13));
    let after = wait_for_record(&env, "20-after");
    assert_eq!(after.outcome(), "skipped");
    assert!(
        after.str("message").is_some_and(|m| m.contains("caller")),
        "{:?}",
        after.0
    );
}

#[test]
fn a_reader_that_stops_reading_delays_neither_the_timeout_nor_a_signal() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("10-flood")
        .sync()
        .phases("job-start")
        .header("timeout: 2s")
        .body(&format!(
            "echo $$ >> {}\nhead -c 10000000 /dev/zero | tr '\\0' x\nexec sleep 300",
            q(&pids.to_string_lossy())
        ))
        .write();
    let mut child = task(&env, "job-start").spawn().unwrap();
    // stdout is never read (the pipe stays open); stderr is.
    let stalled = child.stdout.take().unwrap();
    let err = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    wait_for_lines(&pids, 1, Duration::from_secs(10));
    all_dead_within(&read_pids(&pids), Duration::from_secs(6));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the timeout fired late: {:?}",
        started.elapsed()
    );
    // hookrun now waits for the stalled reader; SIGTERM still ends it at once.
    std::thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let status = reap(child, Duration::from_secs(3));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    drop(stalled);
    let (stderr, _) = err.join().unwrap();
    let rec = wait_for_record(&env, "10-flood");
    assert_eq!(
        rec.outcome(),
        "timeout",
        "{status:?}\n{}",
        String::from_utf8_lossy(&stderr)
    );
}

#[test]
fn a_slow_reader_slows_the_hook_and_loses_nothing() {
    let env = TestEnv::new();
    env.hook("10-lines")
        .sync()
        .phases("job-start")
        .body("i=0\nwhile [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done")
        .write();
    let mut child = task(&env, "job-start").spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut n = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        assert_eq!(line, format!("[10-lines] line {n}\n"));
        n += 1;
        if n % 2000 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(n, 20000);
    assert!(reap(child, Duration::from_secs(10)).success());
    let _ = err.join();
}

#[test]
fn timeouts_and_the_end_of_a_hook_reach_processes_that_left_its_session() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    let p = q(&pids.to_string_lossy());
    env.hook("10-escapes")
        .sync()
        .phases("job-start")
        .header("timeout: 1s")
        .body(&format!(
            "setsid sh -c 'echo $$ >> {p}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n( setsid sh -c 'trap \"\" TERM; echo $$ >> {p}; exec sleep 300' </dev/null >/dev/null 2>&1 & )\necho $$ >> {p}\nexec sleep 300"
        ))
        .write();
    let leftovers = env.path("leftovers");
    env.hook("20-daemonizes")
        .sync()
        .phases("job-start")
        .body(&format!(
            "( setsid sh -c 'echo $$ >> {}; exec sleep 300' </dev/null >/dev/null 2>&1 & )\nexit 0",
            q(&leftovers.to_string_lossy())
        ))
        .write();
    let out = crate::vzdump_call(&env).arg("job-start").run();
    let escaped = read_pids(&pids);
    assert_eq!(escaped.len(), 3, "{}", out.stderr);
    all_dead_within(&escaped, Duration::from_secs(2));
    all_dead_within(&read_pids(&leftovers), Duration::from_secs(2));
    out.assert_stderr_line(&["20-daemonizes", "left processes running", "stopped"]);
    let recs = env.records();
    let by = |h: &str| {
        recs.iter()
            .find(|r| r.hook() == h)
            .unwrap()
            .outcome()
            .to_owned()
    };
    assert_eq!(by("10-escapes"), "timeout");
    assert_eq!(by("20-daemonizes"), "ok");
}

#[test]
fn sync_hooks_get_no_descriptor_of_the_caller_but_0_1_2() {
    let env = TestEnv::new();
    let fds = env.path("fds");
    env.hook("10-fds")
        .sync()
        .phases("job-start")
        .body(&format!(
            "for f in /proc/$$/fd/*; do echo \"$(readlink \"$f\")\"; done > {}\nsleep 5 >/dev/null 2>&1 &",
            q(&fds.to_string_lossy())
        ))
        .write();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::File::from(write_end.try_clone().unwrap())
            .metadata()
            .unwrap()
            .ino()
    };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&write_end);
    let mut cmd = task(&env, "job-start");
    // The caller's descriptor 3, inheritable, as a platform may leave one open.
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(write_end);
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let fd3 = drain(std::fs::File::from(read_end));
    let status = reap(child, Duration::from_secs(20));
    let exited = Instant::now();
    assert!(status.success());
    let (_, eof) = fd3.join().unwrap();
    assert!(
        eof.saturating_duration_since(exited) < Duration::from_millis(500),
        "descriptor 3 reached EOF {:?} after hookrun exited",
        eof.saturating_duration_since(exited)
    );
    let seen = std::fs::read_to_string(&fds).unwrap();
    assert!(
        !seen.contains(&format!("pipe:[{ino}]")),
        "the hook inherited the caller's descriptor 3:\n{seen}"
    );
    let _ = (out.join(), err.join());
}

/// The guard holds none of the platform's stdio: the platform's read ends when the
/// worker lets go of its output (the hand-over), and the guard exits with the worker's
/// code.
#[test]
fn the_guard_holds_none_of_the_platforms_output_and_exits_with_the_workers_code() {
    let env = TestEnv::new();
    let started = env.path("started");
    env.hook("10-wait")
        .sync()
        .phases("job-start")
        .body(&format!(
            "echo $$ > {}\nsleep 1\nexit 3",
            q(&started.to_string_lossy())
        ))
        .write();
    let mut child = task(&env, "job-start").spawn().unwrap();
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    wait_until("the hook started", Duration::from_secs(10), || {
        started.exists()
    });
    let guard = child.id() as i32;
    let link = |pid: i32, fd: u32| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    for fd in [0, 1, 2] {
        assert_eq!(link(guard, fd), "/dev/null", "the guard's descriptor {fd}");
    }
    let workers = children_of(guard);
    assert_eq!(workers.len(), 1, "one worker below the guard: {workers:?}");
    assert!(
        link(workers[0], 1).starts_with("pipe:"),
        "the worker writes to the platform: {}",
        link(workers[0], 1)
    );
    let status = reap(child, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(3),
        "the hook's failure, through the guard"
    );
    let (_, _) = (out.join().unwrap(), err.join().unwrap());
}

/// The dispatcher pins itself to one CPU across the guard's fork (docs/performance.md);
/// hooks, and the worker's threads, must get the caller's affinity back, whatever it is.
#[test]
fn hooks_get_the_callers_cpu_affinity_not_the_forks_pinning() {
    let env = TestEnv::new();
    let seen = env.path("affinity");
    for name in ["10-first", "20-second"] {
        env.hook(name)
            .sync()
            .phases("job-start")
            .body(&format!(
                "grep Cpus_allowed_list /proc/self/status >> {}",
                q(&seen.to_string_lossy())
            ))
            .write();
    }
    let own = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap()
        .to_owned();
    let status = task(&env, "job-start")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<String> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [own.clone(), own],
        "every hook has the caller's affinity"
    );
}

/// `start|alive|end <run> <ns>` lines a locked hook writes, as intervals per run.
fn intervals(log: &Path) -> Vec<(String, u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: Vec<(String, u128, u128)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(run), Some(ts)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(ts) = ts.parse::<u128>() else { continue };
        match runs.iter_mut().find(|r| r.0 == run) {
            Some(r) => {
                r.1 = r.1.min(ts);
                r.2 = r.2.max(ts);
            }
            None => runs.push((run.to_owned(), ts, ts)),
        }
    }
    runs
}

fn assert_no_overlap(log: &Path) {
    let mut runs = intervals(log);
    runs.sort_by_key(|r| r.1);
    for w in runs.windows(2) {
        assert!(
            w[1].1 > w[0].2,
            "two runs of a locked hook overlapped: {} ran until {} but {} started at {}\n{}",
            w[0].0,
            w[0].2,
            w[1].0,
            w[1].1,
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// The body of a locked hook: timestamps while it works, ~1.5 s in all.
fn locked_body(log: &Path, id: &str) -> String {
    format!(
        "l={}\necho \"start {id} $(date +%s%N)\" >> $l\ni=0\nwhile [ $i -lt 30 ]; do echo \"alive {id} $(date +%s%N)\" >> $l; sleep 0.05; i=$((i+1)); done\necho \"end {id} $(date +%s%N)\" >> $l",
        q(&log.to_string_lossy())
    )
}

/// A small deterministic generator, seeded from the clock and printed, so a failure
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // The seed is part of a failure's report: printed (captured unless it fails).
        #[allow(clippy::print_stdout)]
        {
            println!("kill -9 schedule seed: {seed}");
        }
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kills `pid` or (at random) the worker process under it with SIGKILL.
fn kill_9_somewhere(rng: &mut Rng, pid: i32) {
    let kids = children_of(pid);
    let target = if !kids.is_empty() && rng.below(2) == 0 {
        kids[0]
    } else {
        pid
    };
    let _ = kill(Pid::from_raw(target), Signal::SIGKILL);
}

fn wait_for_new_start(log: &Path, runs_before: usize) {
    wait_until("the locked hook to start", Duration::from_secs(20), || {
        intervals(log).len() > runs_before
    });
}

/// Polls `ok` until it holds, failing the test after `deadline`.
fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "waited {deadline:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_9_at_random_moments_never_lets_two_runs_of_a_locked_sync_hook_overlap() {
    let env = TestEnv::with_config("kill_grace = 1");
    let log = env.path("locked.log");
    env.hook("10-locked")
        .sync()
        .phases("job-start")
        .header("lock: nas")
        .body(&locked_body(&log, "$HOOKRUN_RUN_ID"))
        .write();
    let mut rng = Rng::new();
    for _ in 0..6 {
        let before = intervals(&log).len();
        let a = crate::vzdump_call(&env).arg("job-start").spawn();
        wait_for_new_start(&log, before);
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        kill_9_somewhere(&mut rng, a.pid().as_raw());
        // The next dispatch at once: it must wait until the killed run's hook is gone.
        let b = crate::vzdump_call(&env).arg("job-start").run();
        b.assert_success();
        let _ = a.wait();
        assert_no_overlap(&log);
    }
}

#[test]
fn kill_9_at_random_moments_never_lets_two_runs_of_a_locked_async_hook_overlap() {
    let env = TestEnv::with_config("kill_grace = 1");
    let log = env.path("locked.log");
    env.hook("10-locked")
        .phases("job-start")
        .header("lock: nas")
        .body(&locked_body(&log, "$HOOKRUN_RUN_ID"))
        .write();
    let mut rng = Rng::new();
    for _ in 0..6 {
        let before = intervals(&log).len();
        let a = crate::vzdump_call(&env).arg("job-start").run();
        a.assert_success();
        let sup = supervisor_pid(&a.stderr);
        wait_for_new_start(&log, before);
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        kill_9_somewhere(&mut rng, sup);
        let b = crate::vzdump_call(&env).arg("job-start").run();
        let sup_b = supervisor_pid(&b.stderr);
        let left = wait_dead(
            &[Pid::from_raw(sup), Pid::from_raw(sup_b)],
            Duration::from_secs(20),
        );
        assert!(left.is_empty(), "supervisors still running: {left:?}");
        assert_no_overlap(&log);
    }
    // Every killed run has a record or a lost marker turned into one, never silence.
    crate::vzdump_call(&env)
        .arg("job-end")
        .run()
        .assert_success();
    let recs = env.records();
    assert_eq!(recs.len(), 12, "one record per run");
}

fn supervisor_pid(stderr: &str) -> i32 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("supervisor pid ")? + "supervisor pid ".len()..];
            rest[..rest.find(|c: char| !c.is_ascii_digit())?]
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no supervisor pid in:\n{stderr}"))
}

#[test]
fn kill_9_at_random_moments_never_lets_two_worker_runs_overlap() {
    let env = TestEnv::with_config("kill_grace = 1");
    let log = env.path("locked.log");
    let script = env.path("backup.sh");
    write_file(
        &script,
        format!("#!/bin/sh\n{}\n", locked_body(&log, "$$")),
        0o755,
    );
    let mut rng = Rng::new();
    let worker = |env: &TestEnv| {
        hookrun_tests::Run::new(bin("hookrun-worker"))
            .env("HOOKRUN_CONFIG", env.config_path())
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env("PATH", hookrun_tests::DEFAULT_PATH)
            .args(["run", "backup", "--"])
            .arg(&script)
    };
    for _ in 0..6 {
        let before = intervals(&log).len();
        let a = worker(&env).spawn();
        wait_for_new_start(&log, before);
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        kill_9_somewhere(&mut rng, a.pid().as_raw());
        worker(&env).run().assert_success();
        let _ = a.wait();
        assert_no_overlap(&log);
    }
}

#[test]
fn a_killed_dispatcher_leaves_a_lost_run_that_log_shows_and_the_next_dispatch_records() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("10-slow")
        .sync()
        .phases("job-start")
        .body(&format!(
            "echo $$ >> {}\nexec sleep 300",
            q(&pids.to_string_lossy())
        ))
        .write();
    let running = crate::vzdump_call(&env).arg("job-start").spawn();
    wait_for_lines(&pids, 1, Duration::from_secs(20));
    // The worker process (the guard's child) dies: its guard stops the hook.
    let worker = children_of(running.pid().as_raw());
    assert_eq!(worker.len(), 1, "one worker under the guard");
    kill(Pid::from_raw(worker[0]), Signal::SIGKILL).unwrap();
    all_dead_within(&read_pids(&pids), Duration::from_secs(5));
    let out = running.wait();
    assert_eq!(out.code(), Some(128 + 9));
    assert!(
        env.records().is_empty(),
        "the killed run wrote no record itself"
    );

    assert_log_shows_lost(&env, "10-slow");
    // The next dispatch of the platform writes the `lost` record, once.
    crate::vzdump_call(&env)
        .arg("job-end")
        .run()
        .assert_success();
    crate::vzdump_call(&env)
        .arg("job-end")
        .run()
        .assert_success();
    let recs = env.records();
    assert_eq!(
        recs.len(),
        1,
        "{:?}",
        recs.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    recs[0].assert_well_formed();
    assert_eq!(recs[0].outcome(), "lost");
    assert_eq!(recs[0].hook(), "10-slow");
    assert_eq!(recs[0].str("phase"), Some("job-start"));
}

/// `hookrun log` shows a row for `hook` that says `lost`.
fn assert_log_shows_lost(env: &TestEnv, hook: &str) {
    let log = hookrun_tests::Run::new(bin("hookrun"))
        .env("HOOKRUN_CONFIG", env.config_path())
        .arg("log")
        .run();
    log.assert_success();
    assert!(
        log.stdout
            .lines()
            .any(|l| l.contains(hook) && l.contains("lost")),
        "hookrun log:\n{}",
        log.stdout
    );
}

#[test]
fn a_reused_pid_does_not_make_a_dead_run_look_alive() {
    let env = TestEnv::new();
    let dir = env.log_dir().join("async/running");
    std::fs::create_dir_all(&dir).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // A marker whose pid is alive (this test) but whose start time is not its own.
    let marker = serde_json::json!({
        "record": {
            "time": "2026-11-21T03:00:00.000Z", "run_id": "r-old", "platform": "vzdump",
            "phase": "log-end", "object": "101", "hook": "30-copy", "mode": "async",
            "outcome": "running", "exit_code": null, "signal": null, "duration_ms": 0,
            "job": "vzdump-30-copy-101"
        },
        "supervisor_pid": std::process::id(),
        "owner": { "pid": std::process::id(), "start": 1, "boot": boot.trim() }
    });
    write_file(
        &dir.join("r-old.vzdump-30-copy-101.json"),
        marker.to_string(),
        0o640,
    );
    assert_log_shows_lost(&env, "30-copy");
    crate::vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_success();
    let recs = env.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome(), "lost");
    assert!(!dir.join("r-old.vzdump-30-copy-101.json").exists());
}

#[test]
fn a_lock_wait_is_bounded_by_the_hooks_timeout_and_names_the_holder() {
    let env = TestEnv::new();
    env.hook("10-locked")
        .sync()
        .phases("job-start")
        .header("lock: nas")
        .header("timeout: 2s")
        .body("echo ran")
        .write();
    let lock_dir = env.path("lock");
    std::fs::create_dir_all(&lock_dir).unwrap();
    hookrun_tests::chmod(&lock_dir, 0o700);
    let mut holder = Command::new("flock")
        .arg(lock_dir.join("nas.lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = crate::vzdump_call(&env).arg("job-start").run();
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < Duration::from_secs(5), "waited {took:?}");
    out.assert_code(124)
        .assert_stdout_eq("")
        .assert_stderr_line(&["10-locked", "lock nas", "still held", "pid"]);
    let recs = env.records();
    assert_eq!(recs[0].outcome(), "lock-timeout");
    assert!(
        recs[0]
            .str("message")
            .is_some_and(|m| m.contains("flock") || m.contains("sleep"))
    );
}

#[test]
fn a_lock_directory_squatted_by_another_user_is_refused_naming_the_fix() {
    let env = TestEnv::new();
    let ran = env.path("ran");
    env.hook("10-locked")
        .sync()
        .phases("job-start")
        .header("lock: nas")
        .header("timeout: 5s")
        .body(&format!("touch {}", q(&ran.to_string_lossy())))
        .write();
    // nobody creates the lock directory first and holds the lock.
    let lock_dir = env.path("lock");
    // The test tree is root's (0755): give nobody a place to squat, as /run/lock is.
    hookrun_tests::chmod(env.root(), 0o1777);
    let mut squatter = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "mkdir -m 0777 {d}; exec flock {d}/nas.lock sleep 30",
            d = q(&lock_dir.to_string_lossy())
        ))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !lock_dir.join("nas.lock").exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = crate::vzdump_call(&env).arg("job-start").run();
    let _ = squatter.kill();
    let _ = squatter.wait();
    hookrun_tests::chmod(env.root(), 0o755);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "no hang behind the squatter"
    );
    out.check(!out.success(), "the locked hook is a failure")
        .assert_stderr_line(&["lock directory", "owned by nobody", "rm -rf"]);
    assert!(!ran.exists());
}

#[test]
fn worker_no_wait_skips_are_loud_and_recorded() {
    let env = TestEnv::new();
    let worker = |env: &TestEnv, cmd: &str| {
        hookrun_tests::Run::new(bin("hookrun-worker"))
            .env("HOOKRUN_CONFIG", env.config_path())
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env("PATH", hookrun_tests::DEFAULT_PATH)
            .args(["run", "--no-wait", "backup", "--", "sh", "-c", cmd])
    };
    let started = env.path("started");
    let first = worker(
        &env,
        &format!("touch {}; sleep 3", q(&started.to_string_lossy())),
    )
    .spawn();
    let t = Instant::now();
    while !started.exists() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = worker(&env, "true").run();
    second.assert_success().assert_stderr_line(&[
        "warning",
        "skipped",
        "previous run still active",
        "backup was not run",
    ]);
    first.wait().assert_success();
    let recs = env.records();
    let skip = recs
        .iter()
        .find(|r| r.outcome() == "skipped")
        .expect("a skipped record");
    skip.assert_well_formed();
    assert_eq!(skip.str("object"), Some("backup"));
    assert!(process_alive(Pid::from_raw(std::process::id() as i32)));
}

/// `pid`'s parent, from `/proc`.
fn parent_of(pid: i32) -> Option<i32> {
    hookrun_tests::procfs::stat(pid).map(|st| st.ppid)
}

#[test]
fn each_async_hook_of_a_batch_names_its_own_supervisor() {
    let env = TestEnv::new();
    for name in ["10-a", "20-b", "30-c"] {
        env.hook(name)
            .phases("job-start")
            .body(&format!(
                "echo $$ > {}\nexec sleep 2",
                q(&env.path(name).to_string_lossy())
            ))
            .write();
    }
    let out = crate::vzdump_call(&env).arg("job-start").run();
    out.assert_success();
    let mut sups = Vec::new();
    for name in ["10-a", "20-b", "30-c"] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("{name}: started async")))
            .unwrap_or_else(|| panic!("{}", out.stderr));
        let sup = supervisor_pid(line);
        let hook: i32 = wait_for_lines(&env.path(name), 1, Duration::from_secs(10))[0]
            .parse()
            .unwrap();
        // The named supervisor is an ancestor of this hook's process.
        let mut p = hook;
        let mut found = false;
        for _ in 0..8 {
            match parent_of(p) {
                Some(pp) if pp == sup => {
                    found = true;
                    break;
                }
                Some(pp) if pp > 1 => p = pp,
                _ => break,
            }
        }
        assert!(
            found,
            "{name}: supervisor pid {sup} is not an ancestor of its hook {hook}"
        );
        sups.push(sup);
    }
    sups.sort_unstable();
    sups.dedup();
    assert_eq!(sups.len(), 3, "one supervisor per hook");
    let pids: Vec<Pid> = sups.iter().map(|p| Pid::from_raw(*p)).collect();
    assert!(wait_dead(&pids, Duration::from_secs(10)).is_empty());
}

#[test]
fn an_async_hook_whose_log_cannot_be_written_is_reported_before_it_starts() {
    let env = TestEnv::new();
    let log = env.path("not-a-dir");
    write_file(&log, "", 0o644);
    write_file(
        &env.config_path(),
        format!(
            "log_dir = {:?}\nlock_dir = {:?}\n",
            log.to_string_lossy(),
            env.path("lock").to_string_lossy()
        ),
        0o644,
    );
    let ran = env.path("ran");
    env.hook("20-async")
        .phases("job-start")
        .body(&format!("touch {}", q(&ran.to_string_lossy())))
        .write();
    let out = crate::vzdump_call(&env).arg("job-start").run();
    out.assert_success().assert_stderr_line(&[
        "20-async",
        "cannot write",
        "not-a-dir",
        "fix log_dir",
    ]);
    wait_for_lines(&ran, 0, Duration::from_secs(10));
}

/// Live processes whose environment names this test tree's config: everything hookrun
/// or a hook of this tree started inherits `HOOKRUN_CONFIG`.
fn processes_of(env: &TestEnv) -> Vec<i32> {
    hookrun_tests::procfs::live_with_env(&format!("HOOKRUN_CONFIG={}", env.config_path().display()))
}

/// The sweep: every way a hook can try to outlive its run, through every kind of run
/// (sync, async, timed out, a worker's command), and then not one process of the tree
/// is left once the records say everything ended.
#[test]
fn nothing_any_run_starts_outlives_it() {
    let env = TestEnv::with_config("kill_grace = 1");
    let daemon = "( setsid sh -c 'exec sleep 300' </dev/null >/dev/null 2>&1 & )";
    env.hook("10-sync-daemon")
        .sync()
        .phases("job-start")
        .body(&format!("{daemon}\nsleep 300 >/dev/null 2>&1 &\nexit 0"))
        .write();
    env.hook("20-async-daemon")
        .phases("job-start")
        .body(&format!("{daemon}\nexit 0"))
        .write();
    env.hook("30-timeout")
        .sync()
        .phases("job-start")
        .header("timeout: 1s")
        .body(&format!("{daemon}\nexec sleep 300"))
        .write();
    env.hook("40-async-timeout")
        .phases("job-start")
        .header("timeout: 1s")
        .body(&format!("{daemon}\ntrap '' TERM\nsleep 300"))
        .write();
    crate::vzdump_call(&env).arg("job-start").run();
    hookrun_tests::Run::new(bin("hookrun-worker"))
        .env("HOOKRUN_CONFIG", env.config_path())
        .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
        .env("PATH", hookrun_tests::DEFAULT_PATH)
        .args(["run", "backup", "--", "sh", "-c", daemon])
        .run()
        .assert_success();
    wait_until("every run's record", Duration::from_secs(20), || {
        env.records().len() >= 4
    });
    let mut left = processes_of(&env);
    let start = Instant::now();
    // A supervisor writes its record a moment before it exits.
    while !left.is_empty() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_of(&env);
    }
    if !left.is_empty() {
        let shown: Vec<String> = left
            .iter()
            .map(|p| format!("{p}: {}", hookrun_tests::procfs::cmdline(*p)))
            .collect();
        kill_all(&left.iter().map(|p| Pid::from_raw(*p)).collect::<Vec<_>>());
        panic!("processes outlived their runs:\n{}", shown.join("\n"));
    }
}

#[test]
fn the_guard_is_named_and_keeps_only_the_descriptors_an_exec_would_keep() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    env.hook("10-locked")
        .sync()
        .phases("job-start")
        .header("lock: nas")
        .body(&format!(
            "echo $$ >> {}\nexec sleep 300",
            q(&pids.to_string_lossy())
        ))
        .write();
    let running = crate::vzdump_call(&env).arg("job-start").spawn();
    wait_for_lines(&pids, 1, Duration::from_secs(20));
    let guard = running.pid().as_raw();
    let comm = std::fs::read_to_string(format!("/proc/{guard}/comm")).unwrap();
    // The guard forks in place now, without an exec: everything the worker opened
    // after the fork (the lock file above all, whose flock a copy would keep held) and
    // stdin must be gone from it, as an exec would have left them.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{guard}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{}->{}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    let worker = children_of(guard);
    let worker_holds_lock = worker
        .first()
        .is_some_and(|&w| hookrun_tests::procfs::has_open(w, "nas"));
    kill_all(&read_pids(&pids));
    let _ = kill(Pid::from_raw(guard), Signal::SIGTERM);
    let _ = running.wait();
    assert_eq!(comm.trim(), "hookrun-guard");
    assert!(
        worker_holds_lock,
        "the worker holds the lock file (test sanity)"
    );
    // What the caller passed stays, as through an exec: the test process's own
    // descriptors that are not close-on-exec. Nothing the process opened for itself
    // before the fork (the self-pipe, the scan's and the log's handles) may.
    let mut numbers: Vec<i32> = fds
        .iter()
        .map(|f| f.split("->").next().unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    let mut expected: Vec<i32> = vec![0, 1, 2];
    expected.extend(inherited_by_children().into_iter().filter(|&fd| fd > 2));
    expected.sort_unstable();
    assert_eq!(numbers, expected, "the guard's descriptors: {fds:?}");
    assert!(
        fds.iter().any(|f| f == "0->/dev/null"),
        "the guard's stdin is /dev/null: {fds:?}"
    );
}

/// This process's descriptors that a child inherits (not close-on-exec).
fn inherited_by_children() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the flags of a descriptor number.
            let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
            flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0
        })
        .collect()
}
