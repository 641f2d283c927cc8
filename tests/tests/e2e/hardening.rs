//! Issue 13, the parts of harden: each "Why" bullet as it was found on `main`, as a test
//! that failed there.
//!
//! - the check-then-exec race: `nobody` swapping the hooks directory with its own by
//!   `renameat2(RENAME_EXCHANGE)` during 300 root dispatches (it won 50 times on
//!   `main`) runs its file 0 times, and the directory is refused naming the fix;
//! - huge durations: `# timeout: 9223372036854775807` in `pre-restart` panicked (exit
//!   134, no record, later hooks not run); now the hook is refused with file:line, later
//!   hooks run, and `lint` reports it; the same for `default_timeout` and `kill_grace`;
//! - the configuration: a FIFO or `/dev/zero` as `HOOKRUN_CONFIG` blocked or grew
//!   memory; now both return at once with an error naming the fix;
//! - job names: `10-copy.sh` and `10-copy.py` (or `10-copy.old`) shared one job name;
//!   now the pair is refused at dispatch and reported by lint, list and doctor, `*.old`
//!   is ignored, and names differing only in bytes that are not UTF-8 get distinct jobs;
//! - a log directory squatted by another user is not written through.
//!
//! Unprivileged steps run as a real other user (`setpriv --reuid=65534`), which needs
//! root; those tests say so and skip otherwise.

use std::io::{BufRead as _, BufReader};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookrun_tests::require;
use hookrun_tests::{Run, TestEnv, bin, chmod, mkdir, write_file};

use crate::vzdump_call;

const NOBODY: u32 = 65534;

