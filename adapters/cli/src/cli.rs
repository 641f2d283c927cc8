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
dispatches for tools without their own adapter (run) and walks a simulated backup job (demo).",
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
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Platform whose hooks directory and phases to use (vzdump, pve-guest, libvirt-qemu, worker, or any name)
    #[arg(long, short = 'p', default_value = "vzdump")]
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
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (hooks, config, dump dir, records) instead of removing it
    #[arg(long)]
    pub keep: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
