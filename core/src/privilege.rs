//! Users and groups without NSS.
//!
//! The static build (`cargo xtask package`'s `-x86_64-linux-static` tarball) links glibc
//! statically, and a static glibc can only answer `getpwuid` & co. by loading the NSS
//! modules of a matching shared glibc at run time — which the container images it is
//! made for (Alpine, distroless) do not have. So hookrun reads `/etc/passwd` and
//! `/etc/group` itself: the `files` source, which is what those images use. A name
//! served only by another NSS source (LDAP, systemd-userdb) is not found; callers fall
//! back to the numeric id.

use std::path::Path;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// Parses passwd(5) text; malformed lines (and NIS `+`/`-` lines) are skipped, as
/// glibc's `files` module does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['+', '-', '#']) {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

/// Parses group(5) text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() != 4 || f[0].is_empty() || f[0].starts_with(['+', '-', '#']) {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

fn read(path: &Path) -> String {
    // A missing or unreadable file is an empty database: lookups fall back to ids.
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The passwd entry of `uid` in `/etc/passwd`.
pub fn user_by_uid(uid: u32) -> Option<PasswdEntry> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|e| e.uid == uid)
}

/// The passwd entry named `name` in `/etc/passwd`.
pub fn user_by_name(name: &str) -> Option<PasswdEntry> {
    parse_passwd(&read(Path::new(PASSWD)))
        .into_iter()
        .find(|e| e.name == name)
}

/// The group entry named `name` in `/etc/group`.
pub fn group_by_name(name: &str) -> Option<GroupEntry> {
    parse_group(&read(Path::new(GROUP)))
        .into_iter()
        .find(|e| e.name == name)
}

/// The name of `uid`, or the number when `/etc/passwd` does not have it.
pub fn user_name(uid: u32) -> String {
    user_by_uid(uid).map_or_else(|| uid.to_string(), |e| e.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_bad_ones_are_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                    broken:x:notanumber:0::/:/bin/sh\n\
                    short:x:1\n\
                    +nis::::::\n\
                    \n\
                    backup:x:34:34:backup:/var/backups:/usr/sbin/nologin";
        let e = parse_passwd(text);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "nobody", "backup"]);
        assert_eq!(
            e[1],
            PasswdEntry {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
                home: "/nonexistent".into(),
                shell: "/usr/sbin/nologin".into()
            }
        );
    }

    #[test]
    fn group_lines_parse_with_members() {
        let g = parse_group("root:x:0:\ndisk:x:6:backup,hookrun\nbad:x:y:\nshort:x\n");
        assert_eq!(g.len(), 2);
        assert!(g[0].members.is_empty());
        assert_eq!(g[1].gid, 6);
        assert_eq!(g[1].members, ["backup", "hookrun"]);
    }

    #[test]
    fn the_running_users_name_comes_from_etc_passwd() {
        // The test machine has root in /etc/passwd; a uid nobody has falls back.
        if Path::new(PASSWD).exists() {
            assert_eq!(user_name(0), "root");
        }
        assert_eq!(user_name(3_999_999_999), "3999999999");
    }
}
