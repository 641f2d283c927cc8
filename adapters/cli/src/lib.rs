//! The `hookrun` admin CLI: `list`, `lint`, `run`, `log`, `demo`, `doctor`, `install`. It knows every platform's
//! phases and defaults through the adapter libraries; the work itself is in the core.

#![allow(clippy::print_stdout, clippy::print_stderr)] // A CLI's output is its interface.

pub mod cli;
mod demo;
mod doctor;
pub(crate) mod host;
mod install;
mod lint;
pub(crate) mod list;
mod log;
pub(crate) mod platforms;
mod run;

use clap::Parser;

use cli::{Cli, Command};

/// Exit code for a usage or configuration problem (sysexits EX_USAGE / EX_CONFIG).
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CONFIG: i32 = 78;

/// The whole program; returns the exit code.
pub fn main_impl() -> i32 {
    if let Some(code) = hookrun_core::entry::supervisor() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let quiet = !matches!(cli.command, Command::Run(_));
    hookrun_core::logging::init("hookrun", quiet);
    let result = match cli.command {
        Command::List(a) => list::main(&a),
        Command::Lint(a) => lint::main(&a),
        Command::Run(a) => run::main(&a),
        Command::Log(a) => log::main(&a),
        Command::Demo(a) => demo::main(&a),
        Command::Doctor(a) => doctor::main(&a),
        Command::Install(a) => install::main(&a),
    };
    match result {
        Ok(code) => code,
        // An `Exit` carries its own complete message; other errors show their chain.
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(x) => {
                eprintln!("hookrun: error: {}", x.message);
                x.code
            }
            None => {
                eprintln!("hookrun: error: {e:#}");
                1
            }
        },
    }
}

/// An error that carries the exit code it should end the program with.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl Exit {
    pub fn error(code: i32, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Loads the configuration or fails with exit 78 and the file:line message.
pub(crate) fn load_config() -> anyhow::Result<hookrun_core::Config> {
    hookrun_core::Config::load().map_err(|e| Exit::error(EXIT_CONFIG, e.to_string()))
}
