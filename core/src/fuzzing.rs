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
            assert!(!t.is_zero());
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
                assert!(!s.kill_grace.is_zero());
                assert!(s.default_timeout.is_none_or(|t| !t.is_zero()));
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
    fn config_seeds_pass_the_fuzz_checks() {
        let seeds = inputs("config");
        assert!(seeds.len() >= 5, "fuzz/seeds/config has too few seeds");
        for (name, data) in seeds {
            let r = std::panic::catch_unwind(|| config(&data));
            assert!(r.is_ok(), "{name}");
        }
    }
}
