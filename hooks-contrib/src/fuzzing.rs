//! What the `retention` fuzz target in `fuzz/` checks, as a plain function: `cargo
//! xtask fuzz` runs it under libFuzzer, and the unit test below runs every seed input
//! through it in the normal test suite. Not part of the API (tests and the `fuzzing`
//! feature only).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::companions::{companions_of, parse_rule, parse_rules};
use crate::retention::{parse_age, parse_size};

/// Each line of the input as a `--delete-companions` rule, as a file name the rules are
/// applied to, and as a `--max-size` / `--max-age` value: never a panic, and rules never
/// name the file itself as its own companion.
pub fn retention(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    for def in &lines {
        if let Ok(rules) = parse_rule(def) {
            assert!(!rules.is_empty());
            for r in &rules {
                assert!(!r.companion.is_empty());
                assert_ne!(r.companion, r.matching);
                assert_eq!(r.companion.trim(), r.companion);
                assert_eq!(r.matching.trim(), r.matching);
            }
        }
        let _ = parse_size(def);
        if let Ok(secs) = parse_age(def) {
            assert!(secs >= 1, "{def:?} -> {secs}");
        }
    }
    let valid: Vec<String> = lines
        .iter()
        .filter(|l| parse_rule(l).is_ok())
        .cloned()
        .collect();
    let rules = parse_rules(&valid).expect("rules that parse one by one parse together");
    assert!(
        rules.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
    for line in data.split(|&b| b == b'\n') {
        let name = OsStr::from_bytes(line);
        let companions = companions_of(&rules, name);
        assert!(companions.windows(2).all(|w| w[0] < w[1]));
        for c in &companions {
            assert_ne!(c.as_os_str(), name, "a file is never its own companion");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_seeds_pass_the_fuzz_checks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut n = 0;
        let dir = root.join("seeds").join("retention");
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let data = std::fs::read(f.path()).unwrap();
            let r = std::panic::catch_unwind(|| retention(&data));
            assert!(r.is_ok(), "{}", f.path().display());
            n += 1;
        }
        assert!(n >= 5, "fuzz/seeds/retention has too few seeds");
    }
}
