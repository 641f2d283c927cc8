//! The admin CLI, `hookrun`: `list`, `lint`, `run` (the generic adapter) and `demo`,
//! run as an operator runs them.

use std::time::Duration;

use hookrun_tests::{Run, TestEnv, bin, write_file};

/// `hookrun` with the tree's config and nothing else in its environment but `PATH`.
fn hookrun(env: &TestEnv) -> Run {
    let (k, v) = env.config_var();
    Run::new(bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
}

fn hooks_dir_arg(env: &TestEnv) -> String {
    env.hooks_dir().display().to_string()
}

#[test]
fn list_shows_what_would_run_and_why_everything_else_does_not() {
    let env = TestEnv::new();
    env.hook("10-run")
        .sync()
        .phases("backup-start")
        .header("timeout: 30s")
        .write();
    env.hook("20-async")
        .phases("backup-start log-end")
        .header("lock: nas")
        .write();
    env.hook("30-other").sync().phases("job-end").write();
    env.hook("40-only-200s")
        .sync()
        .phases("backup-start")
        .header("objects: 200-299")
        .write();
    env.hook("50-noexec")
        .sync()
        .phases("backup-start")
        .mode(0o644)
        .write();
    env.hook("60-bad")
        .header("mode: asnyc")
        .phases("backup-start")
        .write();
    env.hook("70-ww")
        .sync()
        .phases("backup-start")
        .mode(0o757)
        .write();
    env.write_hook("README", "notes\n", 0o644);
    env.write_hook(
        "10-run.dpkg-old",
        "#!/bin/sh\n# phases: backup-start\n",
        0o755,
    );

    let out = hookrun(&env)
        .args([
            "list",
            "--hooks-dir",
            &hooks_dir_arg(&env),
            "--phase",
            "backup-start",
            "--object",
            "101",
        ])
        .run();
    out.assert_success();
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.stdout))
            .to_owned()
    };
    assert!(
        line("10-run").starts_with("RUN")
            && line("10-run").contains("sync")
            && line("10-run").contains("timeout 30s"),
        "{}",
        out.stdout
    );
    assert!(
        line("20-async").starts_with("RUN")
            && line("20-async").contains("async")
            && line("20-async").contains("lock nas")
    );
    assert!(
        line("20-async").contains("on-error fail (platform default)"),
        "{}",
        out.stdout
    );
    assert!(line("30-other").starts_with("skip") && line("30-other").contains("phases: job-end"));
    assert!(
        line("40-only-200s").starts_with("skip")
            && line("40-only-200s").contains("not for object 101")
    );
    assert!(line("50-noexec").starts_with("WARN") && line("50-noexec").contains("chmod +x"));
    assert!(line("60-bad").starts_with("ERROR") && line("60-bad").contains("asnyc"));
    assert!(line("70-ww").starts_with("REFUSED") && line("70-ww").contains("chmod go-w"));
    assert!(line("README").starts_with("skip") && line("README").contains("never runs"));
    assert!(
        line("10-run.dpkg-old").starts_with("skip") && line("10-run.dpkg-old").contains("*.dpkg-*")
    );
    // Byte order, as dispatches run them.
    let names: Vec<&str> = out
        .stdout
        .lines()
        .skip(1)
        .filter(|l| !l.contains("hook(s) would run"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()),
        "{names:?}"
    );
    assert!(
        out.stdout.contains("2 hook(s) would run; 3 problem(s)"),
        "{}",
        out.stdout
    );

    // Without a phase: the inventory.
    let inv = hookrun(&env)
        .args(["list", "--hooks-dir", &hooks_dir_arg(&env)])
        .run();
    inv.assert_success()
        .assert_stdout_contains("phases: backup-start log-end; async");

    // A missing directory names the fix.
    let missing = hookrun(&env)
        .args(["list", "--hooks-dir", "/nonexistent/hooks.d"])
        .run();
    assert_ne!(missing.code(), Some(0));
    missing.assert_stderr_contains("mkdir -m 0755 /nonexistent/hooks.d");
}

#[test]
fn list_applies_the_worker_rule_for_header_less_scripts() {
    let env = TestEnv::new();
    env.hook("pre-backup.sh").body("echo pre").write();
    let out = hookrun(&env)
        .args([
            "list",
            "--platform",
            "worker",
            "--hooks-dir",
            &hooks_dir_arg(&env),
            "--phase",
            "pre-backup",
        ])
        .run();
    out.assert_success();
    assert!(
        out.stdout.lines().any(|l| l.starts_with("RUN")
            && l.contains("pre-backup.sh")
            && l.contains("on-error warn")),
        "{}",
        out.stdout
    );
}

#[test]
fn lint_reports_errors_near_misses_and_unknown_phases_with_file_and_line() {
    let env = TestEnv::new();
    let dir = hooks_dir_arg(&env);
    env.write_hook("a", "#!/bin/sh\n# phase: log-end\n#Mode: sync\n", 0o755);
    env.write_hook(
        "b",
        "#!/bin/sh\n# mode: asnyc\n# phases: log-end backup-started\n",
        0o755,
    );
    env.write_hook("c", "#!/bin/sh\n\n# phases: log-end\n", 0o755);
    env.write_hook("d", "#!/bin/sh\n# mode: sync\n# phases: log-end\n", 0o755);
    let out = hookrun(&env)
        .args(["lint", "--platform", "vzdump", &dir])
        .run();
    out.assert_code(1);
    let has = |needle: &str| {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in:\n{}",
            out.stdout
        )
    };
    has(&format!(
        "{dir}/a:2: warning: 'phase' is not a header key; did you mean 'phases'?"
    ));
    has(&format!("{dir}/a:3: warning: 'Mode' is not recognised"));
    has(&format!(
        "{dir}/b:2: error: invalid value \"asnyc\" for 'mode'"
    ));
    has(&format!(
        "{dir}/b:3: warning: 'backup-started' is not a vzdump phase"
    ));
    has(&format!(
        "{dir}/c:3: warning: '# phases' is after the end of the header"
    ));
    assert!(
        !out.stdout.contains(&format!("{dir}/d")),
        "a clean hook has no findings:\n{}",
        out.stdout
    );
    has("4 file(s) checked: 1 error(s)");

    // Only the clean hook: exit 0; --strict turns warnings into failure.
    let d = format!("{dir}/d");
    hookrun(&env)
        .args(["lint", "--platform", "vzdump", &d])
        .run()
        .assert_success();
    let w = format!("{dir}/a");
    hookrun(&env).args(["lint", &w]).run().assert_success();
    hookrun(&env)
        .args(["lint", "--strict", &w])
        .run()
        .assert_code(1);
}

