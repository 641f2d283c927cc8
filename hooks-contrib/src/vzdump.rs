//! vzdump's file names and hook environment (reference `proxmox.md` §1.3–§1.5).
//!
//! An archive is `<dumpdir>/vzdump-<qemu|lxc>-<vmid>-YYYY_MM_DD-HH_MM_SS<ext>` with
//! `<ext>` = `.vma` (qemu) or `.tar` (lxc), optionally followed by `.zst`, `.gz` or `.lzo`.
//! Its log is `<dumpdir>/<basename>.log` (exported as `LOGFILE` on file storages), its
//! notes `<archive>.notes`. `TARGET` is the archive path on file storages, a snapshot
//! name such as `vm/101/2026-01-31T01:00:00Z` on Proxmox Backup Server, `-` for stdout.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Every vzdump archive extension, longest first within each type.
pub const ARCHIVE_EXTS: [&str; 8] = [
    ".vma.zst", ".vma.gz", ".vma.lzo", ".vma", ".tar.zst", ".tar.gz", ".tar.lzo", ".tar",
];

/// The parts of an archive file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveName<'a> {
    /// `vzdump-qemu-101-2026_01_31-01_00_00`
    pub base: &'a str,
    /// `qemu` or `lxc`
    pub vmtype: &'a str,
    pub vmid: &'a str,
    /// `.vma.zst`, ...
    pub ext: &'a str,
}

/// Parses `vzdump-<type>-<vmid>-YYYY_MM_DD-HH_MM_SS<ext>`; `None` for anything else.
pub fn parse_archive_name(name: &str) -> Option<ArchiveName<'_>> {
    let ext = ARCHIVE_EXTS.iter().find(|e| name.ends_with(*e))?;
    let base = &name[..name.len() - ext.len()];
    let rest = base.strip_prefix("vzdump-")?;
    let (vmtype, rest) = rest.split_once('-')?;
    if vmtype != "qemu" && vmtype != "lxc" {
        return None;
    }
    if (vmtype == "qemu") != ext.starts_with(".vma") {
        return None;
    }
    let (vmid, stamp) = rest.split_once('-')?;
    if vmid.is_empty() || !vmid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // YYYY_MM_DD-HH_MM_SS
    let shape = b"dddd_dd_dd-dd_dd_dd";
    let ok = stamp.len() == shape.len()
        && stamp.bytes().zip(shape.iter()).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        });
    ok.then_some(ArchiveName {
        base,
        vmtype,
        vmid,
        ext,
    })
}

/// What vzdump's `log-end` environment points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// An archive on a file storage, with its log file.
    Archive { archive: PathBuf, log: PathBuf },
    /// Nothing to do, and why (PBS, stdout, no archive because the backup failed).
    Skip(String),
}

fn non_empty(v: Option<&OsStr>) -> Option<&OsStr> {
    v.filter(|v| !v.is_empty())
}

