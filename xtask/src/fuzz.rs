//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for a bounded time.
//!
//! ```text
//! cargo xtask fuzz                   every target, 30 s each
//! cargo xtask fuzz --seconds 300     longer
//! cargo xtask fuzz header config     some targets
//! cargo xtask fuzz --check           only build them (what a clean clone must manage)
//! ```
//!
//! Needs `cargo-fuzz` (`cargo install cargo-fuzz`). The targets are built with
//! `cargo fuzz build --sanitizer none`: libFuzzer's coverage instrumentation without
//! AddressSanitizer, which works on the stable toolchain (the code fuzzed is safe Rust, so
//! ASan would add little). If a cargo-fuzz version nonetheless asks for nightly-only
//! flags, the build is retried once with `RUSTC_BOOTSTRAP=1`, for the fuzz build only.
//!
//! Each target runs on its corpus (`fuzz/corpus/<target>`, kept between runs, not in
//! git) and its seeds (`fuzz/seeds/<target>`, in git). A crash, a timeout (one input over
//! 10 s) or running out of memory fails the task, naming the input libFuzzer saved in
//! `fuzz/artifacts/<target>/`: reproduce it with `cargo fuzz run -s none <target>
//! <file>`, fix it, turn it into a regression `#[test]` next to the code, and add the file
//! to the seeds. The figures (executions per target) are printed and written to
//! `target/fuzz/latest.json`. Not part of `cargo xtask test`: the seeds go through the
//! same checks there, as unit tests of the crates' `fuzzing` modules.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;

/// The targets, in the order they run, and what each one covers.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "header",
        "hook header parser and lint (header::parse, lint::lint_bytes)",
    ),
    (
        "dispatch",
        "the real dispatch path with arbitrary header values (fuzzing::dispatch)",
    ),
    ("config", "configuration file parser (Config::parse)"),
    (
        "libvirt",
        "libvirt argv and XML extraction (xml_facts, request)",
    ),
    (
        "retention",
        "retention companion-rule, size and age parsers (hookrun-contrib)",
    ),
];

/// `cargo xtask fuzz`'s options.
#[derive(Debug, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Seconds per target
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Only build the targets (what a clean clone must manage)
    #[arg(long = "check")]
    check_only: bool,
    /// Targets to run (default: all)
    #[arg(value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(TARGETS.iter().map(|(n, _)| *n)))]
    targets: Vec<String>,
}

impl Args {
    /// The targets asked for, or all of them.
    fn targets(&self) -> Vec<String> {
        if self.targets.is_empty() {
            TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect()
        } else {
            self.targets.clone()
        }
    }
}

/// One target's run, as reported.
#[derive(Debug, Default)]
struct Figures {
    executions: u64,
    corpus: usize,
    peak_rss_mb: u64,
    seconds: f64,
}

/// Reads libFuzzer's `-print_final_stats=1` lines.
fn final_stats(stderr: &str) -> Figures {
    let stat = |key: &str| {
        stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("stat::{key}:")))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .next_back()
            .unwrap_or(0)
    };
    Figures {
        executions: stat("number_of_executed_units"),
        peak_rss_mb: stat("peak_rss_mb"),
        ..Figures::default()
    }
}

