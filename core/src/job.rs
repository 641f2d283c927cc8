//! Job names (DESIGN §4): `<platform>-<hook without its last extension>[-<object>]`.
//!
//! Job names become file names (Checkmk job files, async logs), so everything outside
//! `[A-Za-z0-9._-]` is replaced and the length is bounded: a hostile object name can
//! never reach another directory or exceed a file name's limit.

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

pub fn job_name(platform: &str, hook_file_name: &str, object: Option<&str>) -> String {
    let mut name = String::with_capacity(64);
    name.push_str(platform);
    name.push('-');
    name.push_str(hook_stem(hook_file_name));
    if let Some(obj) = object.filter(|o| !o.is_empty()) {
        name.push('-');
        name.push_str(obj);
    }
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.truncate(MAX_JOB_NAME);
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
}
