//! Reliability and security under load, faults and hostile input, measured with real
//! processes (issue 9; the fault model and figures are in `docs/reliability.md`).
//!
//! - load: 200 concurrent dispatches through every adapter, with sync, async and locked
//!   hooks: one complete run record per matched hook, every record and log line whole,
//!   locks held exclusively, nothing left running and no zombie afterwards;
//! - faults: hooks that hang, fork, daemonise, close stdout, flood output, die by every
//!   common signal, vanish, change or turn unsafe between scan and exec, lose their
//!   executable bit; symlinks that dangle or loop; a hooks directory that vanishes; a
//!   full log disk — the dispatch goes on, and says what happened once;
//! - signals: SIGTERM, SIGINT and SIGHUP to every adapter during a sync hook and during a
//!   lock wait, and to async supervisors: groups cleaned up, records with the right
//!   outcome;
//! - security: unsafe hooks and directories refused with the fix named; hostile objects
//!   kept out of file names; argv and environment passed without a shell; files that may
//!   hold secrets unreadable by others even under `umask 000`; no XML entity expansion.
//!
//! Processes of a test carry a unique `HOOKRUN_RELIABILITY_MARK` in their environment
//! (dispatchers, supervisors and hooks all inherit it), so leftovers are found by
//! scanning `/proc`. The test process makes itself a child subreaper, as init would be:
//! supervisors outlive their dispatchers and are re-parented to it, and it reaps them —
//! a zombie that remains is one a live hookrun process failed to reap.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use hookrun_tests::libvirt::{RunStdin, libvirt_env};
use hookrun_tests::procfs::{self, become_subreaper, has_open};
use hookrun_tests::{
    DEFAULT_PATH, Outcome, Record, Run, TestEnv, bin, chmod, kill_all, mkdir, read_pids,
    shell_quote, wait_dead, wait_for_lines, write_file,
};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::vzdump_call;

// ---------------------------------------------------------------------------------------
// Processes: marks, /proc, reaping
// ---------------------------------------------------------------------------------------

/// The variable that marks a test's processes.
const MARK_VAR: &str = "HOOKRUN_RELIABILITY_MARK";

/// A mark no other test (or earlier run) uses.
fn new_mark(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{test}-{}-{nanos}", std::process::id())
}

/// A process seen carrying the mark.
#[derive(Debug, Clone)]
struct Seen {
    start: u64,
    cmd: String,
}

/// Live processes whose environment carries `mark` (a zombie has no environment left).
fn marked_processes(mark: &str) -> Vec<(i32, Seen)> {
    let needle = format!("{MARK_VAR}={mark}");
    procfs::pids()
        .into_iter()
        .filter(|&pid| procfs::environ_has(pid, &needle))
        .filter_map(|pid| {
            let st = procfs::stat(pid)?;
            Some((
                pid,
                Seen {
                    start: st.start,
                    cmd: procfs::cmdline(pid),
                },
            ))
        })
        .collect()
}

/// Samples `/proc` for marked processes in the background, so that processes which
/// are gone (or zombies) at the end were seen while they ran.
struct ProcWatch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<BTreeMap<i32, Seen>>>,
}

impl ProcWatch {
    fn start(mark: &str) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, mark) = (stop.clone(), mark.to_owned());
        let handle = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for (pid, s) in marked_processes(&mark) {
                    seen.insert(pid, s);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        ProcWatch {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> BTreeMap<i32, Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("the /proc sampler does not panic")
    }
}

