//! What the fuzz targets in `fuzz/` check, as plain functions: `cargo xtask fuzz` runs
//! them under libFuzzer, and the unit tests below run every seed input through them in
//! the normal test suite. Not part of the API (compiled for tests and with the
//! `fuzzing` feature only).
//!
//! Each function panics when an input breaks a property; returning means the input
//! was handled.

use std::path::Path;

use crate::config::Config;
use crate::header::{self, HEADER_LIMIT, Phases};

/// `header::parse` and `lint::lint_bytes` on the first bytes of a hook: never a panic,
/// and what they return is consistent with the input.
pub fn header(data: &[u8]) {
    // The dispatcher reads at most HEADER_LIMIT bytes; longer inputs are cut the same way.
    let truncated = data.len() >= HEADER_LIMIT;
    let buf = &data[..data.len().min(HEADER_LIMIT)];
    let lines = buf.split(|&b| b == b'\n').count();
    for t in [truncated, !truncated] {
        let h = header::parse(buf, t);
        for e in &h.errors {
            assert!(e.line >= 1 && e.line <= lines, "{e:?} of {lines} lines");
            assert!(header::KEYS.contains(&e.key), "{e:?}");
        }
        if let Some(Phases::List(list)) = &h.phases {
            assert!(!list.is_empty());
            for p in list {
                assert!(
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
                    "phase {p:?}"
                );
            }
        }
        if let Some(lock) = &h.lock {
            header::validate_lock_name(lock).expect("a lock name the header accepted");
            assert!(!lock.contains('/') && lock != "." && lock != "..");
        }
        if let Some(t) = h.timeout {
            assert!(!t.is_zero() && t <= header::MAX_DURATION, "{t:?}");
        }
        if let Some(objects) = &h.objects {
            // What an objects line says survives being written out and read again.
            let text: Vec<String> = objects.iter().map(ToString::to_string).collect();
            let again = crate::objects::parse_list(&text.join(" ")).expect("re-parse");
            assert_eq!(&again, objects);
            for p in objects {
                // Matching never panics, whatever the object.
                let _ = p.matches(&String::from_utf8_lossy(buf));
            }
        }
        let findings = crate::lint::lint_bytes(buf, t, Some(("vzdump", &["job-start", "log-end"])));
        for f in &findings {
            assert!(f.line.is_none_or(|l| l >= 1 && l <= lines), "{f:?}");
        }
        // A header error is always reported by lint as an error.
        let errors = findings
            .iter()
            .filter(|f| f.severity == crate::lint::Severity::Error)
            .count();
        assert!(errors >= h.errors.len(), "{findings:?} vs {:?}", h.errors);
    }
}

/// `Config::parse` on any text: never a panic; an error names a line of the file; a
/// configuration that parses has only absolute paths and positive durations.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/hookrun/hookrun.toml");
    match Config::parse(text, path) {
        Ok(c) => {
            let names: Vec<String> = c.platform_names().map(str::to_owned).collect();
            for platform in names.iter().map(String::as_str).chain(["vzdump", "x"]) {
                let s = c.settings_for(platform);
                for p in [&s.log_dir, &s.lock_dir, &s.mk_job_dir] {
                    assert!(p.is_absolute(), "{p:?}");
                }
                assert!(s.hooks_dir.as_ref().is_none_or(|d| d.is_absolute()));
                // Positive and within the limit that keeps every sum with an Instant
                // and every millisecond count in range.
                let max = crate::header::MAX_DURATION;
                assert!(!s.kill_grace.is_zero() && s.kill_grace <= max);
                assert!(s.default_timeout.is_none_or(|t| !t.is_zero() && t <= max));
            }
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(e.line.is_none_or(|l| l >= 1 && l <= lines), "{e}");
            assert!(!e.message.is_empty());
            assert!(e.to_string().starts_with("/etc/hookrun/hookrun.toml"));
        }
    }
}

/// Header lines a fuzz input is cut into: at most this many per hook, this long each.
const MAX_LINES: usize = 24;
const MAX_LINE: usize = 256;

