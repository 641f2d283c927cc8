//! `cargo xtask`: the project's automation, written in Rust so that it needs nothing but a
//! toolchain (see <https://github.com/matklad/cargo-xtask/>).
//!
//! The alias in `.cargo/config.toml` runs this binary; `cargo xtask --help` lists the
//! tasks. Arguments are parsed with clap (derive), which xtask links anyway for the man
//! pages.

// xtask is a terminal program: printing progress and help is its whole interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod bench;
mod fuzz;
mod man;
mod package;
mod packages;
mod static_build;

/// The project's automation: `cargo xtask <TASK>`.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "Extra arguments after `test` go to `cargo test --workspace`, e.g. a test name filter:\n  cargo xtask test header -- --nocapture"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// fmt check, clippy (-D warnings), build all binaries, cargo test --workspace, then
    /// package --check
    Test {
        /// Passed on to `cargo test --workspace` (a filter, `-- --nocapture`, ...)
        #[arg(
            value_name = "CARGO-TEST-ARGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        args: Vec<OsString>,
    },
    /// Release build, one .deb per package in target/debian/, and the static tarball in
    /// target/dist/
    Package(package::Args),
    /// Write the man pages (docs/man/) and shell completions (completions/) from the clap
    /// definitions
    Man,
    /// Dispatch overhead against its floors and the seed; writes target/bench/latest.json
    Bench {
        /// Fewer rounds, for a quick look
        #[arg(long)]
        quick: bool,
    },
    /// Each cargo-fuzz target for N s (needs cargo-fuzz); fails on a crash
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(keep_test_separator(std::env::args_os().collect()));
    let result = match cli.task {
        Task::Test { args } => test(&args),
        Task::Package(args) => package::main(&project_root(), &target_dir(), &args),
        Task::Man => man::run(&project_root()),
        Task::Bench { quick } => bench::run(&project_root(), &target_dir(), quick),
        Task::Fuzz(args) => fuzz::run(&project_root(), &target_dir(), &args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// The arguments, with a `--` right after `test` kept for cargo test: clap takes a `--`
/// before the first value as its own end of options (later ones it keeps), and
/// `cargo xtask test -- --nocapture` would reach cargo as `cargo test --nocapture`.
fn keep_test_separator(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|t| t == "test") && args.get(2).is_some_and(|a| a == "--") {
        args.insert(2, "--".into());
    }
    args
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo puts its output: `CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => project_root().join(d),
        None => project_root().join("target"),
    }
}

/// The cargo that runs us (`$CARGO`), so every step uses the same toolchain.
fn cargo() -> OsString {
    std::env::var_os("CARGO")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cargo".into())
}

/// One step of a task: a cargo invocation with a name and a hint for when it fails.
struct Step {
    name: &'static str,
    args: Vec<OsString>,
    hint: &'static str,
}

impl Step {
    fn new(name: &'static str, args: &[&str], hint: &'static str) -> Step {
        Step {
            name,
            args: args.iter().map(OsString::from).collect(),
            hint,
        }
    }

    fn shown(&self) -> String {
        let mut s = String::from("cargo");
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

fn test(extra: &[OsString]) -> anyhow::Result<ExitCode> {
    let root = project_root();
    ensure_components(&root)?;
    packages::ensure()?;

    let mut cargo_test = Step::new(
        "test",
        &["test", "--workspace"],
        "a test failed; its output is above (rerun one crate's tests with: cargo test -p <crate> <filter>)",
    );
    cargo_test.args.extend(extra.iter().cloned());
    let steps = [
        Step::new(
            "fmt",
            &["fmt", "--all", "--", "--check"],
            "the code is not formatted; run `cargo fmt --all` and commit the result",
        ),
        Step::new(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            "clippy found warnings; fix them (the workspace lints are in Cargo.toml)",
        ),
        Step::new(
            "build",
            &["build", "--workspace", "--bins"],
            "the binaries do not build; see the compiler errors above",
        ),
        cargo_test,
    ];

    let started = Instant::now();
    let total = steps.len() + 1; // the packaging check below
    for (i, step) in steps.iter().enumerate() {
        eprintln!(
            "\n==> xtask test [{}/{total}] {}: {}",
            i + 1,
            step.name,
            step.shown()
        );
        let step_started = Instant::now();
        let status = Command::new(cargo())
            .args(&step.args)
            // Every tier runs here: a test whose prerequisite is missing fails instead of
            // skipping (tests/src/require.rs); packages::ensure installed them above.
            .env("HOOKRUN_TEST_REQUIRE_ALL", "1")
            .current_dir(&root)
            .status()
            .with_context(|| format!("step '{}': cannot run {}", step.name, step.shown()))?;
        if !status.success() {
            let how = match status.code() {
                Some(c) => format!("exited with {c}"),
                None => "was killed by a signal".to_owned(),
            };
            eprintln!(
                "\nxtask test: FAILED at step {}/{total} '{}': `{}` {how} after {}\nxtask test: {}",
                i + 1,
                step.name,
                step.shown(),
                elapsed(step_started.elapsed()),
                step.hint
            );
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .filter(|&c| c != 0)
                .unwrap_or(1);
            return Ok(ExitCode::from(code));
        }
    }
    // The .deb packages: built, lintian-clean, reproducible, installed/upgraded/purged.
    eprintln!("\n==> xtask test [{total}/{total}] package: cargo xtask package --check");
    let step_started = Instant::now();
    if let Err(e) = package::check(&root, &target_dir()) {
        eprintln!(
            "\nxtask test: FAILED at step {total}/{total} 'package' after {}: {e:#}\nxtask test: fix the packaging (xtask/src/package/, pkg/); rerun only this step with: cargo xtask package --check",
            elapsed(step_started.elapsed())
        );
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "\nxtask test: all {total} steps passed in {}",
        elapsed(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// `cargo fmt` and `cargo clippy` are rustup components that a minimal toolchain lacks;
/// add them when either is missing.
fn ensure_components(root: &Path) -> anyhow::Result<()> {
    let works = |sub: &str| {
        Command::new(cargo())
            .args([sub, "--version"])
            .current_dir(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("fmt") && works("clippy") {
        return Ok(());
    }
    eprintln!("==> xtask: rustfmt or clippy is missing: rustup component add rustfmt clippy");
    let status = Command::new("rustup")
        .args(["component", "add", "rustfmt", "clippy"])
        .current_dir(root)
        .status()
        .context(
            "rustfmt or clippy is missing and rustup cannot be run; install the rustfmt and clippy components of your Rust toolchain",
        )?;
    anyhow::ensure!(
        status.success(),
        "`rustup component add rustfmt clippy` failed ({status})"
    );
    anyhow::ensure!(
        works("fmt") && works("clippy"),
        "`cargo fmt --version` or `cargo clippy --version` still fails after `rustup component add rustfmt clippy`"
    );
    Ok(())
}

/// `12.3s` or `4m05s`.
fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        let args = std::iter::once("xtask").chain(args.iter().copied());
        Cli::try_parse_from(keep_test_separator(args.map(OsString::from).collect())).map(|c| c.task)
    }

    fn test_args(args: &[&str]) -> Vec<String> {
        match parse(args).unwrap() {
            Task::Test { args } => args.into_iter().map(|a| a.into_string().unwrap()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_passes_everything_on_to_cargo_test() {
        assert!(test_args(&["test"]).is_empty());
        assert_eq!(
            test_args(&["test", "header", "--", "--nocapture"]),
            ["header", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["test", "-p", "hookrun-core"]),
            ["-p", "hookrun-core"]
        );
    }

    #[test]
    fn tasks_and_their_flags() {
        assert!(matches!(
            parse(&["bench", "--quick"]),
            Ok(Task::Bench { quick: true })
        ));
        assert!(matches!(
            parse(&["bench"]),
            Ok(Task::Bench { quick: false })
        ));
        assert!(matches!(parse(&["man"]), Ok(Task::Man)));
        assert!(parse(&["man", "x"]).is_err());
        assert!(parse(&["bench", "--slow"]).is_err());
        assert!(matches!(
            parse(&["package", "--check"]),
            Ok(Task::Package(_))
        ));
        assert!(parse(&["package", "--revision", "x"]).is_err());
        assert!(parse(&["nope"]).is_err());
        assert!(parse(&[]).is_err());
        // A usage error exits 2, as before clap.
        assert_eq!(parse(&["nope"]).unwrap_err().exit_code(), 2);
    }
}
