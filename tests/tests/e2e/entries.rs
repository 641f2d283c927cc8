//! The internal entry points (the async supervisor, the guard) cannot be reached from a
//! platform's argv (issue 13): libvirt's first argument is a domain name that anyone
//! with access to libvirt chooses, vzdump's the phase. Checked with assert_cmd: exit
//! status, stdout and stderr together.

use assert_cmd::Command;
use predicates::prelude::*;

use hookrun_tests::{TestEnv, bin};

/// A platform passing the supervisor's or the guard's flag as its first argument gets
/// its normal dispatch: hooks run, with the flag as the object or phase.
#[test]
fn a_platform_cannot_start_a_supervisor_or_a_guard_through_argv() {
    let env = TestEnv::new();
    let seen = env.path("seen");
    env.hook("10-record")
        .sync()
        .phases("*")
        .body(&format!(
            "echo \"$HOOKRUN_PHASE $*\" | tee -a {}",
            hookrun_tests::shell_quote(&seen.to_string_lossy())
        ))
        .write();
    for flag in ["--hookrun-async-supervisor", "--hookrun-guard"] {
        Command::new(env.entry_point())
            .env_clear()
            .env("HOOKRUN_CONFIG", env.config_path())
            .arg(flag)
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!("[10-record] {flag}")))
            .stderr(predicate::str::contains("10-record: ok"));
        // The guard's form, with a pid, is a phase and its argument too.
        Command::new(env.entry_point())
            .env_clear()
            .env("HOOKRUN_CONFIG", env.config_path())
            .args([flag, "1"])
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!(
                "[10-record] {flag} {flag} 1"
            )));
    }
    let text = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
}

/// `--help` and `--version` of every binary: exit 0, text on stdout, nothing on stderr.
#[test]
fn every_binary_answers_help_and_version() {
    for name in [
        "hookrun",
        "hookrun-vzdump",
        "hookrun-pve-guest",
        "hookrun-libvirt",
        "hookrun-worker",
    ] {
        Command::new(bin(name))
            .arg("--version")
            .assert()
            .success()
            .stdout(
                predicate::str::contains(env!("CARGO_PKG_VERSION"))
                    .or(predicate::str::is_match(r"\d+\.\d+\.\d+").unwrap()),
            )
            .stderr(predicate::str::is_empty());
        Command::new(bin(name))
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage").or(predicate::str::contains("usage")))
            .stderr(predicate::str::is_empty());
    }
}
