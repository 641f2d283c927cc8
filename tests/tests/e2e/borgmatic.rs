//! borgmatic for real: Debian's `borgmatic` (1.7) and `borg` back up a temporary
//! directory into a real local repository, with the hooks section of the README's
//! borgmatic recipe as the configuration, byte for byte (read from README.md here, so the
//! two cannot drift). Only the repository and source paths come from the command line
//! (`--override`). Proven: the hooks run in borgmatic's phases with its values; a failing
//! `before-backup` hook stops the backup (no archive; `on_error` runs); `--abort-code 75`
//! is borgmatic's soft failure while a plain failure is not; async hooks do not delay
//! borgmatic; a timed-out hook is killed with its whole process tree.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hookrun_tests::require;
use hookrun_tests::{
    Outcome, Run, TestEnv, bin, kill_all, mkdir, read_pids, shell_quote, wait_dead, wait_for_lines,
    workspace_root, write_file,
};

const BORGMATIC: &str = "/usr/bin/borgmatic";
const BORG: &str = "/usr/bin/borg";

/// The fenced code blocks of `lang` in the README section that starts with `heading`,
/// up to the next heading of the same or a higher level, with the indentation of a
/// block inside a list item removed.
pub(crate) fn readme_blocks(heading: &str, lang: &str) -> Vec<String> {
    let path = workspace_root().join("README.md");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut lines = text.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no line {heading:?}: the recipe the test uses is gone"
    );
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in lines {
        let trimmed = line.trim_start();
        if current.is_none() {
            let hashes = line.chars().take_while(|&c| c == '#').count();
            if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                break;
            }
            if trimmed == format!("```{lang}") {
                current = Some((line.len() - trimmed.len(), String::new()));
            }
            continue;
        }
        if trimmed == "```" {
            blocks.push(current.take().map(|(_, b)| b).unwrap_or_default());
            continue;
        }
        if let Some((indent, block)) = current.as_mut() {
            block.push_str(line.get(*indent..).unwrap_or(""));
            block.push('\n');
        }
    }
    assert!(
        !blocks.is_empty(),
        "README.md section {heading:?} has no ```{lang} block"
    );
    blocks
}

/// The README's main borgmatic hooks section.
fn readme_config() -> String {
    readme_blocks("#### borgmatic", "yaml").swap_remove(0)
}

/// The README's soft-failure variant.
fn readme_soft_fail_config() -> String {
    let blocks = readme_blocks("#### borgmatic", "yaml");
    assert!(
        blocks.len() >= 2,
        "the README's borgmatic section lost its soft-failure block"
    );
    blocks[1].clone()
}

/// A local borg repository, data to back up and a borgmatic configuration, all inside
/// the test tree. The repository's path has a space in it, so the README's quoting of
/// `{repository}` is exercised.
struct Borgmatic {
    source: PathBuf,
    repo: PathBuf,
    home: PathBuf,
    config: PathBuf,
}

impl Borgmatic {
    /// `None` (with the reason printed) when borgmatic or borg is not installed.
    fn new(env: &TestEnv, config_text: &str) -> Option<Borgmatic> {
        if !require::command_from(BORGMATIC, "borgmatic")
            || !require::command_from(BORG, "borgbackup")
        {
            return None;
        }
        let b = Borgmatic {
            source: env.path("data"),
            repo: env.path("borg repos/home"),
            home: env.path("home"),
            config: env.path("borgmatic.yaml"),
        };
        mkdir(&b.source, 0o755);
        mkdir(&b.home, 0o700);
        mkdir(b.repo.parent().expect("repo has a parent"), 0o700);
        write_file(&b.source.join("file"), "precious\n", 0o644);
        write_file(&b.config, config_text, 0o600);
        b.borg(&["init", "--encryption=none"])
            .arg(&b.repo)
            .run()
            .assert_success();
        Some(b)
    }

