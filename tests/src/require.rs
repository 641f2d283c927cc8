//! Test tiers: what a test needs beyond a toolchain (root, CAP_SYS_ADMIN, a program, a
//! Debian package), checked at the top of the test.
//!
//! ```text
//! if !require::root() || !require::command("/usr/bin/restic") { return; }
//! ```
//!
//! A missing prerequisite under plain `cargo test` skips the test **visibly**: one line
//! `SKIPPED <module::test>: needs <what> (<how to get it>)` written straight to the
//! process's stderr (libtest captures only `eprintln!`, so the line shows without
//! `--nocapture`), and the check returns `false`. Under `cargo xtask test`, which sets
//! [`REQUIRE_ALL`] and installs the test packages first, the same message is a panic: CI
//! runs every tier, and a prerequisite that went missing fails instead of passing quietly.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Set (to anything but empty or `0`) by `cargo xtask test`: a missing prerequisite fails.
pub const REQUIRE_ALL: &str = "HOOKRUN_TEST_REQUIRE_ALL";

/// The running test's name (`module::test`): libtest names each test's thread after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports a missing prerequisite: a visible skip, or a panic under [`REQUIRE_ALL`].
/// Always `false`, so that a check reads `if !require::x() { return; }`.
pub fn missing(what: &str, how: &str) -> bool {
    let line = format!("SKIPPED {}: needs {what} ({how})", test_name());
    if require_all() {
        panic!("{line} [{REQUIRE_ALL} is set: under cargo xtask test nothing may be skipped]");
    }
    // Straight to fd 2, past libtest's capture; a failed write has nowhere else to go.
    let _ = writeln!(std::io::stderr(), "{line}");
    false
}

/// The test runs as root (owner checks of other users, chroot, mounts, `# user:`).
pub fn root() -> bool {
    nix::unistd::geteuid().is_root()
        || missing("root", "run the tests as root, e.g. sudo cargo xtask test")
}

/// Whether CAP_SYS_ADMIN is in the effective set (`CapEff` of /proc/self/status, bit 21).
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// The test may create mount namespaces and mount in them (unshare --mount, bind mounts).
pub fn cap_sys_admin() -> bool {
    root()
        && (has_cap_sys_admin()
            || missing(
                "CAP_SYS_ADMIN",
                "run as root outside a container that drops it, e.g. cargo xtask test on the host or a --privileged container",
            ))
}

fn found(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// A program, by absolute path or looked up in `PATH`.
pub fn command(program: &str) -> bool {
    found(program)
        || missing(
            program,
            "install the Debian package that ships it; cargo xtask test installs every test package",
        )
}

/// A program that a known Debian package ships.
pub fn command_from(program: &str, package: &str) -> bool {
    found(program)
        || missing(
            program,
            &format!("apt-get install {package}, or cargo xtask test, which installs it"),
        )
}

/// Whether dpkg records `package` as installed (`None`: there is no dpkg here).
fn dpkg_installed(package: &str) -> Option<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .env("PATH", crate::DEFAULT_PATH)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(out.status.success() && out.stdout == b"installed")
}

/// Debian packages, all installed.
pub fn packages(names: &[&str]) -> bool {
    let absent: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| dpkg_installed(p) != Some(true))
        .collect();
    absent.is_empty()
        || missing(
            &format!("the Debian package(s) {}", absent.join(" ")),
            &format!(
                "apt-get install --no-install-recommends {}, or cargo xtask test, which installs them",
                absent.join(" ")
            ),
        )
}

/// One Debian package.
pub fn package(name: &str) -> bool {
    packages(&[name])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set only in the child that [`the_switch_skips_visibly_or_fails`] starts.
    const PROBE: &str = "HOOKRUN_TEST_REQUIRE_PROBE";

    /// Does nothing in a normal run; in the probe child it checks a program that does
    /// not exist and says whether the check returned.
    #[test]
    fn probe() {
        if std::env::var_os(PROBE).is_none() {
            return;
        }
        let present = command("no-such-cmd-xyz");
        let _ = writeln!(std::io::stderr(), "PROBE RETURNED {present}");
    }

    fn run_probe(require_all: bool) -> (bool, String) {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "require::tests::probe", "--test-threads=1"])
            .env(PROBE, "1")
            .env_remove(REQUIRE_ALL)
            .stdin(Stdio::null());
        if require_all {
            cmd.env(REQUIRE_ALL, "1");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Without the switch a missing program is a visible skip (the line is on stderr
    /// although the probe passes and its output is captured); with it, a failure.
    #[test]
    fn the_switch_skips_visibly_or_fails() {
        let line = "SKIPPED require::tests::probe: needs no-such-cmd-xyz (";
        let (ok, text) = run_probe(false);
        assert!(
            ok,
            "the probe must pass (skip) without {REQUIRE_ALL}:\n{text}"
        );
        assert!(text.contains(line), "no visible SKIPPED line:\n{text}");
        assert!(text.contains("PROBE RETURNED false"), "{text}");

        let (ok, text) = run_probe(true);
        assert!(!ok, "the probe must fail with {REQUIRE_ALL}=1:\n{text}");
        assert!(
            text.contains(line),
            "the failure must carry the same message:\n{text}"
        );
        assert!(
            !text.contains("PROBE RETURNED"),
            "the check returned:\n{text}"
        );
    }

    #[test]
    fn present_prerequisites_pass() {
        assert!(command("sh"));
        assert!(command("/bin/sh"));
        assert!(command_from("/bin/sh", "dash"));
    }
}
