//! What the `libvirt` fuzz target in `fuzz/` checks, as a plain function: `cargo xtask
//! fuzz` runs it under libFuzzer, and the unit test below runs every seed input through
//! it in the normal test suite. Not part of the API (tests and the `fuzzing` feature
//! only).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::{ArgvError, DRIVERS, xml_facts};

/// libvirt's argv and stdin from one input: with four NUL bytes in it, the four parts
/// before them are `object op subop extra` (no argument can hold a NUL) and the rest is
/// the XML; otherwise the whole input is the XML of a qemu `prepare`.
pub fn split(data: &[u8]) -> (Vec<OsString>, &[u8]) {
    let parts: Vec<&[u8]> = data.splitn(5, |&b| b == 0).collect();
    if parts.len() == 5 {
        let args = parts[..4]
            .iter()
            .map(|p| OsString::from_vec(p.to_vec()))
            .collect();
        (args, parts[4])
    } else {
        let args = ["vm", "prepare", "begin", "-"]
            .iter()
            .map(OsString::from)
            .collect();
        (args, data)
    }
}

/// `xml_facts` and `request` on any argv and XML: never a panic, nothing that cannot be
/// an environment variable, the argv passed on unchanged.
pub fn xml(data: &[u8]) {
    let (args, xml) = split(data);
    if let Ok(facts) = xml_facts(xml) {
        for v in [&facts.uuid, &facts.port_owner].into_iter().flatten() {
            assert!(!v.is_empty() && v.trim() == v, "{v:?}");
            assert!(!v.chars().any(char::is_control), "{v:?}");
        }
    }
    for driver in DRIVERS {
        let r = crate::request(driver, args.clone(), Some(xml.to_vec())).expect("four arguments");
        assert_eq!(r.args, args);
        assert_eq!(r.platform, format!("libvirt-{driver}"));
        assert_eq!(r.phase, args[1].to_string_lossy());
        let object = args[0].to_string_lossy();
        assert_eq!(r.object.is_none(), object == "-" || object.is_empty());
        assert_eq!(r.stdin.is_none(), *driver == "daemon");
        for (k, v) in &r.env {
            assert!(
                !k.as_encoded_bytes().contains(&0) && !v.as_encoded_bytes().contains(&0),
                "{k:?}={v:?}"
            );
        }
        if r.may_fail {
            assert_eq!(r.default_on_error, hookrun_core::OnError::Fail);
        }
    }
    assert_eq!(
        crate::request("qemu", args[..3].to_vec(), Some(xml.to_vec())).unwrap_err(),
        ArgvError::Count(3)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_seeds_pass_the_fuzz_checks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut n = 0;
        let dir = root.join("seeds").join("libvirt");
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let data = std::fs::read(f.path()).unwrap();
            let r = std::panic::catch_unwind(|| xml(&data));
            assert!(r.is_ok(), "{}", f.path().display());
            n += 1;
        }
        assert!(n >= 5, "fuzz/seeds/libvirt has too few seeds");
    }
}