/// Finds the archive from `TARGET` and `LOGFILE` (and `DUMPDIR`, which says whether the
/// storage is a file storage). Errors are for states vzdump never produces at `log-end`
/// on a file storage: no `LOGFILE`, or a `LOGFILE` that does not exist.
pub fn locate(
    target: Option<&OsStr>,
    logfile: Option<&OsStr>,
    dumpdir: Option<&OsStr>,
) -> Result<Located, String> {
    let target = non_empty(target).map(Path::new);
    let logfile = non_empty(logfile).map(Path::new);
    let dumpdir = non_empty(dumpdir);

    if let Some(t) = target {
        if t == Path::new("-") {
            return Ok(Located::Skip(
                "TARGET is '-' (the archive went to stdout): nothing to copy".into(),
            ));
        }
        if !t.is_absolute() {
            return Ok(Located::Skip(format!(
                "TARGET {} is a Proxmox Backup Server snapshot, not a file: nothing to copy (PBS keeps and encrypts its own copies)",
                t.display()
            )));
        }
    }
    let Some(log) = logfile else {
        return Err(match (target, dumpdir) {
            (Some(t), _) => format!(
                "LOGFILE is not set although TARGET {} is a file on a file storage; vzdump sets both at log-end",
                t.display()
            ),
            (None, Some(d)) => format!(
                "LOGFILE is not set although DUMPDIR {} says this is a file storage; vzdump sets it at log-end",
                Path::new(d).display()
            ),
            (None, None) => {
                "neither TARGET nor LOGFILE is set: run this at vzdump's log-end phase (it reads vzdump's environment)".into()
            }
        });
    };
    let Some(log_name) = log.file_name().and_then(|n| n.to_str()) else {
        return Err(format!("LOGFILE {} is not a file name", log.display()));
    };
    let Some(base) = log_name.strip_suffix(".log") else {
        return Err(format!(
            "LOGFILE {} does not end in .log, so it is not vzdump's log",
            log.display()
        ));
    };
    if !log.is_file() {
        return Err(format!(
            "LOGFILE {} does not exist (vzdump copies the log there before log-end)",
            log.display()
        ));
    }
    let dir = log.parent().unwrap_or(Path::new("."));
    let archive = match target {
        Some(t) => {
            if !t.is_file() {
                return Ok(Located::Skip(format!(
                    "archive {} does not exist (the backup failed or was removed): nothing to copy",
                    t.display()
                )));
            }
            t.to_owned()
        }
        None => {
            let found = ARCHIVE_EXTS
                .iter()
                .map(|ext| dir.join(format!("{base}{ext}")))
                .find(|p| p.is_file());
            match found {
                Some(p) => p,
                None => {
                    return Ok(Located::Skip(format!(
                        "no archive {}/{base}.{{vma,tar}}[.zst|.gz|.lzo] next to LOGFILE (the backup failed?): nothing to copy",
                        dir.display()
                    )));
                }
            }
        }
    };
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if parse_archive_name(name).is_none() {
        return Err(format!(
            "{} is not a vzdump archive name (vzdump-<qemu|lxc>-<vmid>-YYYY_MM_DD-HH_MM_SS.<vma|tar>[.zst|.gz|.lzo])",
            archive.display()
        ));
    }
    Ok(Located::Archive {
        archive,
        log: log.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        let n = parse_archive_name("vzdump-qemu-101-2026_01_31-01_00_00.vma.zst").unwrap();
        assert_eq!(
            (n.base, n.vmtype, n.vmid, n.ext),
            (
                "vzdump-qemu-101-2026_01_31-01_00_00",
                "qemu",
                "101",
                ".vma.zst"
            )
        );
        for ext in ARCHIVE_EXTS {
            let t = if ext.starts_with(".vma") {
                "qemu"
            } else {
                "lxc"
            };
            let name = format!("vzdump-{t}-7-2020_12_31-23_59_59{ext}");
            assert_eq!(parse_archive_name(&name).unwrap().ext, ext, "{name}");
        }
        for bad in [
            "vzdump-qemu-101-2026_01_31-01_00_00.log",
            "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.notes",
            "vzdump-lxc-101-2026_01_31-01_00_00.vma",
            "vzdump-qemu-101-2026_01_31-01_00_00.tar.gz",
            "vzdump-qemu-x-2026_01_31-01_00_00.vma",
            "vzdump-qemu-101-2026_01_31.vma",
            "other-qemu-101-2026_01_31-01_00_00.vma",
        ] {
            assert!(parse_archive_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn locating() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = "vzdump-lxc-200-2026_02_01-03_04_05";
        let log = d.join(format!("{base}.log"));
        let os = |p: &Path| p.as_os_str().to_owned();

        // PBS and stdout targets are skipped whatever else is set.
        let pbs = locate(Some(OsStr::new("ct/200/2026-02-01T03:04:05Z")), None, None).unwrap();
        assert!(matches!(pbs, Located::Skip(ref m) if m.contains("Proxmox Backup Server")));
        assert!(matches!(
            locate(Some(OsStr::new("-")), None, None).unwrap(),
            Located::Skip(_)
        ));

        // No LOGFILE on a file storage, or a LOGFILE that does not exist: errors.
        assert!(locate(None, None, Some(d.as_os_str())).is_err());
        assert!(locate(None, None, None).is_err());
        assert!(
            locate(None, Some(log.as_os_str()), None)
                .unwrap_err()
                .contains("does not exist")
        );

        // A log but no archive (the backup failed): skipped.
        std::fs::write(&log, "log").unwrap();
        assert!(matches!(
            locate(None, Some(log.as_os_str()), None).unwrap(),
            Located::Skip(ref m) if m.contains("no archive")
        ));

        // Found from LOGFILE, whatever the compression.
        let archive = d.join(format!("{base}.tar.lzo"));
        std::fs::write(&archive, "data").unwrap();
        assert_eq!(
            locate(None, Some(log.as_os_str()), None).unwrap(),
            Located::Archive {
                archive: archive.clone(),
                log: log.clone()
            }
        );
        // And from TARGET.
        assert_eq!(
            locate(
                Some(&os(&archive)),
                Some(log.as_os_str()),
                Some(d.as_os_str())
            )
            .unwrap(),
            Located::Archive {
                archive: archive.clone(),
                log: log.clone()
            }
        );
        // A TARGET that is not there: skipped.
        let gone = d.join(format!("{base}.tar.zst"));
        assert!(matches!(
            locate(Some(&os(&gone)), Some(log.as_os_str()), None).unwrap(),
            Located::Skip(_)
        ));
        // TARGET without LOGFILE on a file storage: error.
        assert!(locate(Some(&os(&archive)), None, None).is_err());
    }
}
