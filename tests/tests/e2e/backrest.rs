//! Backrest by its execution model (there is no Backrest binary here): the README's
//! Backrest scripts, read from README.md, are rendered as Backrest's Go templates render
//! them (`{{ .ShellEscape … }}` with values full of quotes, `$`, backquotes, newlines and
//! non-ASCII), piped into the interpreter's stdin (`sh` by default, or the argv of the
//! `#!` line: `/bin/sh`, `/bin/bash`) with stdout and stderr merged, and the exit status
//! is judged by each error behaviour as Backrest judges it. Also: `hookrun run --env`
//! byte for byte and its refusals, `--abort-code`, and that no hook ever reads the rest
//! of the script Backrest is still piping into the interpreter.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookrun_tests::{Run, TestEnv, bin, shell_quote, wait_for_lines};

use crate::borgmatic::readme_blocks;

/// What the hooks of these tests are given: Backrest's template values.
struct Vars<'a> {
    plan: &'a str,
    repo: &'a str,
    task: &'a str,
    snapshot: &'a str,
    error: &'a str,
}

impl Vars<'_> {
    fn get(&self, path: &str) -> &str {
        match path {
            ".Plan.Id" => self.plan,
            ".Repo.Id" => self.repo,
            ".Task" => self.task,
            ".SnapshotId" => self.snapshot,
            ".Error" => self.error,
            other => panic!("the test has no value for the template field {other}"),
        }
    }
}

/// Values that break any naive quoting; the error also tries command substitution on a
/// canary file in the tree.
fn nasty_vars(canary: &Path) -> (String, String, String) {
    let c = canary.to_string_lossy();
    (
        "nightly \"home\" $HOME ünï".to_owned(),
        "b2 it's 100% `id`".to_owned(),
        format!(
            "restic: exit status 1\nFatal: \"$(touch {c})\" it's `touch {c}` ${{IFS}} ünïcødé ✓\n\ttrailing newline\n"
        ),
    )
}

/// `shellescape.Quote` (al.essio.dev/pkg/shellescape), which Backrest's
/// `.ShellEscape` calls: unchanged when every character is in `[\w@%+=:,./-]` (ASCII
/// `\w`), `''` when empty, else single-quoted with `'` as `'"'"'`.
fn shell_escape(s: &str) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

