//! Checkmk job files (`# mk-job`, `mk_job = "native"`) as Checkmk's agent sees them:
//! the agent prints every regular file in each user directory of its job directory,
//! dotfiles included, and walks the job directory itself with a shell `*` glob. So at
//! every moment a user directory may hold only `<job>` and `<job>.<pid>running`, and
//! running files of dead runs must go (issue 14). fsync is delayed with strace's fault
//! injection to hold hookrun inside its write window while the directory is watched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookrun_tests::require;
use hookrun_tests::{TestEnv, kill_all, wait_dead, write_file};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::vzdump_call;

const JOB: &str = "vzdump-30-report-101";

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

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What the agent may find in a user directory: the job file, or a running file.
fn allowed(name: &str) -> bool {
    name == JOB
        || name
            .strip_prefix(&format!("{JOB}."))
            .and_then(|r| r.strip_suffix("running"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn the_agent_never_sees_a_temp_file_even_while_fsync_is_slow() {
    let strace = Path::new("/usr/bin/strace");
    if !require::command_from("/usr/bin/strace", "strace") {
        return;
    }
    let env = env_with_mk_job_dir();
    env.hook("30-report")
        .sync()
        .phases("log-end")
        .header("mk-job")
        .body("sleep 0.3; exit 2")
        .write();
    let mk = env.path("mk");
    let user_dir = mk.join("root");
    let tmp_dir = mk.join(".hookrun-tmp.root");

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, mk, user_dir, tmp_dir) = (
            Arc::clone(&stop),
            mk.clone(),
            user_dir.clone(),
            tmp_dir.clone(),
        );
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut top = BTreeSet::new();
            let mut temp_seen = 0usize;
            while !stop.load(Ordering::Relaxed) {
                seen.extend(names(&user_dir));
                // The agent's `*` glob over the job directory.
                top.extend(names(&mk).into_iter().filter(|n| !n.starts_with('.')));
                if !names(&tmp_dir).is_empty() {
                    temp_seen += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (seen, top, temp_seen)
        })
    };
    let (k, v) = env.config_var();
    // Each fsync waits 400 ms first: the temp file of the running file and of the job
    // file each exist that long.
    let out = hookrun_tests::Run::new(strace)
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync"])
        .args(["-e", "inject=fsync:delay_enter=400000"])
        .arg(env.entry_point())
        .args(["log-end", "snapshot", "101"])
        .env(k, v)
        .env("LC_ALL", "C")
        .run();
    stop.store(true, Ordering::Relaxed);
    let (seen, top, temp_seen) = watcher.join().expect("the watcher");
    out.assert_code(2);
    assert!(
        seen.iter().all(|n| allowed(n)),
        "the agent would have read {seen:?}"
    );
    assert!(
        seen.iter().any(|n| n != JOB),
        "the running file was never seen: {seen:?}"
    );
    assert_eq!(
        top,
        BTreeSet::from(["root".to_owned()]),
        "only user directories in the job directory"
    );
    assert!(
        temp_seen > 0,
        "the delayed write was never caught in the temp directory (the test did not test)"
    );
    assert_eq!(names(&user_dir), [JOB]);
    assert!(names(&tmp_dir).is_empty(), "{:?}", names(&tmp_dir));
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_runs_running_file_is_removed_by_the_next_run_of_the_job() {
    let env = env_with_mk_job_dir();
    let pid_file = env.path("hook.pid");
    let fast = env.path("fast");
    env.hook("30-report")
        .sync()
        .phases("log-end")
        .header("mk-job")
        .body(&format!(
            "[ -e {fast} ] && exit 0\necho $$ > {pid}\nexec sleep 60",
            fast = hookrun_tests::shell_quote(&fast.to_string_lossy()),
            pid = hookrun_tests::shell_quote(&pid_file.to_string_lossy())
        ))
        .write();
    let user_dir: PathBuf = env.path("mk/root");
    let running = vzdump_call(&env)
        .args(["log-end", "snapshot", "101"])
        .spawn();
    let dispatcher = running.pid();
    // The running file is named after the process that runs the hook: the worker under
    // the dispatcher's guard.
    let mut stale = PathBuf::new();
    wait_for(
        "the running file and the hook",
        Duration::from_secs(20),
        || {
            if let Some(f) = names(&user_dir)
                .into_iter()
                .find(|n| n.ends_with("running"))
            {
                stale = user_dir.join(f);
            }
            stale.exists() && std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n'))
        },
    );
    let hook: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let worker: i32 = stale
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches(&format!("{JOB}."))
        .trim_end_matches("running")
        .parse()
        .unwrap();
    // Both hookrun processes die at once (a crash, the OOM killer): nothing is left to
    // clean up, so the running file stays.
    let _ = nix::sys::signal::kill(Pid::from_raw(worker), Signal::SIGKILL);
    let _ = nix::sys::signal::kill(dispatcher, Signal::SIGKILL);
    let _ = running.wait();
    kill_all(&[Pid::from_raw(hook)]);
    assert!(wait_dead(&[Pid::from_raw(hook)], Duration::from_secs(5)).is_empty());
    assert!(stale.exists(), "kill -9 leaves the running file behind");

    // The next run of the same job, a quick one this time.
    write_file(&fast, "", 0o644);
    vzdump_call(&env)
        .args(["log-end", "snapshot", "101"])
        .run()
        .assert_code(0);
    assert_eq!(
        names(&user_dir),
        [JOB],
        "the next run removes the dead run's running file"
    );
}