impl Drop for ProcWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until no marked process is alive and every process in `seen` is gone: reaps
/// those re-parented to this process (the subreaper's job, as init's). Returns what is
/// still there after `deadline` — leftovers, and zombies a live parent did not reap —
/// and how many orphans this process reaped.
fn settle(mark: &str, seen: &BTreeMap<i32, Seen>, deadline: Duration) -> (Vec<String>, usize) {
    let me = std::process::id() as i32;
    let start = Instant::now();
    let mut reaped = 0;
    loop {
        let mut left = Vec::new();
        for (pid, s) in marked_processes(mark) {
            left.push(format!("{pid} still running: {}", s.cmd));
        }
        for (pid, s) in seen {
            match procfs::stat(*pid) {
                None => {}
                // The pid is another process's now.
                Some(st) if st.start != s.start => {}
                Some(st) if st.state == 'Z' && st.ppid == me => {
                    let r = nix::sys::wait::waitpid(
                        Pid::from_raw(*pid),
                        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                    );
                    reaped += usize::from(r.is_ok());
                }
                Some(st) if st.state == 'Z' => left.push(format!(
                    "{pid} is a zombie of {} (not reaped by its parent): {}",
                    st.ppid, s.cmd
                )),
                Some(_) => {}
            }
        }
        if left.is_empty() || start.elapsed() >= deadline {
            return (left, reaped);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills every live process carrying `mark` (cleanup after a failed assertion).
fn kill_marked(mark: &str) {
    let pids: Vec<Pid> = marked_processes(mark)
        .into_iter()
        .map(|(p, _)| Pid::from_raw(p))
        .collect();
    kill_all(&pids);
}

/// Polls `/proc/<pid>/status` until the process is gone; returns the highest `VmHWM`
/// (peak resident set, kB) seen. VmHWM only grows, so the last reading is the peak of
/// the process's whole life up to then.
fn watch_peak_rss(pid: Pid) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        // None: gone, or a zombie, which has no memory any more.
        while let Some(kb) = procfs::peak_rss_kb(pid.as_raw()) {
            peak = peak.max(kb);
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// Waits until `pid` or one of its children (a supervisor's worker) has a descriptor
/// open on `needle`.
fn wait_until_open(pid: i32, needle: &str, deadline: Duration) {
    let start = Instant::now();
    while !has_open(pid, needle)
        && !procfs::children_of(pid)
            .iter()
            .any(|c| has_open(*c, needle))
    {
        assert!(
            start.elapsed() < deadline,
            "process {pid} did not open {needle} within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

/// Waits until `runs.jsonl` has at least `count` records.
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
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// stderr lines that contain every one of `parts`.
fn lines_with(text: &str, parts: &[&str]) -> usize {
    text.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// The supervisor pid in a dispatcher's `NAME: started async (supervisor pid N)` line.
fn supervisor_pid(out: &Outcome, hook: &str) -> i32 {
    out.stderr
        .lines()
        .filter(|l| l.contains(&format!("{hook}: started async")))
        .find_map(|l| {
            let rest = &l[l.find("supervisor pid ")? + "supervisor pid ".len()..];
            rest[..rest.find(')')?].parse().ok()
        })
        .unwrap_or_else(|| panic!("no supervisor pid for {hook} in:\n{}", out.stderr))
}

/// The record of `hook` (exactly one).
fn record_of<'a>(records: &'a [Record], hook: &str) -> &'a Record {
    let mine: Vec<&Record> = records.iter().filter(|r| r.hook() == hook).collect();
    assert_eq!(mine.len(), 1, "records of {hook}: {records:?}");
    mine[0].assert_well_formed()
}

/// Prints a measured figure (for docs/reliability.md; shown with `--nocapture`).
#[allow(clippy::print_stderr)]
fn figure(text: &str) {
    eprintln!("{text}");
}

/// `sh -c 'umask <mask>; exec "$0" "$@"' <program> <args>`: the program itself (same
/// pid) with a umask, or with its stdout and stderr on /dev/null.
fn wrapped(shell: &str, program: &Path) -> Run {
    Run::new("/bin/sh").args(["-c", shell]).arg(program)
}

// ---------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------

/// One of the 200 dispatches of the load test.
#[derive(Debug, Clone)]
struct Dispatch {
    platform: String,
    object: String,
}

#[test]
fn load_200_concurrent_dispatches_across_every_adapter_lose_nothing() {
    const PER_ADAPTER: usize = 40;
    const ADAPTERS: usize = 5;
    const HOOKS: [&str; 4] = ["10-sync", "20-async", "30-locked", "40-async-locked"];
    become_subreaper();
    let env = TestEnv::new();
    let mark = new_mark("load");
    let trace = env.path("trace");
    let t = q(&trace);
    env.hook("10-sync")
        .sync()
        .phases("*")
        .body(&format!(
            "printf 'sync %s %s %s\\n' \"$HOOKRUN_PLATFORM\" \"$HOOKRUN_RUN_ID\" $$ >> {t}\necho \"out $HOOKRUN_RUN_ID\""
        ))
        .write();
    env.hook("20-async")
        .phases("*")
        .body(&format!(
            "printf 'async %s %s %s\\n' \"$HOOKRUN_PLATFORM\" \"$HOOKRUN_RUN_ID\" $$ >> {t}\necho \"async says $HOOKRUN_RUN_ID\""
        ))
        .write();
    // Both locked hooks take the same lock, across every adapter and dispatch: start and
    // end times are taken while it is held.
    let locked = format!(
        "s=$(date +%s%N)\necho \"locked $HOOKRUN_RUN_ID\"\nprintf 'lock %s %s %s\\n' \"$HOOKRUN_HOOK-$HOOKRUN_RUN_ID\" $s $(date +%s%N) >> {t}"
    );
    env.hook("30-locked")
        .sync()
        .phases("*")
        .header("lock: load")
        .body(&locked)
        .write();
    env.hook("40-async-locked")
        .phases("*")
        .header("lock: load")
        .body(&locked)
        .write();
    let lv = env.path("lv");
    mkdir(&lv, 0o755);
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), lv.join("qemu")).unwrap();

    let (cfg_k, cfg_v) = env.config_var();
    let base = |run: Run| {
        run.env(&cfg_k, &cfg_v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env(MARK_VAR, &mark)
            .env("PATH", DEFAULT_PATH)
    };
    // (what it is, the call, stdin for libvirt)
    let mut calls: Vec<(Dispatch, Run, Option<String>)> = Vec::new();
    for i in 0..PER_ADAPTER {
        let vmid = (1000 + i).to_string();
        calls.push((
            Dispatch {
                platform: "vzdump".into(),
                object: vmid.clone(),
            },
            base(vzdump_call(&env).args(["backup-end", "snapshot", &vmid])),
            None,
        ));
        let vmid = (2000 + i).to_string();
        calls.push((
            Dispatch {
                platform: "pve-guest".into(),
                object: vmid.clone(),
            },
            base(Run::new(bin("hookrun-pve-guest")).args([vmid.as_str(), "pre-start"])),
            None,
        ));
        let vm = format!("vm-{i}");
        calls.push((
            Dispatch {
                platform: "libvirt-qemu".into(),
                object: vm.clone(),
            },
            base(
                Run::new(lv.join("qemu"))
                    .args([vm.as_str(), "prepare", "begin", "-"])
                    .envs(libvirt_env()),
            ),
            Some(format!(
                "<domain type='kvm'><name>{vm}</name><uuid>00000000-0000-0000-0000-{i:012}</uuid></domain>"
            )),
        ));
        calls.push((
            Dispatch {
                platform: "worker".into(),
                object: format!("load{i}"),
            },
            base(Run::new(bin("hookrun-worker")).args(["hook".to_owned(), format!("pre-load{i}")])),
            None,
        ));
        calls.push((
            Dispatch {
                platform: "loadtest".into(),
                object: format!("run-{i}"),
            },
            base(Run::new(bin("hookrun")).args([
                "run".to_owned(),
                "--platform".into(),
                "loadtest".into(),
                "--phase".into(),
                "go".into(),
                "--object".into(),
                format!("run-{i}"),
            ])),
            None,
        ));
    }
    assert_eq!(calls.len(), PER_ADAPTER * ADAPTERS);

    let watch = ProcWatch::start(&mark);
    let started = Instant::now();
    let barrier = Barrier::new(calls.len());
    let outcomes: Vec<(Dispatch, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .into_iter()
            .map(|(d, run, stdin)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let out = match stdin {
                        Some(xml) => run.run_with_stdin(xml),
                        None => run.run(),
                    };
                    (d, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a dispatch thread"))
            .collect()
    });
    let dispatched = started.elapsed();

    // Every dispatch succeeded and printed its sync hooks' lines whole.
    let mut run_ids: BTreeMap<String, Dispatch> = BTreeMap::new();
    for (d, out) in &outcomes {
        out.assert_success();
        let mut id = None;
        for line in out.stdout.lines() {
            if let Some(rest) = line.strip_prefix("[10-sync] out ") {
                id = Some(rest.to_owned());
            } else {
                out.check(
                    line.starts_with("[30-locked] locked "),
                    &format!("a whole, attributed line: {line:?}"),
                );
            }
        }
        let id = id.unwrap_or_else(|| panic!("no run id from {d:?}: {}", out.stdout));
        out.check(
            out.stdout == format!("[10-sync] out {id}\n[30-locked] locked {id}\n"),
            "each sync hook's line once, in order",
        );
        assert!(
            run_ids.insert(id, d.clone()).is_none(),
            "run ids are unique"
        );
    }

    // Then every async hook: one complete record each.
    let total = outcomes.len() * HOOKS.len();
    let records = wait_for_records(&env, total, Duration::from_secs(60));
    let all_done = started.elapsed();
    let seen = watch.finish();
    let (left, reaped) = settle(&mark, &seen, Duration::from_secs(10));
    if !left.is_empty() {
        kill_marked(&mark);
    }
    assert!(left.is_empty(), "processes left behind: {left:#?}");
    // Read again once everything is gone: nothing more arrived.
    let records = {
        let again = env.records();
        assert_eq!(again.len(), records.len(), "records after the last one");
        again
    };
    let raw = std::fs::read(env.log_dir().join("runs.jsonl")).unwrap();
    assert!(raw.ends_with(b"\n"));
    assert_eq!(records.len(), total, "one record per matched hook");
    let mut by_run: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        r.assert_well_formed();
        by_run.entry(r.str("run_id").unwrap()).or_default().push(r);
    }
    assert_eq!(by_run.len(), run_ids.len());
    for (id, d) in &run_ids {
        let rs = by_run
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut hooks: Vec<&str> = rs.iter().map(|r| r.hook()).collect();
        hooks.sort_unstable();
        assert_eq!(hooks, HOOKS, "records of run {id} ({d:?})");
        for r in rs {
            assert_eq!(r.outcome(), "ok", "{r:?}");
            assert_eq!(r.str("platform"), Some(d.platform.as_str()), "{r:?}");
            assert_eq!(r.str("object"), Some(d.object.as_str()), "{r:?}");
            let want_mode = if r.hook().contains("async") {
                "async"
            } else {
                "sync"
            };
            assert_eq!(r.str("mode"), Some(want_mode), "{r:?}");
        }
        // Each async run's log: one start and one end line, its output in between.
        for hook in ["20-async", "40-async-locked"] {
            let job = format!("{}-{hook}-{}", d.platform, d.object);
            let path = env.log_dir().join(format!("async/{job}.log"));
            let log = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A locked run may have had to wait, and says so.
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    hook != "40-async-locked" || !l.starts_with("hookrun: waiting for lock load (")
                })
                .collect();
            assert_eq!(lines.len(), 3, "{}:\n{log}", path.display());
            assert!(
                lines[0].starts_with("=== ")
                    && lines[0].contains(&format!("start run {id} hook {hook}")),
                "{log}"
            );
            let said = if hook == "20-async" {
                "async says"
            } else {
                "locked"
            };
            assert_eq!(lines[1], format!("{said} {id}"), "{log}");
            assert!(
                lines[2].starts_with("=== ")
                    && lines[2].contains(&format!("end run {id} hook {hook}: ok (exit 0)")),
                "{log}"
            );
        }
    }
    assert!(
        std::fs::read_dir(env.log_dir().join("async/running"))
            .map_or(true, |mut d| d.next().is_none()),
        "running markers left behind"
    );

    // The hooks' own trace: whole lines only, each run once, locks never overlapping.
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut intervals: Vec<(u128, u128, &str)> = Vec::new();
    for line in trace_text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "a whole trace line: {line:?}");
        *kinds.entry(f[0]).or_default() += 1;
        if f[0] == "lock" {
            let (s, e): (u128, u128) = (f[2].parse().unwrap(), f[3].parse().unwrap());
            assert!(s <= e, "{line}");
            intervals.push((s, e, f[1]));
        } else {
            assert!(run_ids.contains_key(f[2]), "{line}");
        }
    }
    let n = outcomes.len();
    assert_eq!(
        kinds,
        BTreeMap::from([("async", n), ("lock", 2 * n), ("sync", n)])
    );
    intervals.sort_unstable();
    for w in intervals.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "lock 'load' held by {} and {} at the same time",
            w[0].2,
            w[1].2
        );
    }
    let tags: BTreeSet<&str> = intervals.iter().map(|i| i.2).collect();
    assert_eq!(tags.len(), 2 * n, "every locked run once");

    let supervisors = seen
        .values()
        .filter(|s| s.cmd.starts_with("hookrun-async"))
        .count();
    figure(&format!(
        "reliability load: {n} dispatches ({ADAPTERS} adapters), {total} hook runs, {} records, \
         {} lock holds; dispatchers done in {:.1}s, every async hook in {:.1}s; {} processes \
         seen ({supervisors} supervisors), none left; {reaped} orphans reaped as init",
        records.len(),
        intervals.len(),
        dispatched.as_secs_f64(),
        all_done.as_secs_f64(),
        seen.len()
    ));
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

