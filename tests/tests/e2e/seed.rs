//! Differential test against the seed: the seed's bash dispatcher
//! (`tests/fixtures/reference-dispatcher.sh`, a verbatim copy of
//! `../shared/bench/reference-dispatcher.sh`) and hookrun-vzdump, side by side in one
//! directory with one `hooks.d`, called by the same simulated vzdump with the same
//! cleared environment (`LC_ALL=C`, as vzdump sets it), must run the same hooks in the
//! same order with the same argv.
//!
//! The hooks use only what the seed understands — `# mode: sync` and `# phases:` in the
//! seed's exact spelling — and avoid `# mk-job` (the seed wraps such hooks in Checkmk's
//! `mk-job` command) and `*` (the seed would glob it).

use std::path::{Path, PathBuf};

use hookrun_tests::vzdump::{BackupMode, Guest, Job, Storage, Task, Vzdump};
use hookrun_tests::{Run, TestEnv, shell_quote, write_file};

/// The seed's dispatcher as committed in `tests/fixtures`.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/reference-dispatcher.sh")
}

/// Writes a seed-style hook that appends `$0 $*` to `<root>/hook.log`.
fn seed_hook(env: &TestEnv, name: &str, phases: Option<&str>, mode: u32) {
    let log = shell_quote(&env.path("hook.log").to_string_lossy());
    let phases = phases
        .map(|p| format!("# phases: {p}\n"))
        .unwrap_or_default();
    env.write_hook(
        name,
        format!(
            "#!/bin/bash\n# mode: sync\n{phases}# what this hook does\necho \"$0 $*\" >> {log}\n"
        ),
        mode,
    );
}

/// Runs the same sequence of vzdump calls against `script`; returns the hook log.
fn run_sequence(env: &TestEnv, script: PathBuf) -> String {
    let vz = Vzdump::with_script(env, script.clone());
    let storage = Storage::Dir {
        storeid: "local".into(),
        dumpdir: PathBuf::from("/var/lib/vz/dump"),
    };
    for mode in [BackupMode::Snapshot, BackupMode::Suspend, BackupMode::Stop] {
        let job = Job::new(
            mode,
            storage.clone(),
            vec![
                Guest::qemu(101).named("web"),
                Guest::lxc(102),
                Guest::qemu(103).stopped(),
            ],
        );
        let report = vz.run_job(&job);
        for c in &report.calls {
            c.outcome
                .check(!c.failed(), &format!("{} failed", script.display()));
        }
        if script.ends_with("hookrun-vzdump") {
            // hookrun reports the non-executable hook where it would have run.
            report
                .call("job-start", None)
                .outcome
                .assert_stderr_line(&["30-noexec", "not executable"]);
        }
    }
    // A phase vzdump does not have (yet), job-abort, and no phase at all.
    let job = Job::new(BackupMode::Snapshot, storage.clone(), vec![Guest::lxc(104)]);
    let task = Task::new(&job, &job.guests[0], 0);
    vz.run_hook_script(&storage, "backup-verify", Some(&task))
        .outcome
        .assert_success();
    vz.run_hook_script(&storage, "job-abort", None)
        .outcome
        .assert_success();
    Run::new(&script)
        .envs(vz.environment(&storage, "job-start", None))
        .run()
        .assert_success();

    let log = env.path("hook.log");
    let text = std::fs::read_to_string(&log).expect("the hooks ran");
    std::fs::remove_file(&log).expect("reset the hook log");
    text
}

#[test]
fn the_seed_and_hookrun_run_the_same_hooks_in_the_same_order_with_the_same_argv() {
    let env = TestEnv::new();
    let seed = env.entry_dir().join("reference-dispatcher.sh");
    write_file(
        &seed,
        std::fs::read(fixture()).expect("read the fixture"),
        0o755,
    );

    seed_hook(
        &env,
        "10-multi",
        Some("job-start backup-start log-end"),
        0o755,
    );
    seed_hook(&env, "20-end.sh", Some("backup-end"), 0o755);
    seed_hook(&env, "9-nine", Some("backup-start job-abort"), 0o755);
    // Byte order (C locale) puts upper case, then '_', then lower case; en_US would
    // interleave them.
    seed_hook(&env, "B-upper", Some("job-start job-end"), 0o755);
    seed_hook(
        &env,
        "a-lower",
        Some("job-start pre-stop pre-restart post-restart"),
        0o755,
    );
    seed_hook(&env, "_under", Some("log-end job-end"), 0o755);
    seed_hook(&env, "b-lower", Some("job-init"), 0o755);
    seed_hook(&env, "Z-future", Some("backup-verify"), 0o755);
    seed_hook(&env, "Y-never", Some("job-nothing"), 0o755);
    seed_hook(&env, "30-noexec", Some("job-start backup-start"), 0o644);
    seed_hook(&env, "40-nophases", None, 0o755);

    let by_seed = run_sequence(&env, seed);
    let by_hookrun = run_sequence(&env, env.entry_point());

    let hooks = env.hooks_dir();
    let line = |name: &str, args: &str| format!("{}/{name} {args}", hooks.display());
    // Spot checks, so that two equally wrong logs cannot pass.
    let seed_lines: Vec<&str> = by_seed.lines().collect();
    assert_eq!(
        seed_lines[..4],
        [
            line("b-lower", "job-init"),
            line("10-multi", "job-start"),
            line("B-upper", "job-start"),
            line("a-lower", "job-start"),
        ]
    );
    assert!(seed_lines.contains(&line("Z-future", "backup-verify snapshot 104").as_str()));
    assert!(
        !by_seed.contains("30-noexec")
            && !by_seed.contains("40-nophases")
            && !by_seed.contains("Y-never")
    );
    assert_eq!(seed_lines.len(), 83, "{by_seed}");

    assert_eq!(
        by_hookrun, by_seed,
        "hookrun-vzdump (left) and the seed (right) differ"
    );
}