    /// The environment borgmatic runs with; its hooks inherit it.
    fn with_env(&self, env: &TestEnv, run: Run) -> Run {
        let bin_dir = bin("hookrun");
        let bin_dir = bin_dir.parent().expect("hookrun's directory");
        let (k, v) = env.config_var();
        run.env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        )
        .env("HOME", &self.home)
        .env("LANG", "C.UTF-8")
        .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
        .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
        .env(k, v)
        .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
    }

    fn borg(&self, args: &[&str]) -> Run {
        Run::new(BORG)
            .args(args)
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
    }

    /// `borgmatic create` with the config file and the paths of this tree.
    fn create(&self, env: &TestEnv) -> Outcome {
        let run = Run::new(BORGMATIC)
            .arg("--config")
            .arg(&self.config)
            .arg("--override")
            .arg(format!(
                "location.source_directories=[{}]",
                self.source.display()
            ))
            .arg(format!("location.repositories=[{}]", self.repo.display()))
            .args(["--syslog-verbosity", "-1", "--verbosity", "1", "create"]);
        self.with_env(env, run).run()
    }

    fn archives(&self) -> Vec<String> {
        let out = self.borg(&["list", "--short"]).arg(&self.repo).run();
        out.assert_success();
        out.stdout.lines().map(str::to_owned).collect()
    }

    fn repo_str(&self) -> String {
        self.repo.to_string_lossy().into_owned()
    }
}

/// A sync hook for `phases` that appends `phase|object|BORGMATIC_CONFIG|archives` to
/// `<root>/seen`, where `archives` is how many archives the repository holds right then
/// (read with borg itself, so the phase's place around `create` is proven).
fn seen_hook(env: &TestEnv, name: &str, phases: &str) {
    env.hook(name)
        .sync()
        .phases(phases)
        .body(&format!(
            "n=$(borg list --short \"$HOOKRUN_OBJECT\" | wc -l)\n\
             printf '%s|%s|%s|%s\\n' \"$HOOKRUN_PHASE\" \"$HOOKRUN_OBJECT\" \"$BORGMATIC_CONFIG\" \"$n\" >> {}",
            shell_quote(&env.path("seen").to_string_lossy())
        ))
        .write();
}