/// Panics unless every stderr line is there only once: each problem is reported once.
fn assert_no_repeated_lines(out: &Outcome) {
    let mut seen = BTreeSet::new();
    for l in out.stderr.lines() {
        out.check(seen.insert(l), &format!("reported twice: {l:?}"));
    }
}

#[test]
fn hooks_that_hang_fork_daemonise_or_close_stdout_do_not_stop_the_others() {
    let env = TestEnv::with_config("kill_grace = 1");
    let pids = env.path("pids");
    let p = q(&pids);
    let marker = env.path("sentinel-ran");
    env.hook("10-hang")
        .sync()
        .phases("job-start")
        .header("timeout: 1")
        .body(&format!(
            "sleep 300 &\necho $! >> {p}\necho $$ >> {p}\nwait"
        ))
        .write();
    env.hook("20-fork")
        .sync()
        .phases("job-start")
        .body(&format!(
            "for i in 1 2 3 4 5 6 7 8; do sleep 300 & echo $! >> {p}; done\necho forked"
        ))
        .write();
    // Double fork and a new session, keeping the hook's stdout and stderr...
    env.hook("30-daemon-holding")
        .sync()
        .phases("job-start")
        .body(&format!(
            "( setsid sh -c {} & )\necho detached",
            shell_quote(&format!("echo $$ >> {p}; exec sleep 300"))
        ))
        .write();
    // ... and letting go of them, as a daemon should.
    env.hook("40-daemon-clean")
        .sync()
        .phases("job-start")
        .body(&format!(
            "( setsid sh -c {} </dev/null >/dev/null 2>&1 & )\necho detached",
            shell_quote(&format!("echo $$ >> {p}; exec sleep 300"))
        ))
        .write();
    env.hook("50-closes-stdout")
        .sync()
        .phases("job-start")
        .body("echo before\nexec >&-\necho 'stderr still works' >&2\nsleep 0.2")
        .write();
    std::os::unix::fs::symlink(env.path("nowhere"), env.hooks_dir().join("60-dangling")).unwrap();
    std::os::unix::fs::symlink("61-loop", env.hooks_dir().join("61-loop")).unwrap();
    env.hook("70-sentinel")
        .sync()
        .phases("job-start")
        .body(&format!("touch {}", q(&marker)))
        .write();

    let out = vzdump_call(&env).arg("job-start").run();
    // The detached daemons write their pids on their own time.
    wait_for_lines(&pids, 2 + 8 + 2, Duration::from_secs(10));
    let all = read_pids(&pids);
    let hang: Vec<Pid> = all[..2].to_vec();
    let alive = wait_dead(&hang, Duration::from_secs(2));
    // Only what is still alive: a dead process's pid may be someone else's by now.
    kill_all(&alive);
    kill_all(&all[2..]);

    // The first failure decides the exit code (the timeout); everything else ran.
    out.assert_code(124)
        .assert_faster_than(Duration::from_secs(10))
        .assert_stdout_contains("[20-fork] forked\n")
        .assert_stdout_contains("[40-daemon-clean] detached\n")
        .assert_stdout_contains("[50-closes-stdout] before\n")
        .assert_stderr_contains("[50-closes-stdout] stderr still works\n");
    assert!(alive.is_empty(), "the timed-out group survived: {alive:?}");
    assert!(marker.exists(), "the hook after the faulty ones ran");
    assert_eq!(all.len(), 2 + 8 + 2, "every hook wrote its pids");
    for (parts, want) in [
        (&["10-hang", "timed out after 1s"][..], 1),
        (
            &["20-fork", "in the background still holds its output open"],
            1,
        ),
        (
            &[
                "30-daemon-holding",
                "in the background still holds its output open",
            ],
            1,
        ),
        (&["40-daemon-clean", "background"], 0),
        (&["60-dangling", "dangling symlink", "it is not run"], 1),
        (&["61-loop", "symlink loop", "it is not run"], 1),
    ] {
        out.check(
            lines_with(&out.stderr, parts) == want,
            &format!("{want} line(s) with {parts:?}"),
        );
    }
    assert_no_repeated_lines(&out);
    let summary: Vec<(String, String)> = env
        .records()
        .iter()
        .map(|r| {
            (
                r.assert_well_formed().hook().to_owned(),
                r.outcome().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("10-hang", "timeout"),
        ("20-fork", "ok"),
        ("30-daemon-holding", "ok"),
        ("40-daemon-clean", "ok"),
        ("50-closes-stdout", "ok"),
        ("70-sentinel", "ok"),
    ]
    .iter()
    .map(|(h, o)| ((*h).to_owned(), (*o).to_owned()))
    .collect();
    assert_eq!(summary, want, "symlinks that cannot be hooks get no record");
}

/// The signals a hook commonly dies of, with their numbers on Linux.
const DEATHS: [(&str, i64); 9] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ABRT", 6),
    ("KILL", 9),
    ("SEGV", 11),
    ("PIPE", 13),
    ("TERM", 15),
    ("USR1", 10),
];

#[test]
fn hooks_dying_by_every_common_signal_are_each_recorded_and_reported_once() {
    let env = TestEnv::new();
    let marker = env.path("sentinel-ran");
    for (i, (name, _)) in DEATHS.iter().enumerate() {
        env.hook(&format!("{:02}-{name}", i + 1))
            .sync()
            .phases("job-start")
            // No core files; then die by the signal; never reach the exit.
            .body(&format!("ulimit -c 0\nkill -{name} $$\nsleep 5\nexit 0"))
            .write();
    }
    env.hook("50-async-SEGV")
        .phases("job-start")
        .body("ulimit -c 0\nkill -SEGV $$\nsleep 5")
        .write();
    env.hook("99-sentinel")
        .sync()
        .phases("job-start")
        .body(&format!("touch {}", q(&marker)))
        .write();

    let out = vzdump_call(&env).arg("job-start").run();
    // vzdump's job phases fail on the first failure; the rest still run.
    out.assert_code(128 + 1)
        .assert_faster_than(Duration::from_secs(5));
    assert!(marker.exists(), "the hook after them ran");
    let records = wait_for_records(&env, DEATHS.len() + 2, Duration::from_secs(15));
    for (i, (name, num)) in DEATHS.iter().enumerate() {
        let hook = format!("{:02}-{name}", i + 1);
        let r = record_of(&records, &hook);
        assert_eq!(
            (r.outcome(), r.int("signal"), r.int("exit_code")),
            ("signal", Some(*num), None),
            "{r:?}"
        );
        out.check(
            lines_with(&out.stderr, &[&format!("{hook}: killed by signal {num} ")]) == 1,
            &format!("one line saying {hook} was killed by signal {num}"),
        );
    }
    let r = record_of(&records, "50-async-SEGV");
    assert_eq!(
        (r.outcome(), r.int("signal")),
        ("signal", Some(11)),
        "{r:?}"
    );
    assert_eq!(record_of(&records, "99-sentinel").outcome(), "ok");
    assert_no_repeated_lines(&out);
}

#[test]
fn hooks_deleted_replaced_or_made_unsafe_between_scan_and_exec() {
    let env = TestEnv::new();
    let dir = env.hooks_dir();
    let d = q(&dir);
    let open_dir = env.path("open");
    mkdir(&open_dir, 0o777);
    write_file(
        &open_dir.join("target"),
        format!("#!/bin/sh\ntouch {}\n", q(&env.path("ran-45"))),
        0o755,
    );
    write_file(
        &env.path("replacement"),
        format!(
            "#!/bin/sh\n# phases: some-other-phase\ntouch {}\n",
            q(&env.path("ran-new-30"))
        ),
        0o755,
    );
    // The first hook changes the directory under the scan's feet: the dispatcher has
    // already read every header when it runs.
    env.hook("10-mutator")
        .sync()
        .phases("job-start")
        .body(&format!(
            "rm {d}/20-deleted\n\
             mv {} {d}/30-replaced\n\
             chmod 0757 {d}/40-unsafe\n\
             rm {d}/45-relinked && ln -s {} {d}/45-relinked\n\
             chmod 0644 {d}/50-noexec",
            q(&env.path("replacement")),
            q(&open_dir.join("target"))
        ))
        .write();
    for name in [
        "20-deleted",
        "30-replaced",
        "40-unsafe",
        "45-relinked",
        "50-noexec",
        "90-sentinel",
    ] {
        env.hook(name)
            .sync()
            .phases("job-start")
            .body(&format!("touch {}", q(&env.path(&format!("ran-{name}")))))
            .write();
    }

    let out = vzdump_call(&env).arg("job-start").run();
    let ran = |n: &str| env.path(&format!("ran-{n}")).exists();
    out.assert_code(127);
    assert!(ran("new-30"), "the file as it is at exec time runs");
    assert!(!ran("30-replaced") && !ran("20-deleted"));
    assert!(
        !ran("40-unsafe"),
        "made writable by others after the scan: refused"
    );
    assert!(
        !ran("45"),
        "turned into a symlink into an open directory: refused"
    );
    assert!(!ran("50-noexec"));
    assert!(ran("90-sentinel"));
    for parts in [
        &["20-deleted", "removed before it could run"][..],
        &["40-unsafe", "writable by others", "chmod go-w"],
        &["45-relinked", "symlink into an unsafe place", "chmod go-w"],
        &["50-noexec", "permission denied"],
    ] {
        out.check(
            lines_with(&out.stderr, parts) == 1,
            &format!("one line with {parts:?}"),
        );
    }
    assert_no_repeated_lines(&out);
    let summary: Vec<(String, String, Option<i64>)> = env
        .records()
        .iter()
        .map(|r| {
            r.assert_well_formed();
            (
                r.hook().to_owned(),
                r.outcome().to_owned(),
                r.int("exit_code"),
            )
        })
        .collect();
    let want = [
        ("10-mutator", "ok", Some(0)),
        ("20-deleted", "spawn-error", Some(127)),
        ("30-replaced", "ok", Some(0)),
        ("40-unsafe", "refused", Some(126)),
        ("45-relinked", "refused", Some(126)),
        ("50-noexec", "spawn-error", Some(126)),
        ("90-sentinel", "ok", Some(0)),
    ]
    .map(|(h, o, c)| (h.to_owned(), o.to_owned(), c));
    assert_eq!(summary, want);
}

#[test]
fn a_hook_that_turns_non_executable_while_it_runs_finishes_and_is_reported_next_time() {
    let env = TestEnv::new();
    env.hook("10-self")
        .sync()
        .phases("job-start")
        .body("chmod 0644 \"$0\"\nsleep 0.2\necho still running")
        .write();
    vzdump_call(&env)
        .arg("job-start")
        .run()
        .assert_success()
        .assert_stdout_eq("[10-self] still running\n");
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success().assert_stdout_eq("");
    out.check(
        lines_with(
            &out.stderr,
            &["warning", "10-self", "not executable", "chmod +x"],
        ) == 1,
        "one warning naming the fix",
    );
    let records = env.records();
    assert_eq!(records.len(), 1, "a file that is not run gets no record");
    assert_eq!(records[0].outcome(), "ok");
}

#[test]
fn a_hooks_directory_that_vanishes_before_or_during_a_dispatch() {
    // Before: no hook can run; a clear error, exit 78 where the platform listens.
    let env = TestEnv::new();
    std::fs::remove_dir(env.hooks_dir()).unwrap();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(78);
    out.check(
        lines_with(&out.stderr, &["error", "does not exist", "mkdir -m 0755"]) == 1,
        "one error naming the fix",
    );
    let guest = Run::new(bin("hookrun-pve-guest"))
        .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
        .env(env.config_var().0, env.config_var().1)
        .args(["101", "post-start"])
        .run();
    guest.assert_success();
    guest.check(
        lines_with(&guest.stderr, &["error", "does not exist"]) == 1,
        "reported, but post-start never fails the guest",
    );

    // During: the first hook removes the whole directory; the others are reported as
    // gone, once each, and the dispatcher finishes normally.
    let env = TestEnv::new();
    env.hook("10-rm")
        .sync()
        .phases("job-start")
        .body(&format!("rm -rf {}", q(&env.hooks_dir())))
        .write();
    for name in ["20-a", "30-b"] {
        env.hook(name)
            .sync()
            .phases("job-start")
            .body("echo should not run")
            .write();
    }
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(127)
        .assert_stdout_eq("")
        .assert_stderr_lacks("panicked");
    for name in ["20-a", "30-b"] {
        out.check(
            lines_with(&out.stderr, &[name, "removed before it could run"]) == 1,
            &format!("{name} reported once"),
        );
    }
    assert_no_repeated_lines(&out);
    let outcomes: Vec<String> = env
        .records()
        .iter()
        .map(|r| r.outcome().to_owned())
        .collect();
    assert_eq!(outcomes, ["ok", "spawn-error", "spawn-error"]);
}

/// Bytes a flooding hook writes: several hundred MB in all.
const FLOOD_OUT: u64 = 256 << 20;
const FLOOD_ERR: u64 = 64 << 20;

#[test]
fn a_sync_hook_flooding_its_output_is_drained_in_bounded_memory() {
    let env = TestEnv::new();
    let done = env.path("flood-done");
    env.hook("10-flood")
        .sync()
        .phases("job-start")
        .body(&format!(
            "head -c {FLOOD_OUT} /dev/zero\nyes 'a line of flood output' | head -c {FLOOD_ERR} >&2\ntouch {}",
            q(&done)
        ))
        .write();
    // The dispatcher itself (exec keeps the pid), its output thrown away by the shell.
    let (k, v) = env.config_var();
    let running = wrapped("exec \"$0\" \"$@\" >/dev/null 2>&1", &env.entry_point())
        .arg("job-start")
        .env(k, v)
        .env("PATH", DEFAULT_PATH)
        .spawn();
    let peak = watch_peak_rss(running.pid());
    let started = Instant::now();
    let out = running.wait();
    let took = started.elapsed();
    let peak_kb = peak.join().unwrap();
    out.assert_success();
    // The hook only gets past a pipe that is read: it wrote everything.
    assert!(done.exists(), "the hook did not finish writing");
    let records = env.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome(), "ok");
    figure(&format!(
        "reliability flood (sync): {} MiB relayed in {:.1}s, dispatcher peak RSS {} MiB",
        (FLOOD_OUT + FLOOD_ERR) >> 20,
        took.as_secs_f64(),
        peak_kb >> 10
    ));
    assert!(
        peak_kb > 0 && peak_kb < 48 * 1024,
        "dispatcher peak RSS {peak_kb} kB while relaying {} MiB",
        (FLOOD_OUT + FLOOD_ERR) >> 20
    );
}

