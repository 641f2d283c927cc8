//! The attacker of the check-then-exec race in issue 13, for `e2e::hardening`: swaps two
//! entries of a directory with `renameat2(RENAME_EXCHANGE)` as fast as it can, for at
//! most the given number of seconds (the test kills it sooner), and prints how many
//! swaps succeeded and how many were refused. Run as another user (`setpriv`).
//!
//! Usage: `rename-exchange DIR A B SECONDS`

use std::io::Write as _;
use std::time::{Duration, Instant};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, a, b, secs] = args.as_slice() else {
        let _ = writeln!(std::io::stderr(), "usage: rename-exchange DIR A B SECONDS");
        std::process::exit(2);
    };
    let secs: u64 = secs.parse().unwrap_or(60);
    let (a, b) = (format!("{dir}/{a}"), format!("{dir}/{b}"));
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut swapped, mut refused) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let mut out = std::io::stdout();
    while Instant::now() < end {
        match renameat2(
            AT_FDCWD,
            a.as_str(),
            AT_FDCWD,
            b.as_str(),
            RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => swapped += 1,
            Err(_) => refused += 1,
        }
        // Reported as it goes: the test kills this process when it is done.
        if last_report.elapsed() > Duration::from_millis(100) {
            let _ = writeln!(out, "swapped {swapped} refused {refused}");
            let _ = out.flush();
            last_report = Instant::now();
        }
    }
    let _ = writeln!(out, "swapped {swapped} refused {refused}");
}