/// Renders the `{{ .ShellEscape FIELD }}` actions of a README script (the only action the
/// recipes use; anything else fails the test rather than being left in the script).
fn render(template: &str, vars: &Vars<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed {{{{ in {template:?}"))
            + start;
        let action = rest[start + 2..end].trim();
        let field = action
            .strip_prefix(".ShellEscape ")
            .unwrap_or_else(|| panic!("template action {action:?} is not .ShellEscape"));
        out.push_str(&shell_escape(vars.get(field.trim())));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The README's two Backrest scripts: `(snapshot-start, snapshot-end)`.
fn readme_scripts() -> (String, String) {
    let blocks = readme_blocks("#### Backrest", "sh");
    assert_eq!(
        blocks.len(),
        2,
        "the README's Backrest section should have the two scripts"
    );
    assert!(blocks[0].contains("--phase snapshot-start") && blocks[1].contains("snapshot-end"));
    (blocks[0].clone(), blocks[1].clone())
}

/// The script with its `#!` line replaced (`Some`) or removed (`None`: Backrest's
/// default `sh`).
fn with_interpreter(script: &str, line: Option<&str>) -> String {
    let body = script
        .strip_prefix("#!")
        .and_then(|s| s.split_once('\n'))
        .map_or(script, |(_, b)| b);
    match line {
        Some(l) => format!("{l}\n{body}"),
        None => body.to_owned(),
    }
}

/// The interpreters the scripts are tried with, as `#!` lines.
const INTERPRETERS: &[Option<&str>] = &[Some("#!/bin/sh"), Some("#!/bin/bash"), None];

/// What Backrest's command hook does with a rendered script: the interpreter is the
/// argv of the `#!` line (split on whitespace, like shlex for these lines) or `sh`; the
/// script text is written to its stdin; stdout and stderr go to one pipe (the operation
/// log). Returns the exit code and the merged output.
fn backrest_exec(env: &TestEnv, script: &str) -> (i32, String) {
    let argv: Vec<String> = match script.lines().next().and_then(|l| l.strip_prefix("#!")) {
        Some(line) => line.split_whitespace().map(str::to_owned).collect(),
        None => vec!["sh".to_owned()],
    };
    let (k, v) = env.config_var();
    let hookrun_dir = bin("hookrun");
    let hookrun_dir = hookrun_dir.parent().expect("hookrun's directory");
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let write_err = write_end.try_clone().expect("dup the log pipe");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", hookrun_dir.display()),
        )
        .env(k, v)
        .env("HOOKRUN_HOOKS_DIR", env.hooks_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_err));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    drop(cmd);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let text = script.as_bytes().to_vec();
    // Backrest writes the script from a goroutine; an interpreter that exits early
    // makes that write fail with EPIPE, which Backrest ignores too.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&text);
    });
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let _ = std::fs::File::from(read_end).read_to_end(&mut log);
        log
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waitpid") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{argv:?} with the script did not exit within 60 s:\n{script}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let log = reader.join().expect("log reader");
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{argv:?} died by a signal: {status}"));
    (code, String::from_utf8_lossy(&log).into_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Cancel,
    Fatal,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conclusion {
    /// The operation goes on.
    Proceeds,
    /// `TaskCancelledError`: the backup is cancelled, later hooks skipped.
    Cancelled,
    /// The operation fails; error hooks fire.
    Failed,
}

/// Backrest's judgement of a command hook's exit status (`internal/hook`): only zero or
/// not, then the hook's error behaviour.
fn backrest_concludes(behaviour: Behaviour, code: i32) -> Conclusion {
    match (code, behaviour) {
        (0, _) | (_, Behaviour::Ignore) => Conclusion::Proceeds,
        (_, Behaviour::Cancel) => Conclusion::Cancelled,
        (_, Behaviour::Fatal) => Conclusion::Failed,
    }
}

/// A hook that writes each Backrest variable and the object, byte for byte, to
/// `<root>/got-<NAME>`, and prints a line.
fn capture_hook(env: &TestEnv, name: &str, phases: &str) {
    let mut body = String::new();
    for var in [
        "HOOKRUN_OBJECT",
        "BACKREST_REPO",
        "BACKREST_TASK",
        "BACKREST_SNAPSHOT_ID",
        "BACKREST_ERROR",
    ] {
        body.push_str(&format!(
            "printf '%s' \"${{{var}-unset}}\" > {}\n",
            shell_quote(&env.path(&format!("got-{var}")).to_string_lossy())
        ));
    }
    body.push_str("echo \"captured $HOOKRUN_PHASE\"\n");
    env.hook(name).sync().phases(phases).body(&body).write();
}

fn got(env: &TestEnv, var: &str) -> Vec<u8> {
    std::fs::read(env.path(&format!("got-{var}")))
        .unwrap_or_else(|e| panic!("the hook did not write got-{var}: {e}"))
}

#[test]
fn rendered_scripts_hand_backrests_values_to_hooks_byte_for_byte() {
    let env = TestEnv::new();
    let canary = env.path("pwned");
    let (plan, repo, error) = nasty_vars(&canary);
    let task = "backup for plan \"nightly\"";
    capture_hook(&env, "10-capture", "snapshot-start snapshot-end");
    let (start, end) = readme_scripts();
    for interpreter in INTERPRETERS {
        for (template, snapshot, err) in [(&start, "", ""), (&end, "4f3a9c1e", error.as_str())] {
            let vars = Vars {
                plan: &plan,
                repo: &repo,
                task,
                snapshot,
                error: err,
            };
            let script = with_interpreter(&render(template, &vars), *interpreter);
            let (code, log) = backrest_exec(&env, &script);
            assert_eq!(code, 0, "{interpreter:?}: {script}\n{log}");
            let phase = if template == &start {
                "snapshot-start"
            } else {
                "snapshot-end"
            };
            assert!(
                log.contains(&format!("[10-capture] captured {phase}\n")),
                "{interpreter:?}: the hook's output is not in Backrest's log:\n{log}"
            );
            assert_eq!(got(&env, "HOOKRUN_OBJECT"), plan.as_bytes());
            assert_eq!(got(&env, "BACKREST_REPO"), repo.as_bytes());
            if phase == "snapshot-start" {
                assert_eq!(got(&env, "BACKREST_TASK"), task.as_bytes());
                assert_eq!(got(&env, "BACKREST_ERROR"), b"unset");
            } else {
                assert_eq!(got(&env, "BACKREST_SNAPSHOT_ID"), snapshot.as_bytes());
                assert_eq!(
                    got(&env, "BACKREST_ERROR"),
                    error.as_bytes(),
                    "{interpreter:?}: {script}"
                );
            }
            assert!(
                !canary.exists(),
                "a template value was run as shell code: {script}"
            );
        }
    }
    let records = env.records();
    assert_eq!(records.len(), 2 * INTERPRETERS.len());
    for r in &records {
        r.assert_well_formed();
        assert_eq!(r.str("platform"), Some("backrest"));
        assert_eq!(r.str("object"), Some(plan.as_str()));
        assert_eq!(r.outcome(), "ok");
    }
}

#[test]
fn backrests_error_behaviours_conclude_from_hookruns_exit_code() {
    let env = TestEnv::new();
    let (start, _) = readme_scripts();
    let vars = Vars {
        plan: "nightly",
        repo: "b2",
        task: "backup",
        snapshot: "",
        error: "",
    };
    let script = render(&start, &vars);
    let later = env.path("later-ran");
    let set = |on_error: &str, code: i32| {
        env.write_hook(
            "10-gate",
            format!(
                "#!/bin/sh\n# mode: sync\n# phases: snapshot-start\n# on-error: {on_error}\necho gate\nexit {code}\n"
            ),
            0o755,
        );
    };
    env.hook("20-later")
        .sync()
        .phases("snapshot-start")
        .body(&format!("touch {}", shell_quote(&later.to_string_lossy())))
        .write();
    use Behaviour::{Cancel, Fatal, Ignore};
    use Conclusion::{Cancelled, Failed, Proceeds};
    // (hook's on-error, hook's exit, Backrest behaviour, Backrest's conclusion, later hook runs)
    let cases = [
        ("abort", 3, Cancel, Cancelled, false),
        ("abort", 3, Fatal, Failed, false),
        ("abort", 3, Ignore, Proceeds, false),
        ("fail", 7, Cancel, Cancelled, true),
        ("fail", 7, Fatal, Failed, true),
        ("warn", 9, Cancel, Proceeds, true),
        ("warn", 0, Fatal, Proceeds, true),
    ];
    for (on_error, exit, behaviour, want, later_runs) in cases {
        set(on_error, exit);
        let _ = std::fs::remove_file(&later);
        let (code, log) = backrest_exec(&env, &script);
        let expected_code = if on_error == "warn" { 0 } else { exit };
        assert_eq!(code, expected_code, "{on_error} exit {exit}:\n{log}");
        assert_eq!(
            backrest_concludes(behaviour, code),
            want,
            "{on_error} exit {exit} under {behaviour:?}:\n{log}"
        );
        assert_eq!(later.exists(), later_runs, "{on_error}: {log}");
        assert!(log.contains("[10-gate] gate\n"), "{log}");
    }
}

/// Lines of padding: more than any shell reads ahead from a pipe, so what follows can
/// only run if nothing else read the script from the interpreter's stdin.
fn padding() -> String {
    ": padding line for the stdin test ................................................\n"
        .repeat(4096)
}

#[test]
fn hooks_never_read_the_rest_of_the_script_from_stdin() {
    let env = TestEnv::new();
    let sync_got = env.path("sync-stdin");
    let async_got = env.path("async-stdin");
    env.hook("10-reads-stdin")
        .sync()
        .phases("snapshot-start")
        .body(&format!(
            "cat > {}",
            shell_quote(&sync_got.to_string_lossy())
        ))
        .write();
    env.hook("20-async-reads-stdin")
        .header("mode: async")
        .phases("snapshot-start")
        .body(&format!(
            "cat > {0}.part && mv {0}.part {0} && echo done >> {0}.done",
            shell_quote(&async_got.to_string_lossy())
        ))
        .write();
    let tail = "echo SCRIPT-CONTINUED\n";
    for interpreter in INTERPRETERS {
        // The README script without `exec`, so that the script goes on after hookrun.
        let (start, _) = readme_scripts();
        let vars = Vars {
            plan: "nightly",
            repo: "b2",
            task: "backup",
            snapshot: "",
            error: "",
        };
        let rendered = render(&start, &vars).replacen("exec hookrun", "hookrun", 1);
        let script = with_interpreter(&format!("{rendered}{}{tail}", padding()), *interpreter);
        let _ = std::fs::remove_file(env.path("async-stdin.done"));
        let (code, log) = backrest_exec(&env, &script);
        assert_eq!(code, 0, "{interpreter:?}: {log}");
        assert!(
            log.contains("SCRIPT-CONTINUED"),
            "{interpreter:?}: the script's last line did not run: something read it:\n{log}"
        );
        let sync = std::fs::read(&sync_got).expect("the sync hook ran");
        assert!(
            sync.is_empty(),
            "{interpreter:?}: the sync hook read {} bytes of the script",
            sync.len()
        );
        wait_for_lines(&env.path("async-stdin.done"), 1, Duration::from_secs(20));
        let asynchronous = std::fs::read(&async_got).expect("the async hook ran");
        assert!(
            asynchronous.is_empty(),
            "{interpreter:?}: the async hook read {} bytes of the script",
            asynchronous.len()
        );

        // The hazard is real: a plain command in the same place swallows the rest.
        let control = env.path("control-stdin");
        let swallowing = format!(
            "cat > {}\n{}{tail}",
            shell_quote(&control.to_string_lossy()),
            padding()
        );
        let (code, log) = backrest_exec(&env, &with_interpreter(&swallowing, *interpreter));
        assert_eq!(code, 0, "{log}");
        assert!(
            !log.contains("SCRIPT-CONTINUED")
                && std::fs::read(&control).is_ok_and(|c| !c.is_empty()),
            "{interpreter:?}: the control did not read the script from stdin, so the test above proves nothing:\n{log}"
        );
    }
}

/// `hookrun run` with the tree's config and hooks directory.
fn hookrun_run(env: &TestEnv) -> Run {
    let (k, v) = env.config_var();
    Run::new(bin("hookrun"))
        .env(k, v)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["run", "--platform", "backrest", "--phase", "snapshot-end"])
        .arg("--hooks-dir")
        .arg(env.hooks_dir())
}

#[test]
fn env_values_are_passed_byte_for_byte_and_bad_names_are_refused() {
    let env = TestEnv::new();
    let out_file = env.path("got");
    env.hook("10-env")
        .sync()
        .phases("snapshot-end")
        .body(&format!(
            "printf '%s|%s|%s' \"$A\" \"$B_2\" \"${{EMPTY-unset}}\" > {}",
            shell_quote(&out_file.to_string_lossy())
        ))
        .write();
    let raw: &[u8] = b"line1\nline2 'q' \"dq\" $x \xff\xfe =tail\n";
    let mut a = b"A=".to_vec();
    a.extend_from_slice(raw);
    hookrun_run(&env)
        .arg("--env")
        .arg(OsStr::from_bytes(&a))
        .args(["-e", "B_2=x=y", "--env", "EMPTY="])
        .run()
        .assert_success();
    let mut want = raw.to_vec();
    want.extend_from_slice(b"|x=y|");
    assert_eq!(std::fs::read(&out_file).expect("the hook ran"), want);

    for (bad, says) in [
        ("1X=v", "is not a valid variable name"),
        ("BAD-NAME=v", "is not a valid variable name"),
        ("NOVALUE", "expected NAME=VALUE"),
        ("HOOKRUN_PHASE=x", "set by hookrun itself"),
    ] {
        let _ = std::fs::remove_file(&out_file);
        hookrun_run(&env)
            .args(["--env", "OK=1", "--env", bad])
            .run()
            .assert_code(2)
            .assert_stderr_line(&["--env", bad, says]);
        assert!(!out_file.exists(), "a hook ran despite --env {bad}");
    }
}

#[test]
fn abort_code_replaces_only_an_aborting_hooks_code() {
    let env = TestEnv::new();
    let hook = |name: &str, on_error: &str, code: i32| {
        env.write_hook(
            name,
            format!(
                "#!/bin/sh\n# mode: sync\n# phases: snapshot-end\n# on-error: {on_error}\nexit {code}\n"
            ),
            0o755,
        );
    };
    hook("20-abort", "abort", 4);
    let run = || hookrun_run(&env).args(["--abort-code", "75"]).run();
    run().assert_code(75);
    hookrun_run(&env).run().assert_code(4);
    // An earlier `fail` hook's error is not turned into the abort code.
    hook("10-fail", "fail", 6);
    run().assert_code(6);
    // A warning does not count; the abort does.
    hook("10-fail", "warn", 6);
    run().assert_code(75);
    // Nothing failed: 0.
    hook("20-abort", "abort", 0);
    run().assert_success();
    for bad in ["0", "126", "x"] {
        hookrun_run(&env)
            .args(["--abort-code", bad])
            .run()
            .assert_code(2)
            .assert_stderr_contains("--abort-code");
    }
}