#[test]
fn an_async_hook_flooding_its_output_is_capped_in_its_log() {
    const CAP: u64 = 64 << 20;
    let env = TestEnv::new();
    env.hook("10-flood")
        .phases("log-end")
        .body(&format!(
            "head -c {FLOOD_OUT} /dev/zero | tr '\\0' x\nyes 'a line of flood output' | head -c {FLOOD_ERR} >&2\necho 'the last line'"
        ))
        .write();
    let out = vzdump_call(&env).args(["log-end", "snapshot", "101"]).run();
    out.assert_success();
    let sup = Pid::from_raw(supervisor_pid(&out, "10-flood"));
    let peak = watch_peak_rss(sup);
    let records = wait_for_records(&env, 1, Duration::from_secs(60));
    let peak_kb = peak.join().unwrap();
    let r = records[0].assert_well_formed();
    assert_eq!(r.outcome(), "ok", "the hook was never blocked: {r:?}");
    let log_path = env.log_dir().join("async/vzdump-10-flood-101.log");
    let size = std::fs::metadata(&log_path).unwrap().len();
    assert!(
        size > CAP && size < CAP + 4096,
        "async log is {size} bytes; the cap is {CAP}"
    );
    let log = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&log[log.len() - 2048..]);
    let all = String::from_utf8_lossy(&log);
    assert_eq!(
        all.matches("hookrun: output truncated after 64 MiB")
            .count(),
        1,
        "the truncation is noted once: ...{text}"
    );
    let end = text.lines().last().unwrap_or_default();
    assert!(
        end.starts_with("=== ")
            && end.contains("end run")
            && end.contains(": ok (exit 0)")
            && end.contains(&format!(
                "output truncated after 64 MiB, {} more bytes discarded",
                FLOOD_OUT + FLOOD_ERR + "the last line\n".len() as u64 - CAP
            )),
        "{end}"
    );
    figure(&format!(
        "reliability flood (async): {} MiB written, log capped at {} bytes, supervisor peak RSS {} MiB",
        (FLOOD_OUT + FLOOD_ERR) >> 20,
        size,
        peak_kb >> 10
    ));
    assert!(
        peak_kb > 0 && peak_kb < 48 * 1024,
        "supervisor peak RSS {peak_kb} kB"
    );
}