#[test]
fn lint_knows_header_less_worker_scripts_run() {
    let env = TestEnv::new();
    let script = env.write_hook("pre-backup.sh", "#!/bin/sh\necho pre\n", 0o755);
    let s = script.display().to_string();
    let worker = hookrun(&env)
        .args(["lint", "--platform", "worker", &s])
        .run();
    worker
        .assert_success()
        .assert_stdout_contains("runs as a sync hook of phase pre-backup");
    assert!(!worker.stdout.contains("never runs"), "{}", worker.stdout);
    let vzdump = hookrun(&env)
        .args(["lint", "--platform", "vzdump", &s])
        .run();
    vzdump.assert_stdout_contains("never runs");
}

#[test]
fn run_is_the_generic_adapter_for_any_tool() {
    let env = TestEnv::new();
    env.hook("10-log")
        .sync()
        .phases("snapshot-end")
        .log_calls()
        .body("echo \"args: $*\"")
        .write();
    env.hook("20-fails")
        .sync()
        .phases("snapshot-end")
        .header("on-error: fail")
        .body("exit 5")
        .write();
    env.hook("30-after")
        .sync()
        .phases("snapshot-end")
        .body("echo after")
        .write();
    let dir = hooks_dir_arg(&env);
    let out = hookrun(&env)
        .args([
            "run",
            "--platform",
            "backrest",
            "--phase",
            "snapshot-end",
            "--object",
            "repo1",
            "--hooks-dir",
            &dir,
            "--",
            "a b",
            "-x",
        ])
        .run();
    out.assert_code(5)
        .assert_stdout_contains("[10-log] args: a b -x\n")
        .assert_stdout_contains("[30-after] after\n");
    let calls = env.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].argv, ["a b", "-x"]);
    let e = &calls[0].env;
    assert_eq!(
        e.get("HOOKRUN_PLATFORM").map(String::as_str),
        Some("backrest")
    );
    assert_eq!(e.get("HOOKRUN_OBJECT").map(String::as_str), Some("repo1"));
    assert_eq!(
        e.get("HOOKRUN_JOB").map(String::as_str),
        Some("backrest-10-log-repo1")
    );

    // --on-error-default decides for hooks without '# on-error:'.
    env.write_hook(
        "20-fails",
        "#!/bin/sh\n# mode: sync\n# phases: snapshot-end\nexit 5\n",
        0o755,
    );
    hookrun(&env)
        .args([
            "run",
            "-p",
            "backrest",
            "--phase",
            "snapshot-end",
            "--hooks-dir",
            &dir,
            "--on-error-default",
            "warn",
        ])
        .run()
        .assert_success();

    // --dry-run prints the plan and runs nothing.
    let before = env.calls().len();
    let dry = hookrun(&env)
        .args([
            "run",
            "-p",
            "backrest",
            "--phase",
            "snapshot-end",
            "--hooks-dir",
            &dir,
            "--dry-run",
        ])
        .run();
    dry.assert_success()
        .assert_stdout_contains("3 hook(s) would run");
    assert_eq!(env.calls().len(), before);

    // Usage and configuration errors have their own codes.
    hookrun(&env)
        .args(["run", "-p", "Bad Name", "--phase", "x"])
        .run()
        .assert_code(2);
    hookrun(&env)
        .args([
            "run",
            "-p",
            "backrest",
            "--phase",
            "x",
            "--hooks-dir",
            "/nonexistent",
        ])
        .run()
        .assert_code(78);
    write_file(&env.config_path(), "log_dri = \"/tmp\"\n", 0o644);
    let bad = hookrun(&env)
        .args(["run", "-p", "backrest", "--phase", "x", "--hooks-dir", &dir])
        .run();
    bad.assert_code(78)
        .assert_stderr_line(&["hookrun.toml:1", "unknown key 'log_dri'"]);
}

#[test]
fn demo_walks_a_whole_vzdump_job() {
    let env = TestEnv::new();
    let out = hookrun(&env)
        .arg("demo")
        .deadline(Duration::from_secs(120))
        .run();
    out.assert_success();
    for phase in [
        "job-init",
        "job-start",
        "backup-start snapshot 101",
        "log-end snapshot 102",
        "job-end",
    ] {
        out.assert_stdout_contains(&format!("==> vzdump calls: hook-dispatcher {phase}"));
    }
    out.assert_stdout_contains(
        "[30-quiesce-db] guest 102 (db): flushing tables before the snapshot",
    )
    .assert_stdout_contains("60-offsite-copy: started async")
    .assert_stdout_contains("exit_code 0")
    .assert_stdout_contains("Every phase ended as vzdump expects");
    // 9 sync records and 2 async ones.
    assert!(out.stdout.contains("  11 record(s)"), "{}", out.stdout);
}
