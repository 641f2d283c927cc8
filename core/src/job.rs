//! Job names (DESIGN §4): `<platform>-<hook without its last extension>[-<object>]`.
//!
//! Job names become file names (Checkmk job files, async logs), so everything outside
//! `[A-Za-z0-9._-]` is replaced and the length is bounded: a hostile object name can
//! never reach another directory or exceed a file name's limit.
//!
//! A job name is an identity: the running marker, the async log and the Checkmk file
//! of a job are found by it. So two different names must not meet in one job name
//! behind the user's back:
//! - a name cut to [`MAX_JOB_NAME`] ends in a hash of the whole name, so names that
//!   differ only past the cut stay apart;
//! - file names that are not UTF-8 reach here escaped byte by byte
//!   ([`crate::discover::escape_name`]: `\xff`, becoming `_xff`), not as one shared
//!   replacement character;
//! - what can still collide by the rules above (`10-copy.sh` and `10-copy.py`, or
//!   `a b` and `a_b`) is found by [`hook_key`] at discovery and is an error at `lint`,
//!   `list`, `doctor` and dispatch, naming both files.

/// Longest job name produced; leaves room for suffixes such as `.<pid>running` within
/// the 255-byte file name limit.
pub const MAX_JOB_NAME: usize = 200;

/// The hook's file name without its last extension, as the seed's `${hook_file%.*}`.
pub fn hook_stem(file_name: &str) -> &str {
    match file_name.rfind('.') {
        Some(i) if i > 0 => &file_name[..i],
        _ => file_name,
    }
}

/// The part of every job name a hook file contributes: its stem, cleaned as in
/// [`job_name`]. Two hooks of one directory with the same key get the same job names.
pub fn hook_key(hook_file_name: &str) -> String {
    clean(hook_stem(hook_file_name))
}

fn clean(name: &str) -> String {
    name.chars().map(clean_char).collect()
}

fn clean_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
        c
    } else {
        '_'
    }
}

/// Whether `hook_key(hook_file_name) == key`, without building the key (a dispatch
/// compares every name of its directory with the keys of the hooks it runs).
pub fn key_is(hook_file_name: &str, key: &str) -> bool {
    hook_stem(hook_file_name)
        .chars()
        .map(clean_char)
        .eq(key.chars())
}

/// A hash of `hook_key(hook_file_name)`, without building the key: equal keys have
/// equal hashes ([`key_hash`] of the key itself), so a dispatch sets most names aside
/// with one pass over their bytes.
pub fn hook_key_hash(hook_file_name: &str) -> u64 {
    hook_stem(hook_file_name)
        .chars()
        .map(clean_char)
        .fold(FNV_OFFSET, |h, c| fnv_step(h, c as u8))
}

/// The hash [`hook_key_hash`] gives every file name whose key is `key`.
pub fn key_hash(key: &str) -> u64 {
    key.bytes().fold(FNV_OFFSET, fnv_step)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// FNV-1a, 64 bits: stable across builds and versions (job names outlive a binary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().copied().fold(FNV_OFFSET, fnv_step)
}

pub fn job_name(platform: &str, hook_file_name: &str, object: Option<&str>) -> String {
    let mut name = String::with_capacity(64);
    name.push_str(platform);
    name.push('-');
    name.push_str(hook_stem(hook_file_name));
    if let Some(obj) = object.filter(|o| !o.is_empty()) {
        name.push('-');
        name.push_str(obj);
    }
    let mut clean = clean(&name);
    if clean.len() > MAX_JOB_NAME {
        // Hash the name before cleaning, so `a b` and `a_b` stay apart here too.
        let tag = format!("-{:016x}", fnv1a(name.as_bytes()));
        clean.truncate(MAX_JOB_NAME - tag.len());
        clean.push_str(&tag);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples() {
        assert_eq!(
            job_name("vzdump", "copy-encrypt.sh", Some("101")),
            "vzdump-copy-encrypt-101"
        );
        assert_eq!(
            job_name("libvirt-qemu", "gpu.sh", Some("win10")),
            "libvirt-qemu-gpu-win10"
        );
        assert_eq!(job_name("vzdump", "notify", None), "vzdump-notify");
        assert_eq!(job_name("vzdump", "a.b.sh", Some("")), "vzdump-a.b");
    }

    #[test]
    fn hostile_objects_stay_one_file_name() {
        let j = job_name("libvirt-qemu", "x.sh", Some("../../etc/passwd\nroot"));
        assert_eq!(j, "libvirt-qemu-x-.._.._etc_passwd_root");
        assert!(!j.contains('/'));
        let long = "a".repeat(4096);
        assert_eq!(job_name("vzdump", "h", Some(&long)).len(), MAX_JOB_NAME);
        assert_eq!(job_name("vzdump", "h", Some("vm ü")), "vzdump-h-vm__");
    }

    #[test]
    fn names_cut_to_the_limit_stay_distinct() {
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        let (ja, jb) = (
            job_name("vzdump", "h", Some(&a)),
            job_name("vzdump", "h", Some(&b)),
        );
        assert_ne!(ja, jb);
        assert_eq!((ja.len(), jb.len()), (MAX_JOB_NAME, MAX_JOB_NAME));
        assert!(ja.starts_with("vzdump-h-aaaa"), "{ja}");
        // Stable: the same inputs give the same name in every build.
        assert_eq!(ja, job_name("vzdump", "h", Some(&a)));
        let tag = &ja[MAX_JOB_NAME - 17..];
        assert!(
            tag.starts_with('-') && tag[1..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{ja}"
        );
    }

    #[test]
    fn hook_keys_are_what_job_names_share() {
        assert_eq!(hook_key("10-copy.sh"), hook_key("10-copy.py"));
        assert_eq!(hook_key("a b.sh"), hook_key("a_b"));
        assert_ne!(hook_key("a\\xff"), hook_key("a\\xfe"));
        assert_eq!(
            job_name("t", "10-copy.sh", None),
            format!("t-{}", hook_key("10-copy.sh"))
        );
    }

    #[test]
    fn key_is_agrees_with_hook_key() {
        let names = [
            "10-copy.sh",
            "10-copy.py",
            "10-copy",
            "a b.sh",
            "a_b",
            "ü.x",
            "_.x",
            "__.x",
            ".hidden",
            "a.b.c",
            "a.b",
            "",
            "x.",
            "vm ü",
            "vm __",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    key_is(a, &hook_key(b)),
                    hook_key(a) == hook_key(b),
                    "{a:?} {b:?}"
                );
                if hook_key(a) == hook_key(b) {
                    assert_eq!(hook_key_hash(a), key_hash(&hook_key(b)), "{a:?} {b:?}");
                }
            }
        }
    }
}