/// A small tmpfs mounted over `dir` for one test, unmounted (lazily) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        mkdir(dir, 0o750);
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0750")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .expect("run mount (util-linux)");
        assert!(st.success(), "mount -t tmpfs on {}: {st}", dir.display());
        Tmpfs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = [b'.'; 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_full_log_disk_is_reported_once_and_the_hooks_still_run() {
    let env = TestEnv::new();
    let log = env.log_dir();
    let _tmpfs = Tmpfs::mount(&log, "64k");
    // A records file whose last page has 10 bytes left, then nothing else: the next
    // record can only be written in part.
    let mut old = String::from(
        "{\"time\":\"2026-11-21T03:00:00.000Z\",\"run_id\":\"old\",\"platform\":\"vzdump\",\"phase\":\"job-start\",\"object\":null,\"hook\":\"00-old\",\"mode\":\"sync\",\"outcome\":\"ok\",\"exit_code\":0,\"signal\":null,\"duration_ms\":1,\"job\":\"vzdump-00-old\"",
    );
    while old.len() < 4096 - 10 - 2 {
        old.push(' ');
    }
    old.push_str("}\n");
    std::fs::write(log.join("runs.jsonl"), &old).unwrap();
    fill(&log.join("filler"));

    let ran = |n: &str| env.path(&format!("ran-{n}"));
    for name in ["10-sync", "30-sync"] {
        env.hook(name)
            .sync()
            .phases("job-start")
            .body(&format!("echo hello\ntouch {}", q(&ran(name))))
            .write();
    }
    env.hook("20-async")
        .phases("job-start")
        .body(&format!("echo hello\ntouch {}", q(&ran("20-async"))))
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success()
        .assert_stdout_eq("[10-sync] hello\n[30-sync] hello\n");
    let warning = ["warning", "cannot write run record", "hooks still run"];
    out.check(
        lines_with(&out.stderr, &warning) == 1
            && (lines_with(&out.stderr, &["file system full"]) == 1
                || lines_with(&out.stderr, &["No space left on device"]) == 1),
        "the full disk reported once, as such",
    );
    assert_no_repeated_lines(&out);
    assert!(ran("10-sync").exists() && ran("30-sync").exists());
    // The async hook ran too; its supervisor could write nothing, and left nothing.
    let sup = supervisor_pid(&out, "20-async");
    wait_for_lines(&ran("20-async"), 0, Duration::from_secs(10));
    let gone = wait_dead(&[Pid::from_raw(sup)], Duration::from_secs(10));
    assert!(gone.is_empty(), "the supervisor ended");
    let running: Vec<_> = std::fs::read_dir(log.join("async/running"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        running.is_empty(),
        "empty running markers left: {running:?}"
    );
    assert_eq!(
        std::fs::read_to_string(log.join("runs.jsonl")).unwrap(),
        old,
        "no partial record is left in runs.jsonl"
    );

    // Room again: the next dispatch is recorded, and every line parses.
    std::fs::remove_file(log.join("filler")).unwrap();
    vzdump_call(&env).arg("job-start").run().assert_success();
    let records = wait_for_records(&env, 4, Duration::from_secs(10));
    for r in &records {
        r.assert_well_formed();
    }
    let mut hooks: Vec<&str> = records.iter().map(Record::hook).collect();
    hooks.sort_unstable();
    assert_eq!(hooks, ["00-old", "10-sync", "20-async", "30-sync"]);
}

// ---------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------

/// Every way a platform starts a dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Vzdump,
    PveGuest,
    Libvirt,
    WorkerHook,
    WorkerRun,
    HookrunRun,
}

impl Adapter {
    const ALL: [Adapter; 6] = [
        Adapter::Vzdump,
        Adapter::PveGuest,
        Adapter::Libvirt,
        Adapter::WorkerHook,
        Adapter::WorkerRun,
        Adapter::HookrunRun,
    ];

    /// The phase dispatched: one whose failures the platform listens to.
    fn phase(self) -> &'static str {
        match self {
            Adapter::Vzdump => "job-start",
            Adapter::PveGuest => "pre-start",
            Adapter::Libvirt => "prepare",
            Adapter::WorkerHook | Adapter::WorkerRun => "pre-sig",
            Adapter::HookrunRun => "go",
        }
    }

    /// The call, with the test tree's config and hooks directory; stdin at EOF.
    fn call(self, env: &TestEnv) -> Run {
        let (k, v) = env.config_var();
        let run = match self {
            Adapter::Vzdump => return vzdump_call(env).arg("job-start"),
            Adapter::PveGuest => Run::new(bin("hookrun-pve-guest")).args(["101", "pre-start"]),
            Adapter::Libvirt => {
                let script = env.path("lv/qemu");
                if std::fs::symlink_metadata(&script).is_err() {
                    mkdir(&env.path("lv"), 0o755);
                    std::os::unix::fs::symlink(bin("hookrun-libvirt"), &script).unwrap();
                }
                Run::new(script)
                    .args(["vm1", "prepare", "begin", "-"])
                    .envs(libvirt_env())
                    // "started async" is info, kept out of prepare's stderr by default.
                    .env("HOOKRUN_LOG", "info")
            }
            Adapter::WorkerHook => Run::new(bin("hookrun-worker")).args(["hook", "pre-sig"]),
            Adapter::WorkerRun => Run::new(bin("hookrun-worker")).args([
                "run".to_owned(),
                "sig".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                format!("touch {}", q(&env.path("command-ran"))),
            ]),
            Adapter::HookrunRun => {
                Run::new(bin("hookrun")).args(["run", "--platform", "sigtest", "--phase", "go"])
            }
        };
        run.env(k, v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env("PATH", DEFAULT_PATH)
    }
}

/// The terminating signals a dispatcher passes on.
const STOPS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Runs `check` for every case in parallel threads; fails with every failing case.
fn run_cases<C: std::fmt::Debug + Sync>(cases: &[C], check: impl Fn(&C) + Sync) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| (c, s.spawn(|| check(c)))).collect();
        handles
            .into_iter()
            .filter_map(|(c, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    format!("{c:?}: {}", msg.lines().next().unwrap_or_default())
                })
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A sync hook that starts a background child, writes both pids, and waits.
fn sleepy_body(pids: &Path) -> String {
    format!(
        "sleep 300 &\necho $! >> {p}\necho $$ >> {p}\nwait",
        p = q(pids)
    )
}