pub fn run(root: &Path, target_dir: &Path, opts: &Args) -> anyhow::Result<ExitCode> {
    let targets = opts.targets();
    let fuzz_dir = root.join("fuzz");
    ensure_cargo_fuzz(&fuzz_dir)?;

    eprintln!(
        "==> xtask fuzz: building {} target(s) (cargo fuzz build --sanitizer none)",
        targets.len()
    );
    let bootstrap = build(&fuzz_dir, &targets)?;
    if opts.check_only {
        eprintln!("xtask fuzz: every target builds");
        return Ok(ExitCode::SUCCESS);
    }

    let mut report = Vec::new();
    let mut failed = Vec::new();
    for target in &targets {
        eprintln!("==> xtask fuzz: {target} for {}s", opts.seconds);
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let started = Instant::now();
        let mut cmd = Command::new(crate::cargo());
        cmd.args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&corpus)
            .arg(fuzz_dir.join("seeds").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", opts.seconds))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .current_dir(&fuzz_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if bootstrap {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        let out = cmd
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut figures = final_stats(&stderr);
        figures.seconds = started.elapsed().as_secs_f64();
        figures.corpus = std::fs::read_dir(&corpus).map_or(0, Iterator::count);
        if out.status.success() {
            eprintln!(
                "    {target}: {} executions in {:.0}s, corpus {} inputs, peak RSS {} MB",
                figures.executions, figures.seconds, figures.corpus, figures.peak_rss_mb
            );
        } else {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            let artifacts = list_artifacts(&fuzz_dir.join("artifacts").join(target));
            eprintln!(
                "\nxtask fuzz: {target} FAILED ({}) after {} executions; saved input(s): {}\n\
                 reproduce: (cd fuzz && cargo fuzz run -s none {target} <file>); fix it, add a \
                 regression #[test] next to the code, and copy the file into fuzz/seeds/{target}/",
                out.status,
                figures.executions,
                if artifacts.is_empty() {
                    "none".to_owned()
                } else {
                    artifacts.join(", ")
                }
            );
            failed.push(target.clone());
        }
        report.push((target.clone(), figures, out.status.success()));
    }

    write_report(target_dir, opts.seconds, &report)?;
    eprintln!("\nxtask fuzz: summary ({}s per target)", opts.seconds);
    for (t, f, ok) in &report {
        eprintln!(
            "  {t:<10} {:>12} executions  corpus {:>5}  {}",
            f.executions,
            f.corpus,
            if *ok { "ok" } else { "FAILED" }
        );
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask fuzz: failing targets: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_cargo_fuzz(fuzz_dir: &Path) -> anyhow::Result<()> {
    let works = Command::new(crate::cargo())
        .args(["fuzz", "--version"])
        .current_dir(fuzz_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    anyhow::ensure!(
        works,
        "cargo-fuzz is not installed; install it with: cargo install cargo-fuzz"
    );
    Ok(())
}

/// Builds the targets; returns whether `RUSTC_BOOTSTRAP=1` was needed.
fn build(fuzz_dir: &Path, targets: &[String]) -> anyhow::Result<bool> {
    let attempt = |bootstrap: bool, target: &str| -> anyhow::Result<(bool, String)> {
        let mut cmd = Command::new(crate::cargo());
        cmd.args(["fuzz", "build", "--sanitizer", "none", target])
            .current_dir(fuzz_dir)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        if bootstrap {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        let out = cmd.output().context("running cargo fuzz build")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let mut bootstrap = false;
    for target in targets {
        let (ok, stderr) = attempt(bootstrap, target)?;
        if ok {
            continue;
        }
        let wants_nightly = stderr.contains("-Z") || stderr.contains("nightly");
        if !bootstrap && wants_nightly {
            eprintln!(
                "==> xtask fuzz: this cargo-fuzz needs nightly-only flags; retrying with RUSTC_BOOTSTRAP=1 (fuzz build only)"
            );
            bootstrap = true;
            let (ok, stderr) = attempt(true, target)?;
            if ok {
                continue;
            }
            eprintln!("{stderr}");
        } else {
            eprintln!("{stderr}");
        }
        anyhow::bail!("the fuzz target {target} does not build; see the errors above");
    }
    Ok(bootstrap)
}

fn list_artifacts(dir: &Path) -> Vec<String> {
    let Ok(list) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = list
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

fn write_report(
    target_dir: &Path,
    seconds: u64,
    report: &[(String, Figures, bool)],
) -> anyhow::Result<()> {
    let dir = target_dir.join("fuzz");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let targets: Vec<serde_json::Value> = report
        .iter()
        .map(|(t, f, ok)| {
            serde_json::json!({
                "target": t,
                "ok": ok,
                "executions": f.executions,
                "seconds": (f.seconds * 10.0).round() / 10.0,
                "corpus": f.corpus,
                "peak_rss_mb": f.peak_rss_mb,
            })
        })
        .collect();
    let json = serde_json::json!({ "seconds_per_target": seconds, "targets": targets });
    let path: PathBuf = dir.join("latest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask fuzz: figures written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse_args(v: &[&str]) -> Result<Args, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("fuzz").chain(v.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn arguments() {
        let all: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
        let o = parse_args(&[]).unwrap();
        assert_eq!((o.seconds, o.check_only, o.targets()), (30, false, all));
        let o = parse_args(&["--seconds", "5", "config", "--check"]).unwrap();
        assert_eq!((o.seconds, o.check_only), (5, true));
        assert_eq!(o.targets(), ["config"]);
        assert!(parse_args(&["--seconds", "0"]).is_err());
        assert!(parse_args(&["--seconds"]).is_err());
        assert!(parse_args(&["nope"]).is_err());
    }

    #[test]
    fn every_target_has_a_source_file_and_seeds() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for (t, _) in TARGETS {
            assert!(
                fuzz.join("fuzz_targets").join(format!("{t}.rs")).is_file(),
                "{t}"
            );
            assert!(manifest.contains(&format!("name = \"{t}\"")), "{t}");
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(t)).map_or(0, Iterator::count);
            assert!(seeds >= 5, "fuzz/seeds/{t} has {seeds} seeds");
        }
    }

    #[test]
    fn libfuzzer_stats_are_read() {
        let f = final_stats(
            "#1 INITED\nDone 12 runs\nstat::number_of_executed_units: 1234\nstat::peak_rss_mb: 56\n",
        );
        assert_eq!((f.executions, f.peak_rss_mb), (1234, 56));
    }
}