fn seen(env: &TestEnv) -> Vec<String> {
    match std::fs::read_to_string(env.path("seen")) {
        Ok(t) => t.lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_readme_hooks_run_in_borgmatics_phases_with_its_values() {
    let env = TestEnv::new();
    let Some(b) = Borgmatic::new(&env, &readme_config()) else {
        return;
    };
    seen_hook(&env, "10-seen", "before-backup after-backup on-error");
    let out = b.create(&env);
    out.assert_success();
    let repo = b.repo_str();
    let config = b.config.to_string_lossy();
    assert_eq!(
        seen(&env),
        [
            format!("before-backup|{repo}|{config}|0"),
            format!("after-backup|{repo}|{config}|1"),
        ],
        "{}",
        out.stderr
    );
    assert_eq!(b.archives().len(), 1);
    let records = env.records();
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        r.assert_well_formed();
        assert_eq!(r.str("platform"), Some("borgmatic"));
        assert_eq!(r.str("object"), Some(repo.as_str()));
        assert_eq!(r.outcome(), "ok");
        // The job name carries the whole path, '/' and ' ' replaced by '_'.
        let want = format!("borgmatic-10-seen-{}", repo.replace(['/', ' '], "_"));
        assert_eq!(r.str("job"), Some(want.as_str()));
    }
}

#[test]
fn a_failing_before_backup_hook_stops_the_backup_and_on_error_runs() {
    let env = TestEnv::new();
    let Some(b) = Borgmatic::new(&env, &readme_config()) else {
        return;
    };
    env.hook("10-check")
        .sync()
        .phases("before-backup")
        .header("on-error: abort")
        .body("echo 'backup disk not mounted' >&2\nexit 3")
        .write();
    env.hook("20-later")
        .sync()
        .phases("before-backup")
        .body(&format!(
            "touch {}",
            shell_quote(&env.path("later-ran").to_string_lossy())
        ))
        .write();
    seen_hook(&env, "30-seen", "after-backup on-error");
    let out = b.create(&env);
    out.assert_code(1)
        .assert_stderr_contains("backup disk not mounted")
        .assert_stderr_contains("Error running actions for repository");
    assert!(b.archives().is_empty(), "an archive was created anyway");
    assert!(
        !env.path("later-ran").exists(),
        "a hook after the aborting one ran"
    );
    let repo = b.repo_str();
    let config = b.config.to_string_lossy();
    // borgmatic's on_error hook ran (and after_backup did not).
    assert_eq!(seen(&env), [format!("on-error|{repo}|{config}|0")]);
    let outcomes: Vec<(String, String)> = env
        .records()
        .iter()
        .map(|r| (r.hook().to_owned(), r.outcome().to_owned()))
        .collect();
    assert!(
        outcomes.contains(&("10-check".into(), "failed".into()))
            && outcomes.contains(&("20-later".into(), "skipped".into())),
        "{outcomes:?}"
    );
}

#[test]
fn abort_code_75_is_borgmatics_soft_failure_and_a_plain_failure_is_not() {
    let env = TestEnv::new();
    let Some(b) = Borgmatic::new(&env, &readme_soft_fail_config()) else {
        return;
    };
    let check = |on_error: &str| {
        env.hook("10-drive")
            .sync()
            .phases("before-backup")
            .header(&format!("on-error: {on_error}"))
            .body("echo 'drive absent'\nexit 3")
            .write();
    };
    check("abort");
    let out = b.create(&env);
    out.assert_success()
        .assert_stdout_contains("soft failure exit code (75); skipping remaining actions")
        .assert_stderr_lacks("Error running actions");
    assert!(b.archives().is_empty(), "soft failure must skip the backup");

    // The same failure from an `on-error: fail` hook keeps its code: a real error.
    check("fail");
    b.create(&env).assert_code(1);
    assert!(b.archives().is_empty());

    // And with the hook succeeding, the backup goes ahead.
    env.write_hook(
        "10-drive",
        "#!/bin/sh\n# mode: sync\n# phases: before-backup\n# on-error: abort\nexit 0\n",
        0o755,
    );
    b.create(&env).assert_success();
    assert_eq!(b.archives().len(), 1);
}

#[test]
fn async_hooks_do_not_delay_borgmatic() {
    let env = TestEnv::new();
    let Some(b) = Borgmatic::new(&env, &readme_config()) else {
        return;
    };
    // Warm borg's caches, so the timing below is borgmatic's own.
    b.create(&env).assert_success();
    let done = env.path("async-done");
    env.hook("50-slow")
        .header("mode: async")
        .phases("after-backup")
        .body(&format!(
            "sleep 6\necho \"$HOOKRUN_OBJECT\" > {}",
            shell_quote(&done.to_string_lossy())
        ))
        .write();
    let start = Instant::now();
    let out = b.create(&env);
    let took = start.elapsed();
    out.assert_success();
    assert!(
        took < Duration::from_secs(5),
        "borgmatic waited for an async hook: {took:?}\n{}",
        out.stderr
    );
    assert!(!done.exists(), "the async hook finished before borgmatic");
    assert_eq!(b.archives().len(), 2);
    let lines = wait_for_lines(&done, 1, Duration::from_secs(30));
    assert_eq!(lines, [b.repo_str()]);
}

#[test]
fn a_timed_out_hook_is_killed_with_its_whole_tree() {
    let env = TestEnv::new();
    let Some(b) = Borgmatic::new(&env, &readme_config()) else {
        return;
    };
    let pids = env.path("pids");
    let q = shell_quote(&pids.to_string_lossy());
    env.hook("10-hangs")
        .sync()
        .phases("before-backup")
        .header("timeout: 2")
        .body(&format!(
            "echo $$ >> {q}\nsleep 300 &\necho $! >> {q}\n\
             sh -c 'sleep 300 & echo $! >> '{q}'; wait' &\necho $! >> {q}\nwait"
        ))
        .write();
    let start = Instant::now();
    let out = b.create(&env);
    let took = start.elapsed();
    let all = read_pids(&pids);
    let alive = wait_dead(&all, Duration::from_secs(3));
    kill_all(&alive);
    assert!(alive.is_empty(), "left alive after the timeout: {alive:?}");
    assert_eq!(all.len(), 4, "the hook did not start its tree: {all:?}");
    out.assert_code(1)
        .assert_stderr_contains("Error running actions for repository");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(b.archives().is_empty());
    let r = env
        .records()
        .into_iter()
        .find(|r| r.hook() == "10-hangs")
        .expect("a record of the timed-out hook");
    assert_eq!(r.outcome(), "timeout");
}