fn hookrun(env: &TestEnv) -> Run {
    let (k, v) = env.config_var();
    Run::new(bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Root, to act as another user (uid 65534), and setpriv to do it.
fn can_act_as_nobody() -> bool {
    require::root() && require::command_from("/usr/bin/setpriv", "util-linux")
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// The attacker process; killed and reaped when dropped, so it never outlives the test.
struct Attacker {
    child: Child,
    last: std::sync::Arc<std::sync::Mutex<(u64, u64)>>,
}

impl Attacker {
    /// `rename-exchange` as `nobody`, swapping `dir/a` and `dir/b`.
    fn start(dir: &Path, a: &str, b: &str) -> Attacker {
        let mut child = Command::new("/usr/bin/setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--pdeathsig=KILL",
            ])
            .arg(env!("CARGO_BIN_EXE_rename-exchange"))
            .arg(dir)
            .args([a, b, "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the attacker with setpriv");
        let stdout = child.stdout.take().expect("piped");
        let last = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
        let sink = last.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let n: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                if let [s, r] = n[..] {
                    *sink.lock().unwrap() = (s, r);
                }
            }
        });
        Attacker { child, last }
    }

    /// (swaps that succeeded, swaps refused) as last reported.
    fn counts(&self) -> (u64, u64) {
        *self.last.lock().unwrap()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tree of the race: `<root>/<parent>/hooks` (root's, with a hook appending to
/// `good`) and `<root>/<parent>/evil` (nobody's, with a hook of the same name appending
/// to `evil`).
fn race_tree(env: &TestEnv, parent_mode: u32) -> (PathBuf, PathBuf, PathBuf) {
    let parent = env.path("shared");
    mkdir(&parent, parent_mode);
    let hooks = parent.join("hooks");
    mkdir(&hooks, 0o755);
    let good = env.path("good");
    let evil = env.path("evil");
    let hook = |to: &Path| {
        format!(
            "#!/bin/sh\n# mode: sync\n# phases: job-start\necho x >> {}\n",
            to.display()
        )
    };
    write_file(&hooks.join("10-hook"), hook(&good), 0o755);
    let theirs = parent.join("evil");
    mkdir(&theirs, 0o755);
    write_file(&theirs.join("10-hook"), hook(&evil), 0o755);
    chown(&theirs.join("10-hook"), NOBODY);
    chown(&theirs, NOBODY);
    (hooks, good, evil)
}

/// Waits until the attacker has reported at least one attempt: it is running.
fn wait_started(a: &Attacker) {
    for _ in 0..200 {
        let (s, r) = a.counts();
        if s + r > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the attacker did not start");
}

#[test]
#[allow(clippy::print_stderr)] // the figures, for docs/reliability.md
fn swapping_the_hooks_directory_under_a_writable_ancestor_never_runs_the_attackers_file() {
    if !can_act_as_nobody() {
        return;
    }
    let env = TestEnv::new();
    // World-writable without the sticky bit: anyone may rename what is in it.
    let (hooks, good, evil) = race_tree(&env, 0o777);
    let parent = hooks.parent().unwrap().to_owned();
    let attacker = Attacker::start(&parent, "hooks", "evil");
    wait_started(&attacker);
    let mut codes = std::collections::BTreeMap::new();
    let started = std::time::Instant::now();
    for i in 0..300 {
        let out = vzdump_call(&env)
            .env("HOOKRUN_HOOKS_DIR", &hooks)
            .arg("job-start")
            .run();
        if i == 0 {
            out.assert_stderr_line(&[
                "refused",
                "without the sticky bit",
                &format!("chmod go-w {}", parent.display()),
            ]);
        }
        *codes.entry(out.code()).or_insert(0) += 1;
    }
    let (swapped, _) = attacker.counts();
    drop(attacker);
    eprintln!(
        "race: {swapped} swaps by uid 65534 during 300 root dispatches ({:.1} s); the attacker's file ran {} times",
        started.elapsed().as_secs_f64(),
        count_lines(&evil)
    );
    assert!(swapped > 100, "the attacker hardly ran: {swapped} swaps");
    assert_eq!(count_lines(&evil), 0, "the attacker's file ran as root");
    assert_eq!(count_lines(&good), 0, "a hook under an unsafe ancestor ran");
    // Each dispatch refused its hook (126) — or found no hook at all, when it scanned
    // the moment the attacker's directory stood in its place and the check found that
    // hook was not root's: still 126.
    assert_eq!(codes, [(Some(126), 300)].into(), "exit codes");
}

#[test]
fn under_a_sticky_ancestor_the_swap_fails_and_root_hooks_keep_running() {
    if !can_act_as_nobody() {
        return;
    }
    let env = TestEnv::new();
    // Like /tmp: others may add entries but not rename root's, so this is trusted.
    let (hooks, good, evil) = race_tree(&env, 0o1777);
    let parent = hooks.parent().unwrap().to_owned();
    let attacker = Attacker::start(&parent, "hooks", "evil");
    wait_started(&attacker);
    for _ in 0..50 {
        vzdump_call(&env)
            .env("HOOKRUN_HOOKS_DIR", &hooks)
            .arg("job-start")
            .run()
            .assert_success();
    }
    let (swapped, refused) = attacker.counts();
    drop(attacker);
    assert_eq!(swapped, 0, "the kernel let nobody rename root's directory");
    assert!(refused > 0);
    assert_eq!(count_lines(&good), 50);
    assert_eq!(count_lines(&evil), 0);
}

#[test]
fn a_symlinked_hook_is_judged_by_every_link_and_directory_of_its_chain() {
    if !can_act_as_nobody() {
        return;
    }
    let env = TestEnv::new();
    // The target's immediate directory is fine, an ancestor of it is not (on main only
    // the immediate parent was checked).
    let open = env.path("open");
    mkdir(&open, 0o777);
    let real = open.join("real");
    mkdir(&real, 0o755);
    let ran = env.path("ran");
    write_file(
        &real.join("hook"),
        format!(
            "#!/bin/sh\n# mode: sync\n# phases: job-start\ntouch {}\n",
            ran.display()
        ),
        0o755,
    );
    std::os::unix::fs::symlink(real.join("hook"), env.hooks_dir().join("10-link")).unwrap();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(126).assert_stderr_line(&[
        "10-link",
        "symlink into an unsafe place",
        &format!("chmod go-w {}", open.display()),
    ]);
    assert!(!ran.exists());

    // A link in the middle of the chain owned by another user is not followed.
    chmod(&open, 0o755);
    let hop = env.path("hop");
    std::os::unix::fs::symlink(real.join("hook"), &hop).unwrap();
    chown(&hop, NOBODY);
    std::fs::remove_file(env.hooks_dir().join("10-link")).unwrap();
    std::os::unix::fs::symlink(&hop, env.hooks_dir().join("10-link")).unwrap();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(126).assert_stderr_line(&[
        "10-link",
        "chown -h root",
        &hop.display().to_string(),
    ]);
    assert!(!ran.exists());

    // Owned by root, the same chain is fine.
    chown(&hop, 0);
    vzdump_call(&env).arg("job-start").run().assert_success();
    assert!(ran.exists());
}

#[test]
fn a_log_directory_squatted_by_another_user_is_not_written_through() {
    if !can_act_as_nobody() {
        return;
    }
    let env = TestEnv::new();
    mkdir(&env.log_dir(), 0o755);
    chown(&env.log_dir(), NOBODY);
    env.hook("10-ok")
        .sync()
        .phases("job-start")
        .body("exit 0")
        .write();
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_success().assert_stderr_line(&[
        &env.log_dir().display().to_string(),
        "owned by uid 65534",
        "chown root",
    ]);
    assert!(!env.log_dir().join("runs.jsonl").exists());
}

// ---------------------------------------------------------------------------------------
// No panic on any number
// ---------------------------------------------------------------------------------------

#[test]
fn a_huge_timeout_is_refused_at_parse_time_and_later_hooks_run() {
    let env = TestEnv::new();
    let ran = env.path("ran");
    for (name, value) in [
        ("10-huge", "9223372036854775807"),
        ("20-wraps", "18446744073709552"),
        ("30-hours", "99999999999h"),
    ] {
        env.hook(name)
            .sync()
            .phases("pre-restart")
            .header(&format!("timeout: {value}"))
            .body(&format!("echo {name} >> {}", ran.display()))
            .write();
    }
    env.hook("40-later")
        .sync()
        .phases("pre-restart")
        .header("timeout: 8760h")
        .body(&format!("echo 40-later >> {}", ran.display()))
        .write();
    // pre-restart: a failure must never stop the guest from starting again: exit 0.
    let out = vzdump_call(&env)
        .args(["pre-restart", "snapshot", "101"])
        .run();
    out.assert_success();
    for name in ["10-huge", "20-wraps", "30-hours"] {
        out.assert_stderr_line(&[
            name,
            "refused",
            &format!("{}:line 4", env.hooks_dir().join(name).display()),
            "the most is 31536000 seconds",
        ]);
    }
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap_or_default(),
        "40-later\n"
    );
    let records: Vec<(String, String)> = env
        .records()
        .iter()
        .map(|r| (r.hook().to_owned(), r.outcome().to_owned()))
        .collect();
    assert_eq!(
        records,
        [
            ("10-huge".to_owned(), "refused".to_owned()),
            ("20-wraps".into(), "refused".into()),
            ("30-hours".into(), "refused".into()),
            ("40-later".into(), "ok".into()),
        ]
    );
    let lint = hookrun(&env)
        .args(["lint", "--platform", "vzdump"])
        .arg(env.hooks_dir())
        .run();
    lint.assert_code(1).assert_stdout_contains(&format!(
        "{}:4: error: invalid value \"9223372036854775807\" for 'timeout'",
        env.hooks_dir().join("10-huge").display()
    ));
}

#[test]
fn huge_durations_in_the_config_are_errors_with_file_and_line() {
    for (key, line) in [
        ("default_timeout = 9223372036854775807", 3),
        ("kill_grace = \"9223372036854775807s\"", 3),
    ] {
        let env = TestEnv::with_config(key);
        env.hook("10-ok")
            .sync()
            .phases("job-start")
            .body("exit 0")
            .write();
        let out = vzdump_call(&env).arg("job-start").run();
        out.assert_code(78).assert_stderr_line(&[
            &format!("{}:{line}:", env.config_path().display()),
            "the most is 31536000 seconds",
        ]);
        assert!(env.records().is_empty());
        let lint = hookrun(&env)
            .args(["lint", "--platform", "vzdump"])
            .arg(env.hooks_dir())
            .run();
        lint.check(lint.code() != Some(0), "lint fails on a bad config")
            .assert_stderr_contains(&format!("{}:{line}:", env.config_path().display()));
    }
}

// ---------------------------------------------------------------------------------------
// Config reading
// ---------------------------------------------------------------------------------------

#[test]
fn a_fifo_or_a_device_as_the_config_returns_at_once_with_an_error() {
    let env = TestEnv::new();
    env.hook("10-ok")
        .sync()
        .phases("job-start")
        .body("exit 0")
        .write();
    let fifo = env.path("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, kind) in [
        (fifo.as_path(), "is a FIFO"),
        (Path::new("/dev/zero"), "is a device"),
    ] {
        let out = env
            .run_entry()
            .env("HOOKRUN_CONFIG", path)
            .arg("job-start")
            .deadline(Duration::from_secs(20))
            .run();
        out.assert_code(78)
            .assert_faster_than(Duration::from_secs(5))
            .assert_stderr_line(&[&path.display().to_string(), kind, "point HOOKRUN_CONFIG at"]);
        // pre-restart must exit 0 even so.
        env.run_entry()
            .env("HOOKRUN_CONFIG", path)
            .args(["pre-restart", "stop", "101"])
            .run()
            .assert_success()
            .assert_faster_than(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------
// Job identities
// ---------------------------------------------------------------------------------------

#[test]
fn two_hooks_with_one_job_name_are_refused_and_reported_everywhere() {
    let env = TestEnv::new();
    let ran = env.path("ran");
    for name in ["10-copy.sh", "10-copy.py", "10-copy.old", "20-other.sh"] {
        env.hook(name)
            .sync()
            .phases("job-start")
            .body(&format!(
                "echo \"$HOOKRUN_HOOK $HOOKRUN_JOB\" >> {}",
                ran.display()
            ))
            .write();
    }
    let out = vzdump_call(&env).arg("job-start").run();
    out.assert_code(126);
    for (this, other) in [("10-copy.py", "10-copy.sh"), ("10-copy.sh", "10-copy.py")] {
        out.assert_stderr_line(&[
            this,
            "refused",
            &format!(
                "{} and {} have the same job name",
                env.hooks_dir().join(this).display(),
                env.hooks_dir().join(other).display()
            ),
        ]);
    }
    // `.old` is an ignored leftover: it neither runs nor collides.
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap_or_default(),
        "20-other.sh vzdump-20-other\n"
    );
    out.assert_stderr_lacks("10-copy.old");

    let dir = env.hooks_dir().display().to_string();
    let lint = hookrun(&env)
        .args(["lint", "--platform", "vzdump", &dir])
        .run();
    lint.assert_code(1)
        .assert_stdout_contains(&format!(
            "{dir}/10-copy.sh: error: would be refused: {dir}/10-copy.sh and {dir}/10-copy.py have the same job name"
        ))
        .assert_stdout_contains("3 file(s) checked: 2 error(s)")
        .check(
            !lint.stdout.contains("10-copy.old"),
            "an ignored leftover is not linted as a hook",
        );
    let list = hookrun(&env)
        .args(["list", "--platform", "vzdump", "--hooks-dir", &dir])
        .run();
    list.assert_success();
    let line = |name: &str| {
        list.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", list.stdout))
            .to_owned()
    };
    assert!(line("10-copy.sh").starts_with("REFUSED"), "{}", list.stdout);
    assert!(
        line("10-copy.py").contains("same job name"),
        "{}",
        list.stdout
    );
    assert!(line("20-other.sh").starts_with("hook"), "{}", list.stdout);
    let plan = hookrun(&env)
        .args([
            "list",
            "--platform",
            "vzdump",
            "--hooks-dir",
            &dir,
            "--phase",
            "job-start",
        ])
        .run();
    plan.assert_success()
        .assert_stdout_contains("1 hook(s) would run; 2 problem(s)");
}

#[test]
fn doctor_names_both_hooks_of_one_job_name() {
    let env = TestEnv::new();
    let root = env.root();
    mkdir(&root.join("usr"), 0o755);
    mkdir(&root.join("usr/bin"), 0o755);
    mkdir(&root.join("etc"), 0o755);
    for a in [
        "hookrun-vzdump",
        "hookrun-pve-guest",
        "hookrun-libvirt",
        "hookrun-worker",
    ] {
        write_file(&root.join("usr/bin").join(a), "#!/bin/sh\nexit 0\n", 0o755);
    }
    write_file(
        &root.join("etc/vzdump.conf"),
        "script: /usr/bin/hookrun-vzdump\n",
        0o644,
    );
    let d = root.join("etc/hookrun/vzdump.d");
    std::fs::create_dir_all(&d).unwrap();
    let hook = "#!/bin/sh\n# mode: sync\n# phases: backup-start\nexit 0\n";
    write_file(&d.join("10-copy.sh"), hook, 0o755);
    write_file(&d.join("10-copy.py"), hook, 0o755);
    let out = Run::new(bin("hookrun"))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("doctor")
        .arg("--root")
        .arg(root)
        .args(["--bin-dir", "/usr/bin"])
        .run();
    out.check(out.code() != Some(0), "doctor fails on an error")
        .assert_stdout_contains(&format!(
            "{} and {} have the same job name",
            d.join("10-copy.py").display(),
            d.join("10-copy.sh").display()
        ));
}

#[test]
fn names_differing_only_in_bytes_that_are_not_utf8_get_distinct_job_names() {
    let env = TestEnv::new();
    let ran = env.path("ran");
    let hook = format!(
        "#!/bin/sh\n# mode: sync\n# phases: job-start\necho \"$HOOKRUN_JOB\" >> {}\n",
        ran.display()
    );
    for b in [0xfe_u8, 0xff] {
        let name = std::ffi::OsStr::from_bytes(&[b'4', b'0', b'-', b]).to_owned();
        write_file(&env.hooks_dir().join(name), &hook, 0o755);
    }
    vzdump_call(&env).arg("job-start").run().assert_success();
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap_or_default(),
        "vzdump-40-_xfe\nvzdump-40-_xff\n"
    );
    let hooks: Vec<String> = env.records().iter().map(|r| r.hook().to_owned()).collect();
    assert_eq!(hooks, ["40-\\xfe", "40-\\xff"]);
}