/// Holds `<lock_dir>/<name>.lock` the way hookrun does (flock) until dropped.
fn hold_lock(env: &TestEnv, name: &str) -> std::fs::File {
    let dir = env.path("lock");
    mkdir(&dir, 0o700);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{name}.lock")))
        .unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn signals_to_every_adapter_during_a_sync_hook_stop_its_group_and_are_recorded() {
    let cases: Vec<(Adapter, Signal)> = Adapter::ALL
        .iter()
        .flat_map(|a| STOPS.iter().map(move |s| (*a, *s)))
        .collect();
    run_cases(&cases, |&(adapter, sig)| {
        // Background children of a script ignore SIGINT: SIGKILL follows after 1 s.
        let env = TestEnv::with_config("kill_grace = 1");
        let pids = env.path("pids");
        env.hook("10-sleepy")
            .sync()
            .phases(adapter.phase())
            .body(&sleepy_body(&pids))
            .write();
        env.hook("20-later")
            .sync()
            .phases(adapter.phase())
            .body(&format!("touch {}", q(&env.path("later-ran"))))
            .write();
        let running = adapter.call(&env).spawn();
        let hook_pids: Vec<Pid> = wait_for_lines(&pids, 2, Duration::from_secs(20))
            .iter()
            .map(|l| Pid::from_raw(l.parse().unwrap()))
            .collect();
        running.signal(sig);
        let signalled = Instant::now();
        let out = running.wait();
        let alive = wait_dead(&hook_pids, Duration::from_secs(2));
        kill_all(&alive);
        out.assert_code(128 + sig as i32);
        out.check(
            signalled.elapsed() < Duration::from_secs(5),
            "stopped within the grace period",
        );
        assert!(alive.is_empty(), "the hook's group survived: {alive:?}");
        assert!(
            !env.path("later-ran").exists(),
            "a hook started after the signal"
        );
        assert!(
            !env.path("command-ran").exists(),
            "the worker's command ran"
        );
        let records = env.records();
        let r = record_of(&records, "10-sleepy");
        assert_eq!(
            (r.outcome(), r.int("signal")),
            ("signal", Some(sig as i64)),
            "{r:?}"
        );
        assert_eq!(record_of(&records, "20-later").outcome(), "skipped");
    });
}

#[test]
fn signals_to_every_adapter_waiting_for_a_lock_stop_it_and_are_recorded() {
    let cases: Vec<(Adapter, Signal)> = Adapter::ALL
        .iter()
        .flat_map(|a| STOPS.iter().map(move |s| (*a, *s)))
        .collect();
    run_cases(&cases, |&(adapter, sig)| {
        let env = TestEnv::new();
        env.hook("10-locked")
            .sync()
            .phases(adapter.phase())
            .header("lock: held")
            .body(&format!("touch {}", q(&env.path("locked-ran"))))
            .write();
        // hookrun-worker run takes the worker's own lock before any hook.
        let lock = if adapter == Adapter::WorkerRun {
            "worker-sig"
        } else {
            "held"
        };
        let _held = hold_lock(&env, lock);
        let running = adapter.call(&env).spawn();
        wait_until_open(
            running.pid().as_raw(),
            &format!("{lock}.lock"),
            Duration::from_secs(20),
        );
        running.signal(sig);
        let signalled = Instant::now();
        let out = running.wait();
        out.assert_code(128 + sig as i32);
        out.check(
            signalled.elapsed() < Duration::from_secs(3),
            "a lock wait ends at once",
        );
        assert!(!env.path("locked-ran").exists());
        assert!(!env.path("command-ran").exists());
        let records = env.records();
        if adapter == Adapter::WorkerRun {
            assert!(records.is_empty(), "no phase was dispatched: {records:?}");
            out.assert_stderr_line(&["signal", "waiting for lock worker-sig", "was not run"]);
        } else {
            let r = record_of(&records, "10-locked");
            assert_eq!(r.outcome(), "skipped", "{r:?}");
            out.assert_stderr_line(&["10-locked", "arrived while waiting for lock held"]);
        }
    });
}

#[test]
fn signals_to_async_supervisors_stop_their_hook_and_are_recorded() {
    let adapters = [
        Adapter::Vzdump,
        Adapter::PveGuest,
        Adapter::Libvirt,
        Adapter::WorkerHook,
        Adapter::HookrunRun,
    ];
    let cases: Vec<(Adapter, Signal, bool)> = adapters
        .iter()
        .flat_map(|a| {
            STOPS
                .iter()
                .flat_map(move |s| [(*a, *s, false), (*a, *s, true)])
        })
        .collect();
    run_cases(&cases, |&(adapter, sig, waiting_for_lock)| {
        let env = TestEnv::with_config("kill_grace = 1");
        let pids = env.path("pids");
        let hook = env.hook("10-bg").phases(adapter.phase());
        let hook = if waiting_for_lock {
            hook.header("lock: held")
        } else {
            hook
        };
        hook.body(&sleepy_body(&pids)).write();
        let held = waiting_for_lock.then(|| hold_lock(&env, "held"));
        let out = adapter.call(&env).run();
        out.assert_success();
        let sup = supervisor_pid(&out, "10-bg");
        let hook_pids: Vec<Pid> = if waiting_for_lock {
            wait_until_open(sup, "held.lock", Duration::from_secs(20));
            Vec::new()
        } else {
            wait_for_lines(&pids, 2, Duration::from_secs(20))
                .iter()
                .map(|l| Pid::from_raw(l.parse().unwrap()))
                .collect()
        };
        nix::sys::signal::kill(Pid::from_raw(sup), sig).unwrap();
        let records = wait_for_records(&env, 1, Duration::from_secs(10));
        let alive = wait_dead(&hook_pids, Duration::from_secs(3));
        kill_all(&alive);
        drop(held);
        let sup_left = wait_dead(&[Pid::from_raw(sup)], Duration::from_secs(5));
        assert!(sup_left.is_empty(), "the supervisor did not end");
        assert!(alive.is_empty(), "the hook's group survived: {alive:?}");
        let r = records[0].assert_well_formed();
        let want = if waiting_for_lock {
            "skipped"
        } else {
            "signal"
        };
        assert_eq!(
            (r.hook(), r.outcome(), r.int("signal"), r.str("mode")),
            ("10-bg", want, Some(sig as i64), Some("async")),
            "{r:?}"
        );
        if waiting_for_lock {
            assert!(!pids.exists(), "the hook ran although its lock never came");
        }
        let job = out
            .stderr
            .lines()
            .find_map(|l| l.split("output goes to ").nth(1))
            .expect("the async log path")
            .to_owned();
        let log = std::fs::read_to_string(&job).unwrap();
        let last = log.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("=== ")
                && last.contains(&format!("end run {}", r.str("run_id").unwrap()))
                && last.contains(&format!(": {want}")),
            "{log}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------

#[test]
fn unsafe_hooks_and_directories_are_refused_naming_the_fix() {
    /// How a case makes its hook (or directory) unsafe; returns what the message names.
    type Setup = fn(&TestEnv, &Path) -> (PathBuf, &'static str);
    let cases: Vec<(&str, Setup)> = vec![
        ("hook writable by its group", |_, hook| {
            chmod(hook, 0o775);
            (hook.to_owned(), "chmod go-w")
        }),
        ("hook writable by others", |_, hook| {
            chmod(hook, 0o757);
            (hook.to_owned(), "chmod go-w")
        }),
        ("hook owned by another user", |_, hook| {
            std::os::unix::fs::chown(hook, Some(65534), None).unwrap();
            (hook.to_owned(), "chown root")
        }),
        ("setuid hook", |_, hook| {
            chmod(hook, 0o4755);
            (hook.to_owned(), "chmod ug-s")
        }),
        ("setgid hook", |_, hook| {
            chmod(hook, 0o2755);
            (hook.to_owned(), "chmod ug-s")
        }),
        ("hooks directory writable by others", |env, _| {
            chmod(&env.hooks_dir(), 0o757);
            (env.hooks_dir(), "chmod go-w")
        }),
        ("hooks directory owned by another user", |env, _| {
            std::os::unix::fs::chown(env.hooks_dir(), Some(65534), None).unwrap();
            (env.hooks_dir(), "chown root")
        }),
        ("symlink into a world-writable directory", |env, hook| {
            let open = env.path("open");
            mkdir(&open, 0o777);
            std::fs::rename(hook, open.join("real")).unwrap();
            std::os::unix::fs::symlink(open.join("real"), hook).unwrap();
            (open, "symlink into an unsafe place")
        }),
        ("symlink into a sticky /tmp-like directory", |env, hook| {
            let tmp = env.path("sticky");
            mkdir(&tmp, 0o1777);
            std::fs::rename(hook, tmp.join("real")).unwrap();
            std::os::unix::fs::symlink(tmp.join("real"), hook).unwrap();
            (tmp, "symlink into an unsafe place")
        }),
        ("symlink to a file owned by another user", |env, hook| {
            let elsewhere = env.path("elsewhere");
            mkdir(&elsewhere, 0o755);
            std::fs::rename(hook, elsewhere.join("real")).unwrap();
            std::os::unix::fs::chown(elsewhere.join("real"), Some(65534), None).unwrap();
            std::os::unix::fs::symlink(elsewhere.join("real"), hook).unwrap();
            (hook.to_owned(), "chown root")
        }),
    ];
    run_cases(&cases, |(what, setup)| {
        let env = TestEnv::new();
        let hook = env
            .hook("10-hook")
            .sync()
            .phases("job-start")
            .body(&format!("touch {}", q(&env.path("ran"))))
            .write();
        let (named, fix) = setup(&env, &hook);
        let out = vzdump_call(&env).arg("job-start").run();
        out.assert_code(126);
        out.check(
            lines_with(
                &out.stderr,
                &["error", "10-hook", "refused", fix, &named.to_string_lossy()],
            ) == 1,
            &format!(
                "{what}: one error naming {} and the fix {fix:?}",
                named.display()
            ),
        );
        assert!(!env.path("ran").exists(), "{what}: the hook ran");
        let records = env.records();
        assert_eq!(
            record_of(&records, "10-hook").outcome(),
            "refused",
            "{what}"
        );
    });
}

/// Objects no file name may be built from as they are.
fn hostile_objects() -> Vec<String> {
    vec![
        "../../x".into(),
        "../../../../../../tmp/escaped".into(),
        "/etc/passwd".into(),
        "a/b".into(),
        "..".into(),
        "line\nbreak".into(),
        "x\n=== 2026-11-21T03:00:00.000Z end run forged hook 10-log: ok (exit 0) after 0.00s"
            .into(),
        "x".repeat(4096),
        "$(touch pwned)".into(),
        "semi;colon *?[a]".into(),
    ]
}

#[test]
fn hostile_objects_cannot_escape_the_job_name_the_log_path_or_the_lock_path() {
    let env = TestEnv::new();
    set_mk_job_dir(&env);
    let jobs = env.path("jobs");
    env.hook("10-sync.sh")
        .sync()
        .phases("*")
        .header("mk-job")
        .header("lock: fixed")
        .body(&format!("printf '%s\\n' \"$HOOKRUN_JOB\" >> {}", q(&jobs)))
        .write();
    env.hook("20-async.sh")
        .phases("*")
        .header("lock: fixed")
        .body("echo async output")
        .write();

    let (k, v) = env.config_var();
    let objects = hostile_objects();
    let mut calls: Vec<(String, Run)> = Vec::new();
    for o in &objects {
        calls.push((
            o.clone(),
            vzdump_call(&env).args(["backup-end", "snapshot", o]),
        ));
        calls.push((
            o.clone(),
            Run::new(bin("hookrun-pve-guest")).args([o.as_str(), "post-start"]),
        ));
        calls.push((
            o.clone(),
            Run::new(bin("hookrun")).args([
                "run",
                "--platform",
                "x",
                "--phase",
                "go",
                "--object",
                o,
            ]),
        ));
        calls.push((
            o.clone(),
            Run::new(bin("hookrun-worker")).args(["hook".to_owned(), format!("pre-{o}")]),
        ));
    }
    let lv = env.path("lv");
    mkdir(&lv, 0o755);
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), lv.join("qemu")).unwrap();
    for o in &objects {
        calls.push((
            o.clone(),
            Run::new(lv.join("qemu"))
                .args([o.as_str(), "started", "begin", "-"])
                .envs(libvirt_env()),
        ));
    }
    let n = calls.len();
    for (o, run) in calls {
        let out = run
            .env(&k, &v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env("PATH", DEFAULT_PATH)
            .run();
        out.check(out.code() == Some(0), &format!("object {o:?}"));
    }
    // A worker name becomes a lock name: hostile ones are refused outright.
    for o in &objects {
        let out = Run::new(bin("hookrun-worker"))
            .args(["run", o.as_str(), "--", "true"])
            .env(&k, &v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .run();
        out.assert_code(2).assert_stderr_contains("worker name");
    }
    let records = wait_for_records(&env, 2 * n, Duration::from_secs(30));
    assert_eq!(records.len(), 2 * n);

    let sane = |name: &str| {
        !name.is_empty()
            && name.len() <= 255
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for r in &records {
        r.assert_well_formed();
        let job = r.str("job").unwrap();
        assert!(sane(job) && job.len() <= 200, "job {job:?}");
        let object = r.str("object").unwrap();
        assert!(
            objects.iter().any(|o| o == object),
            "object kept exactly: {object:?}"
        );
    }
    let raw = std::fs::read_to_string(env.log_dir().join("runs.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), 2 * n, "one line per record");
    let seen_jobs = std::fs::read_to_string(&jobs).unwrap();
    assert_eq!(seen_jobs.lines().count(), n);
    assert!(
        seen_jobs.lines().all(sane),
        "HOOKRUN_JOB is the sanitised name"
    );

    // Every file hookrun made is where it belongs, under a sane name.
    let async_dir = env.log_dir().join("async");
    let mut logs = 0;
    for e in std::fs::read_dir(&async_dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "running" {
            continue;
        }
        assert!(e.file_type().unwrap().is_file() && sane(&name), "{name:?}");
        let log = std::fs::read_to_string(e.path()).unwrap();
        let runs = log.lines().filter(|l| l.starts_with("=== ")).count();
        let starts = log.matches(" start run ").count();
        assert_eq!(runs, 2 * starts, "no forged '=== ' lines in {name}:\n{log}");
        logs += 1;
    }
    assert!(logs >= objects.len(), "{logs} async logs");
    for dir in ["lock", "mk/root"] {
        for e in std::fs::read_dir(env.path(dir)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(sane(&name), "{dir}/{name:?}");
        }
    }
    let locks: BTreeSet<String> = std::fs::read_dir(env.path("lock"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(locks, BTreeSet::from(["fixed.lock".to_owned()]));
    assert!(!Path::new("/tmp/escaped").exists());
    assert!(!env.path("pwned").exists() && !env.hooks_dir().join("pwned").exists());
    let top: BTreeSet<String> = std::fs::read_dir(env.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = ["entry", "hookrun.toml", "jobs", "lock", "log", "lv", "mk"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(top, want, "nothing was created beside the tree's own files");
}

/// Points the tree's `mk_job_dir` at `<root>/mk`, so `# mk-job` writes stay inside it.
fn set_mk_job_dir(env: &TestEnv) {
    let mut config = std::fs::read_to_string(env.config_path()).unwrap();
    config.push_str(&format!(
        "mk_job_dir = {:?}\n",
        env.path("mk").to_string_lossy()
    ));
    write_file(&env.config_path(), config, 0o644);
}

/// Strings a shell would act on.
const SHELL_BAIT: &[&str] = &[
    "$(touch PWNED1)",
    "`touch PWNED2`",
    "; touch PWNED3",
    "|| touch PWNED4 &&",
    "*",
    "?",
    "[a-z]*",
    "$HOME ${PATH} $0 $1",
    "'single' \"double\" \\back",
    "  leading and  inner  spaces ",
    "",
];

#[test]
fn arguments_and_environment_reach_hooks_without_any_shell_interpretation() {
    let env = TestEnv::new();
    // A working directory with files a glob would match.
    let cwd = env.path("cwd");
    mkdir(&cwd, 0o755);
    for f in ["a", "b", "PWNED-bait"] {
        write_file(&cwd.join(f), "", 0o644);
    }
    env.hook("10-sync")
        .sync()
        .phases("*")
        .log_calls()
        .body("true")
        .write();
    env.hook("20-async")
        .phases("*")
        .log_calls()
        .body("true")
        .write();
    let bait_env: Vec<(String, String)> = SHELL_BAIT
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| (format!("BAIT_{i}"), (*s).to_owned()))
        .collect();
    let (k, v) = env.config_var();
    let lv = env.path("lv");
    mkdir(&lv, 0o755);
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), lv.join("qemu")).unwrap();
    // (the call, the argv every hook must get)
    let mut calls: Vec<(Run, Vec<String>)> = Vec::new();
    for bait in SHELL_BAIT {
        let vz = vec![
            "backup-end".to_owned(),
            "snapshot".into(),
            (*bait).to_owned(),
        ];
        calls.push((vzdump_call(&env).args(&vz), vz));
        let run_args: Vec<String> = vec![(*bait).to_owned(), "x".into(), (*bait).to_owned()];
        let mut cli = vec![
            "run".to_owned(),
            "--platform".into(),
            "x".into(),
            "--phase".into(),
            "go".into(),
            "--".into(),
        ];
        cli.extend(run_args.iter().cloned());
        calls.push((Run::new(bin("hookrun")).args(&cli), run_args.clone()));
        calls.push((
            Run::new(bin("hookrun-worker")).args(
                ["hook".to_owned(), "pre-x".into()]
                    .into_iter()
                    .chain(run_args.iter().cloned()),
            ),
            run_args.clone(),
        ));
        let lv_args = vec![
            "vm".to_owned(),
            "release".into(),
            "end".into(),
            (*bait).to_owned(),
        ];
        calls.push((
            Run::new(lv.join("qemu")).args(&lv_args).envs(libvirt_env()),
            lv_args,
        ));
    }
    let n = calls.len();
    let mut want_argv = Vec::new();
    for (run, argv) in calls {
        run.env(&k, &v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .env("PATH", DEFAULT_PATH)
            .envs(bait_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cwd)
            .run()
            .assert_success();
        want_argv.push(argv);
    }
    wait_for_lines(&env.calls_log(), 2 * n, Duration::from_secs(30));
    wait_for_records(&env, 2 * n, Duration::from_secs(30));
    let calls = env.calls();
    assert_eq!(calls.len(), 2 * n);
    for call in &calls {
        assert!(
            want_argv.contains(&call.argv),
            "{} got an argv no dispatch passed: {:?}",
            call.hook,
            call.argv
        );
        for (k, v) in &bait_env {
            assert_eq!(call.env.get(k), Some(v), "{} saw {k} changed", call.hook);
        }
    }
    for argv in &want_argv {
        let got = calls.iter().filter(|c| &c.argv == argv).count();
        let dispatched = want_argv.iter().filter(|a| *a == argv).count();
        assert_eq!(got, 2 * dispatched, "sync and async hook got {argv:?}");
    }
    for i in 1..=4 {
        for dir in [env.root().to_owned(), cwd.clone(), env.hooks_dir()] {
            assert!(
                !dir.join(format!("PWNED{i}")).exists(),
                "a shell ran bait {i} in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn files_that_may_hold_secrets_are_never_readable_by_others_even_under_umask_000() {
    let env = TestEnv::new();
    set_mk_job_dir(&env);
    let secret = format!("hunter2-{}", new_mark("secret"));
    let go = env.path("go");
    let got = env.path("got");
    env.hook("10-sync")
        .sync()
        .phases("migrate")
        .header("lock: secretive")
        .body("cat > /dev/null")
        .write();
    // The async hook reads its copy of the XML, then waits, so that the files of a
    // running async hook can be looked at.
    env.hook("20-async")
        .phases("migrate")
        .header("mk-job")
        .header("lock: secretive")
        .body(&format!(
            "wc -c > {}\nwhile [ ! -e {} ]; do sleep 0.02; done\necho done",
            q(&got),
            q(&go)
        ))
        .write();
    let lv = env.path("lv");
    mkdir(&lv, 0o755);
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), lv.join("qemu")).unwrap();
    let xml = format!(
        "<domain><name>vm1</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid><graphics type='vnc' passwd='{secret}'/></domain>"
    );
    let started = SystemTime::now();
    let (k, v) = env.config_var();
    let out = wrapped("umask 000; exec \"$0\" \"$@\"", &lv.join("qemu"))
        .args(["vm1", "migrate", "begin", "-"])
        .envs(libvirt_env())
        .env(k, v)
        .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
        // The "started async" line is info, kept out of migrate's stderr by default.
        .env("HOOKRUN_LOG", "info")
        .run_with_stdin(xml.clone());
    out.assert_success();
    let sup = supervisor_pid(&out, "20-async");
    let lines = wait_for_lines(&got, 1, Duration::from_secs(20));
    assert_eq!(
        lines[0].trim(),
        xml.len().to_string(),
        "the hook got the whole XML"
    );

    // While it runs: the supervisor's stdin is no longer the payload, and no file
    // anywhere holds the secret.
    let fd0 = std::fs::read_link(format!("/proc/{sup}/fd/0")).unwrap();
    assert_eq!(fd0, Path::new("/dev/null"), "the supervisor's stdin");
    for fd in std::fs::read_dir(format!("/proc/{sup}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let t = target.to_string_lossy();
        assert!(
            !t.starts_with("/memfd:") && !t.contains("stdin"),
            "the supervisor still holds {t}"
        );
    }
    let mut holders = Vec::new();
    for root in [
        env.root(),
        Path::new("/tmp"),
        Path::new("/dev/shm"),
        Path::new("/var/tmp"),
        Path::new("/run"),
    ] {
        find_secret(root, &secret, started, &mut holders);
    }
    assert!(holders.is_empty(), "files holding the secret: {holders:?}");
    let running: Vec<PathBuf> = std::fs::read_dir(env.log_dir().join("async/running"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(running.len(), 1, "the running marker");
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o7777
    };
    // umask 000 would make anything created without an explicit mode 0666 or 0777.
    for (path, want) in [
        (env.log_dir(), 0o750),
        (env.log_dir().join("runs.jsonl"), 0o640),
        (env.log_dir().join("async"), 0o750),
        (env.log_dir().join("async/running"), 0o750),
        (running[0].clone(), 0o640),
        (
            env.log_dir().join("async/libvirt-qemu-20-async-vm1.log"),
            0o640,
        ),
        (env.path("lock"), 0o700),
        (env.path("lock/secretive.lock"), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{} is {:o}", path.display(), mode(&path));
    }
    write_file(&go, "", 0o644);
    wait_for_records(&env, 2, Duration::from_secs(20));
    let gone = wait_dead(&[Pid::from_raw(sup)], Duration::from_secs(10));
    assert!(gone.is_empty());
    // Only Checkmk's job file is world-readable, as the agent's own mk-job makes it;
    // it holds times and an exit code, nothing of the hook's input or output.
    let job_file = env.path("mk/root/libvirt-qemu-20-async-vm1");
    assert_eq!(mode(&job_file), 0o644);
    let job = std::fs::read_to_string(&job_file).unwrap();
    assert!(!job.contains(&secret));
    let log =
        std::fs::read_to_string(env.log_dir().join("async/libvirt-qemu-20-async-vm1.log")).unwrap();
    assert!(log.contains("done"), "{log}");
}

/// Regular files under `root` changed since `since` (not too big) that contain `needle`.
fn find_secret(root: &Path, needle: &str, since: SystemTime, found: &mut Vec<PathBuf>) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for e in dir.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            find_secret(&e.path(), needle, since, found);
        } else if meta.is_file()
            && meta.len() < (1 << 20)
            && meta.modified().is_ok_and(|m| m >= since)
            && std::fs::read(e.path())
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(e.path());
        }
    }
}

#[test]
fn entity_expansion_attacks_on_the_libvirt_xml_stay_small_and_fast() {
    let env = TestEnv::new();
    let seen = env.path("seen");
    // The hook reports how much it got, and the dispatcher's peak memory so far (its
    // parent is the dispatcher, which has parsed the XML by then).
    env.hook("10-measure")
        .sync()
        .phases("prepare")
        .body(&format!(
            "n=$(wc -c)\nhwm=$(sed -n 's/^VmHWM:[[:space:]]*\\([0-9]*\\) kB/\\1/p' /proc/$PPID/status)\necho \"$n $hwm ${{HOOKRUN_LIBVIRT_UUID:-none}}\" >> {}",
            q(&seen)
        ))
        .write();
    let lv = env.path("lv");
    mkdir(&lv, 0o755);
    std::os::unix::fs::symlink(bin("hookrun-libvirt"), lv.join("qemu")).unwrap();
    // Billion laughs: ten levels of ten, 10^9 "lol"s if expanded.
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE domain [\n<!ENTITY lol0 \"lol\">\n");
    for i in 1..=9 {
        let refs: String = (0..10).map(|_| format!("&lol{};", i - 1)).collect();
        laughs.push_str(&format!("<!ENTITY lol{i} \"{refs}\">\n"));
    }
    laughs.push_str("]>\n<domain><name>vm1</name><uuid>&lol9;</uuid></domain>\n");
    // Quadratic blowup: one 64 KiB entity referenced 16384 times (a 1 GiB expansion).
    let big = "x".repeat(64 * 1024);
    let refs = "&big;".repeat(16 * 1024);
    let quadratic =
        format!("<!DOCTYPE domain [<!ENTITY big \"{big}\">]><domain><uuid>{refs}</uuid></domain>");
    // An external entity: never fetched.
    let external =
        "<!DOCTYPE domain [<!ENTITY x SYSTEM \"file:///etc/shadow\">]><domain><uuid>&x;</uuid></domain>"
            .to_owned();
    let (k, v) = env.config_var();
    for xml in [&laughs, &quadratic, &external] {
        let started = Instant::now();
        let out = Run::new(lv.join("qemu"))
            .args(["vm1", "prepare", "begin", "-"])
            .envs(libvirt_env())
            .env(&k, &v)
            .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
            .run_with_stdin(xml.clone());
        let took = started.elapsed();
        out.assert_success().assert_stderr_line(&[
            "warning",
            "is not expanded",
            "without HOOKRUN_LIBVIRT_UUID",
        ]);
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    let lines = wait_for_lines(&seen, 3, Duration::from_secs(5));
    for (line, xml) in lines.iter().zip([&laughs, &quadratic, &external]) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], xml.len().to_string(), "the hook got the XML as sent");
        let hwm_kb: u64 = f[1].parse().unwrap();
        assert!(hwm_kb < 48 * 1024, "dispatcher peak RSS {hwm_kb} kB");
        assert_eq!(f[2], "none", "no UUID from an entity");
    }
}

#[test]
fn a_worker_command_running_long_leaves_no_zombie_supervisors_behind_it() {
    // hookrun-worker lives as long as its command (hours, perhaps as a container's
    // PID 1); the supervisors of its async pre-hooks end long before. It must reap
    // them: before this was fixed, each stayed a zombie until the worker exited.
    let env = TestEnv::new();
    let sup_file = env.path("supervisor");
    let go = env.path("go");
    env.hook("10-async")
        .phases("pre-backup")
        .body(&format!("echo $PPID > {}", q(&sup_file)))
        .write();
    let entry = env.entry_dir().join("hookrun-worker");
    std::os::unix::fs::symlink(bin("hookrun-worker"), &entry).unwrap();
    let (k, v) = env.config_var();
    let running = Run::new(&entry)
        .args(["run", "backup", "--", "sh", "-c"])
        .arg(format!("while [ ! -e {} ]; do sleep 0.05; done", q(&go)))
        .env(k, v)
        .env("PATH", DEFAULT_PATH)
        .spawn();
    let worker = running.pid().as_raw();
    let sup: i32 = wait_for_lines(&sup_file, 1, Duration::from_secs(20))[0]
        .parse()
        .unwrap();
    let start = Instant::now();
    let state = loop {
        let st = procfs::stat(sup).filter(|st| st.ppid == worker);
        match st {
            None => break None,
            Some(st) if start.elapsed() > Duration::from_secs(5) => break Some(st),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    write_file(&go, "", 0o644);
    running.wait().assert_success();
    assert_eq!(
        state, None,
        "the supervisor {sup} is still a child of the running worker {worker}"
    );
}