/// The real dispatch path ([`crate::dispatch::dispatch`], real processes, real records)
/// with arbitrary header values: up to three hooks, their headers made of the input
/// (pieces separated by NUL; every line becomes a `#` line after a fixed
/// `# mode: sync` / `# phases: fuzz`). Never a panic, and one record and one report for
/// every hook the dispatch matched — run, refused or skipped.
///
/// `# mode: sync` comes first so that a fuzzed `mode: async` is a duplicate (refused):
/// an async hook would re-execute this binary as its supervisor.
pub fn dispatch(data: &[u8]) {
    let _ = dispatch_report(data);
}

/// [`dispatch`], returning the report (for the tests that pin what it found).
pub(crate) fn dispatch_report(data: &[u8]) -> crate::dispatch::Report {
    // One dispatch at a time: a dispatcher owns the process's signal handling (one
    // self-pipe), as it does in the real binaries.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    use std::os::unix::fs::PermissionsExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base =
        std::env::temp_dir().join(format!("hookrun-fuzz-dispatch-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let hooks = base.join("hooks");
    std::fs::create_dir_all(&hooks).expect("create the fuzz hooks directory");
    for d in [&base, &hooks] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for (i, piece) in data.split(|&b| b == 0).take(3).enumerate() {
        let mut text = b"#!/bin/sh\n# mode: sync\n# phases: fuzz\n".to_vec();
        for line in piece.split(|&b| b == b'\n').take(MAX_LINES) {
            let line = &line[..line.len().min(MAX_LINE)];
            if line.first() != Some(&b'#') {
                text.extend_from_slice(b"# ");
            }
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        text.extend_from_slice(b"exit 0\n");
        let path = hooks.join(format!("{i}0-hook"));
        std::fs::write(&path, &text).expect("write a fuzz hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let settings = crate::config::Settings {
        log_dir: base.join("log"),
        lock_dir: base.join("lock"),
        mk_job_dir: base.join("mk-job"),
        default_timeout: Some(std::time::Duration::from_secs(20)),
        kill_grace: std::time::Duration::from_secs(1),
        prefix_output: false,
        ..crate::config::Settings::default()
    };
    let req = crate::dispatch::Request {
        platform: "fuzz".into(),
        phase: "fuzz".into(),
        object: Some("101".into()),
        args: Vec::new(),
        env: Vec::new(),
        stdin: None,
        default_on_error: crate::header::OnError::Fail,
        filter: false,
        implicit: None,
        may_fail: true,
        platform_grace: None,
    };
    let focus = crate::discover::Focus {
        phase: &req.phase,
        object: req.object.as_deref(),
        implicit: None,
    };
    // What the dispatch must account for: every hook it matched.
    let matched: Vec<String> = crate::discover::scan_for(&hooks, &focus)
        .expect("scan the fuzz hooks")
        .iter()
        .filter(|e| {
            matches!(
                e.verdict(&req.phase, req.object.as_deref()),
                crate::discover::Verdict::Run | crate::discover::Verdict::HeaderInvalid
            )
        })
        .map(|e| e.display_name().into_owned())
        .collect();
    let report = crate::dispatch::dispatch(&settings, &hooks, &req).expect("dispatch");
    let reported: Vec<&str> = report.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(reported, matched, "a report for every matched hook");
    let records = std::fs::read_to_string(settings.log_dir.join("runs.jsonl")).unwrap_or_default();
    let recorded: Vec<String> = records
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON record");
            v["hook"].as_str().expect("a hook name").to_owned()
        })
        .collect();
    assert_eq!(recorded, matched, "a record for every matched hook");
    assert!(
        report
            .hooks
            .iter()
            .all(|h| h.outcome != crate::record::OutcomeKind::Running),
        "only sync hooks here"
    );
    let _ = std::fs::remove_dir_all(&base);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed inputs of a fuzz target (`fuzz/seeds/<target>/`, in git; the corpus that
    /// fuzz runs grow is not, and can be large).
    pub(crate) fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut out = Vec::new();
        let dir = root.join("seeds").join(target);
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let data = std::fs::read(f.path()).unwrap();
            out.push((f.path().display().to_string(), data));
        }
        out
    }

    #[test]
    fn header_seeds_pass_the_fuzz_checks() {
        let seeds = inputs("header");
        assert!(seeds.len() >= 5, "fuzz/seeds/header has too few seeds");
        for (name, data) in seeds {
            let r = std::panic::catch_unwind(|| header(&data));
            assert!(r.is_ok(), "{name}");
        }
    }

    #[test]
    fn dispatch_seeds_pass_the_fuzz_checks() {
        let seeds = inputs("dispatch");
        assert!(seeds.len() >= 5, "fuzz/seeds/dispatch has too few seeds");
        for (name, data) in seeds {
            let r = std::panic::catch_unwind(|| dispatch(&data));
            assert!(r.is_ok(), "{name}");
        }
    }

    #[test]
    fn the_dispatch_check_sees_real_runs_and_refusals() {
        use crate::record::OutcomeKind;
        let r = dispatch_report(b"timeout: 9223372036854775807\0timeout: 5\0objects: 200");
        let got: Vec<(&str, OutcomeKind)> = r
            .hooks
            .iter()
            .map(|h| (h.name.as_str(), h.outcome))
            .collect();
        assert_eq!(
            got,
            [
                ("00-hook", OutcomeKind::Refused),
                ("10-hook", OutcomeKind::Ok)
            ]
        );
        assert!(
            r.hooks[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("00-hook:line 4") && m.contains("31536000")),
            "{:?}",
            r.hooks[0].message
        );
    }

    /// The dispatch check on generated headers: every key with values near and past
    /// every limit, in any order, duplicated, across up to three hooks.
    mod props {
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "timeout",
            "lock",
            "on-error",
            "objects",
            "mode",
            "phases",
            "mk-job",
            "user",
            "nice",
            "io-class",
            "lock_timeout",
            "lock-timeout",
        ];
        const VALUES: &[&str] = &[
            "",
            "0",
            "1",
            "1s",
            "2m",
            "8760h",
            "8761h",
            "31536000",
            "31536001",
            "9223372036854775807",
            "18446744073709551615",
            "18446744073709552",
            "99999999999999999999h",
            "-1",
            "1.5",
            "1e9",
            "abort",
            "fail",
            "warn",
            "sync",
            "async",
            "101",
            "100-102",
            "0-18446744073709551615",
            "18446744073709551615-1",
            "*",
            "a/b",
            "..",
            "nas",
            "x.y",
            "\u{ff}",
            "root",
            "nobody",
            "19",
            "-20",
            "idle",
            "realtime:0",
            "be:7",
        ];

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                (
                    proptest::sample::select(KEYS),
                    proptest::sample::select(VALUES),
                    "[ \t]{0,2}"
                )
                    .prop_map(|(k, v, gap)| format!("{k}:{gap}{v}")),
                proptest::sample::select(KEYS).prop_map(str::to_owned),
                "[ -~]{0,40}",
            ]
        }

        fn input() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(proptest::collection::vec(line(), 0..6), 1..4).prop_map(
                |hooks| {
                    hooks
                        .iter()
                        .map(|lines| lines.join("\n"))
                        .collect::<Vec<_>>()
                        .join("\0")
                        .into_bytes()
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn any_header_values_dispatch_without_panic_and_with_a_record_per_hook(data in input()) {
                super::dispatch(&data);
            }
        }
    }

    #[test]
    fn config_seeds_pass_the_fuzz_checks() {
        let seeds = inputs("config");
        assert!(seeds.len() >= 5, "fuzz/seeds/config has too few seeds");
        for (name, data) in seeds {
            let r = std::panic::catch_unwind(|| config(&data));
            assert!(r.is_ok(), "{name}");
        }
    }
}
