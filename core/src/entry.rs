//! The start every hookrun binary shares: the re-executed guard and async supervisor
//! first ([`crate::supervise::supervisor_entry`]), then, for the adapters that parse
//! their argv by hand, `--help` / `--version`.
//!
//! The adapters do not use clap for their platform's argv: a platform passes whatever it
//! passes, and a phase or VMID must never be taken for an option.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// What an adapter binary says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The binary's name, as `--version` prints it.
    pub name: &'static str,
    /// The adapter's `CARGO_PKG_VERSION`.
    pub version: &'static str,
    /// The complete `--help` text.
    pub help: &'static str,
}

/// Where `--help` and `--version` are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// As the first argument, whatever follows (vzdump, the guest hookscript: their
    /// first argument is never an option).
    First,
    /// Only as the sole argument (libvirt passes `-` as an argument, and any name).
    Only,
}

/// The program's argv once the prologue has not ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// argv\[0\]: the path the program was invoked by.
    pub invoked: Option<PathBuf>,
    /// The arguments after it.
    pub args: Vec<OsString>,
}

/// When this process is a guard or an async supervisor, runs it and returns its exit
/// code. Every binary calls this first, before it parses anything.
pub fn supervisor() -> Option<i32> {
    crate::supervise::supervisor_entry()
}

impl Program {
    /// The prologue of an adapter's `main`: the supervisor entry, then `--help` /
    /// `--version` (printed, exit 0). `Err` is the exit code to end with.
    pub fn start(&self, flags: Flags) -> Result<Argv, i32> {
        if let Some(code) = supervisor() {
            return Err(code);
        }
        let mut argv = std::env::args_os();
        let invoked = argv.next().map(PathBuf::from);
        let args: Vec<OsString> = argv.collect();
        match self.answer(&args, flags) {
            Some(text) => {
                print_out(&text);
                Err(0)
            }
            None => Ok(Argv { invoked, args }),
        }
    }

    /// The text `--help` or `--version` prints, when `args` asks for it.
    pub fn answer(&self, args: &[OsString], flags: Flags) -> Option<String> {
        if flags == Flags::Only && args.len() != 1 {
            return None;
        }
        match args.first()?.to_str()? {
            "--help" | "-h" => Some(self.help.to_owned()),
            "--version" | "-V" => Some(format!("{} {}\n", self.name, self.version)),
            _ => None,
        }
    }
}

/// Ends an adapter's process with `code`: hands over to the guard first
/// ([`crate::contain::hand_over`]), so the platform is released as soon as the work is
/// done.
pub fn exit(code: i32) -> ! {
    crate::contain::hand_over(code);
    std::process::exit(code)
}

/// Writes `s` to stdout. A reader that went away (`| head`, EPIPE) or a closed stdout
/// is not worth a panic: there is nobody left to tell.
pub fn print_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Program = Program {
        name: "hookrun-test",
        version: "1.2.3",
        help: "Usage: hookrun-test\n",
    };

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn help_and_version_where_the_adapter_takes_them() {
        for flags in [Flags::First, Flags::Only] {
            assert_eq!(P.answer(&os(&["--help"]), flags).as_deref(), Some(P.help));
            assert_eq!(P.answer(&os(&["-h"]), flags).as_deref(), Some(P.help));
            assert_eq!(
                P.answer(&os(&["-V"]), flags).as_deref(),
                Some("hookrun-test 1.2.3\n")
            );
            assert_eq!(
                P.answer(&os(&["--version"]), flags).as_deref(),
                Some("hookrun-test 1.2.3\n")
            );
            assert_eq!(P.answer(&os(&[]), flags), None);
            assert_eq!(P.answer(&os(&["job-start"]), flags), None);
            assert_eq!(P.answer(&os(&["--helpme"]), flags), None);
        }
        assert_eq!(
            P.answer(&os(&["--help", "x"]), Flags::First).as_deref(),
            Some(P.help)
        );
        assert_eq!(P.answer(&os(&["--help", "x"]), Flags::Only), None);
        assert_eq!(P.answer(&os(&["x", "--help"]), Flags::First), None);
    }
}
