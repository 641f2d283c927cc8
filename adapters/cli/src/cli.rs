//! Command-line definitions (also the source of the man pages and completions).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hookrun",
    version,
    about = "Run a directory of small, self-describing hooks from one platform hook",
    long_about = "hookrun turns the single hook script that Proxmox vzdump, Proxmox guests, libvirt or a \
backup container calls into a directory of small hooks. Each hook says in its first comment lines \
when it runs (# phases:), whether the platform waits for it (# mode:), and what a failure does \
(# on-error:).\n\nThis is the admin tool: it shows what would run (list), checks headers (lint), \
dispatches for tools without their own adapter (run), checks a whole installation (doctor), wires a \
platform to hookrun (install) and walks a simulated backup job (demo).",
    after_help = "Configuration: /etc/hookrun/hookrun.toml, or the file named by HOOKRUN_CONFIG."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what would run for a platform and phase, in order, and why every other file is skipped
    List(ListArgs),
    /// Check hook headers: errors with file:line, near-miss keys, unknown phases
    Lint(LintArgs),
    /// Dispatch a phase for any tool (Backrest, borgmatic, cron, ...)
    Run(RunArgs),
    /// Show recent run records (running async hooks included)
    Log(LogArgs),
    /// Walk a simulated vzdump backup job through hookrun-vzdump and the example hooks
    Demo(DemoArgs),
    /// Check the installation: wiring, hooks directories, permissions, every hook, logs, Checkmk
    Doctor(DoctorArgs),
    /// Print the steps that wire a platform to hookrun; --apply performs the host-side ones
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Platform whose hooks directory and phases to use (vzdump, pve-guest, libvirt-qemu, worker, or any name)
    #[arg(long, short = 'p', default_value = crate::platforms::DEFAULT)]
    pub platform: String,
    /// Show what a dispatch of this phase would do
    #[arg(long)]
    pub phase: Option<String>,
    /// The object of the dispatch (VMID, domain or network name, worker)
    #[arg(long)]
    pub object: Option<String>,
    /// Look in this directory instead of the platform's hooks directory
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Hook files or hooks directories to check
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Check phases against this platform's phase list
    #[arg(long, short = 'p')]
    pub platform: Option<String>,
    /// Exit non-zero on warnings too
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnErrorArg {
    Abort,
    Fail,
    Warn,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Platform name: selects the hooks directory (/etc/hookrun/NAME.d), the [NAME] config table and HOOKRUN_PLATFORM
    #[arg(long, short = 'p')]
    pub platform: String,
    /// The phase to dispatch
    #[arg(long)]
    pub phase: String,
    /// The object (a job, repository, VMID, ...), for '# objects:' and the job name
    #[arg(long)]
    pub object: Option<String>,
    /// What a failing hook does when its header has no '# on-error:'
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error_default: OnErrorArg,
    /// Use this hooks directory
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// Print what would run and exit without running anything
    #[arg(long)]
    pub dry_run: bool,
    /// Add NAME=VALUE to every hook's environment (repeatable); the value is passed byte for byte
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<OsString>,
    /// Exit N instead of the hook's own code when an '# on-error: abort' hook stops the dispatch (borgmatic's soft failure is 75)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=125))]
    pub abort_code: Option<u8>,
    /// Arguments passed to every hook unchanged
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Show the last N records
    #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
    pub last: usize,
    /// Only runs that did not end well (failed, timeout, signal, refused, spawn-error, lost)
    #[arg(long)]
    pub failed: bool,
    /// Only this hook (file name)
    #[arg(long, value_name = "NAME")]
    pub hook: Option<String>,
    /// Only this platform (also selects its log_dir when its config table sets one)
    #[arg(long, short = 'p')]
    pub platform: Option<String>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    /// One line per hook and object: runs, failures, last success and failure, median and max duration, the last 20 runs as a sparkline
    #[arg(long)]
    pub summary: bool,
    /// With --summary: only runs that started in this period (e.g. 90m, 24h, 7d, 2w)
    #[arg(long, value_name = "PERIOD", requires = "summary", value_parser = parse_period)]
    pub since: Option<std::time::Duration>,
}

/// A period for `--since`: a positive number with a unit s, m, h, d or w.
fn parse_period(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a period; use a number with a unit, e.g. 90m, 24h, 7d, 2w");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        Some(secs) if secs > 0 => Ok(std::time::Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (hooks, config, dump dir, records) instead of removing it
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this platform: vzdump, pve-guest, libvirt (every driver), libvirt-DRIVER, worker, or a name used with 'hookrun run'
    #[arg(long, short = 'p')]
    pub platform: Option<String>,
    /// One JSON document (platforms -> findings) instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Options for tests and for checking a mounted system image, hidden from --help
/// (see `host.rs`): `--root DIR` resolves every host path under DIR; `--bin-dir DIR`
/// says where the adapters are installed, as the host sees it.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Resolve every host path under DIR (DIR/etc/vzdump.conf, DIR/proc, ...)
    #[arg(long, value_name = "DIR", hide = true)]
    pub root: Option<PathBuf>,
    /// Where the adapters are, as the host sees it (default: beside this hookrun binary)
    #[arg(long, value_name = "DIR", hide = true)]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The platform to wire
    #[arg(value_parser = crate::platforms::install_values())]
    pub platform: String,
    /// Perform the host-side steps (hooks directories, the script line of /etc/vzdump.conf, the snippet and libvirt symlinks), backing up any file it changes; guest configs are never changed
    #[arg(long)]
    pub apply: bool,
    /// With --apply: replace a script that is not hookrun's (vzdump script, snippet, /etc/libvirt/hooks/DRIVER), after backing it up
    #[arg(long)]
    pub force: bool,
    /// pve-guest: print the qm set / pct set commands for these guests
    #[arg(long = "vmid", value_name = "N", num_args = 1..)]
    pub vmids: Vec<u32>,
    /// libvirt: the drivers to wire (default qemu)
    #[arg(long = "driver", value_name = "D", num_args = 1.., value_parser = crate::platforms::driver_values())]
    pub drivers: Vec<String>,
    /// pve-guest: the storage whose snippets directory gets the snippet (default local)
    #[arg(long, value_name = "S")]
    pub storage: Option<String>,
    /// libvirt, with --apply: restart the daemon that owns each driver instead of printing the command
    #[arg(long)]
    pub restart_daemon: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn periods() {
        use std::time::Duration;
        assert_eq!(
            super::parse_period("7d"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(super::parse_period("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            super::parse_period("2w"),
            Ok(Duration::from_secs(14 * 86_400))
        );
        for bad in ["", "7", "0d", "d", "7y", "-1d", "99999999999999999999d"] {
            assert!(super::parse_period(bad).is_err(), "{bad}");
        }
    }
}
