//! `hookrun install vzdump`: the hooks directory, the `script:` line of vzdump.conf
//! (edited in place, after a backup), and the `pvesh` commands for backup jobs with a
//! script of their own (hookrun never edits the cluster-wide jobs.cfg).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hookrun_core::config::Config;

use super::host::{JOBS_CFG, VZDUMP_CONF, script_line_value, vzdump_script};
use super::{ADAPTER, Vzdump};
use crate::host::{TargetKind, sh};
use crate::install::Out;
use crate::platforms::proxmox::sections;
use crate::platforms::{Platform, hooks_dir_beside};

pub(super) fn install(
    p: &Vzdump,
    out: &mut Out<'_>,
    config: &Config,
    bin: &Path,
) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, p.name());
    let conf = host.path(VZDUMP_CONF);
    let text = host
        .read(VZDUMP_CONF)
        .with_context(|| format!("cannot read {}", conf.display()))?;
    if text.is_none() {
        println!(
            "warning: {} does not exist: is this a Proxmox VE node? (--apply creates it with the script line alone)",
            conf.display()
        );
    }
    let current = text.as_deref().and_then(vzdump_script);
    let target = current
        .as_ref()
        .map(|(_, v)| host.identify(Path::new(v), ADAPTER));
    // A script that already leads to the installed adapter stays, e.g. the symlink on
    // shared storage with hooks.d beside it.
    let keep = target
        .as_ref()
        .is_some_and(|t| t.kind == TargetKind::Installed && t.executable);
    let invoked = if keep {
        current.as_ref().map(|(_, v)| PathBuf::from(v))
    } else {
        None
    };
    let dir = hooks_dir_beside(
        host,
        &settings,
        invoked.as_deref(),
        &p.default_hooks_dir(host),
    );

    out.step("The hooks directory (hooks go here, mode 0755, owned by root):");
    out.cmd(&format!("install -d -m 0755 {}", sh(&dir)));
    if out.apply {
        out.ensure_dir(&dir)?;
    }

    let line = format!("script: {}", bin.display());
    out.step(&format!(
        "Point vzdump at hookrun: the script line of {}",
        conf.display()
    ));
    match (&current, &target) {
        (Some((n, v)), Some(_)) if keep => {
            out.say(&format!(
                "line {n} already reads 'script: {v}', which leads to the installed hookrun-vzdump"
            ));
            if out.apply {
                out.same(&format!("{} line {n}: script: {v}", conf.display()));
            }
        }
        (Some((n, v)), Some(t)) => {
            let why = match &t.kind {
                TargetKind::Foreign => format!(
                    "{v} is another hook script: to keep it, make it a hook (cp {} {}/50-legacy, then add '# mode: sync' and '# phases: *' below its #! line)",
                    sh(v),
                    sh(&dir)
                ),
                TargetKind::Missing => {
                    format!("{v} does not exist, so vzdump fails every backup now")
                }
                TargetKind::Copy | TargetKind::OtherHookrun => {
                    format!("{v} is another hookrun-vzdump than the installed one")
                }
                TargetKind::Broken(e) => format!("{v} is unusable: {e}"),
                TargetKind::Installed => format!("{v} is not executable"),
            };
            out.say(&format!("replace line {n} ('script: {v}') by:"));
            out.cmd(&line);
            out.say(&format!("({why})"));
            if out.apply {
                if t.kind == TargetKind::Foreign && !out.force {
                    out.refuse(&format!(
                        "{} line {n} names another hook script ({v}); --force replaces the line (after a backup of the file)",
                        conf.display()
                    ));
                } else {
                    edit_vzdump_conf(out, &conf, &bin.display().to_string())?;
                }
            }
        }
        _ => {
            out.say("add the line:");
            out.cmd(&line);
            if out.apply {
                edit_vzdump_conf(out, &conf, &bin.display().to_string())?;
            }
        }
    }

    out.step("Scheduled backup jobs with a script of their own (Datacenter > Backup, /etc/pve/jobs.cfg) replace that line:");
    let jobs: Vec<(String, String)> = host
        .read(JOBS_CFG)
        .ok()
        .flatten()
        .map(|t| {
            sections(&t)
                .into_iter()
                .filter(|s| s.kind == "vzdump")
                .filter_map(|s| s.get("script").map(|v| (s.id.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    if jobs.is_empty() {
        out.say("none sets one: every backup job uses the line above");
    }
    for (id, script) in &jobs {
        if host.identify(Path::new(script), ADAPTER).kind == TargetKind::Installed {
            out.say(&format!("job {id} runs {script}: hookrun already"));
        } else {
            out.say(&format!(
                "job {id} runs {script} instead; to make it use hookrun (jobs.cfg is cluster-wide: hookrun never edits it):"
            ));
            out.cmd(&format!(
                "pvesh set /cluster/backup/{} --script {}",
                sh(id),
                sh(bin)
            ));
        }
    }

    out.step("Check:");
    out.cmd(&format!(
        "hookrun doctor --platform vzdump{}",
        out.root_arg()
    ));
    out.cmd(&format!(
        "hookrun list --phase backup-start --object <vmid> --hooks-dir {}",
        sh(&dir)
    ));
    Ok(())
}

/// Adds or replaces the effective `script:` line (the last one), keeping every other
/// byte, after copying the file to a backup. The new file replaces the old atomically
/// with the old one's mode and owner.
fn edit_vzdump_conf(out: &mut Out<'_>, conf: &Path, value: &str) -> anyhow::Result<()> {
    let real = out
        .host
        .resolve(&out.host.host_path(conf))
        .unwrap_or_else(|_| conf.to_owned());
    let old = match std::fs::read(&real) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", real.display())),
    };
    let new = set_script_line(old.as_deref().unwrap_or_default(), value);
    if old.as_deref() == Some(new.as_slice()) {
        out.same(&format!("{} already has 'script: {value}'", conf.display()));
        return Ok(());
    }
    let dir = real.parent().unwrap_or(Path::new("/"));
    let (mode, owner) = match std::fs::metadata(&real) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(_) => (0o644, None),
    };
    if old.is_some() {
        let backup = crate::install::backup_name(&real);
        std::fs::copy(&real, &backup).with_context(|| {
            format!("cannot back up {} to {}", real.display(), backup.display())
        })?;
        out.backed_up(&format!(
            "backed up {} to {}",
            real.display(),
            backup.display()
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".vzdump.conf.hookrun-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(&new)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write a temporary file in {}", dir.display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid));
    }
    tmp.persist(&real)
        .with_context(|| format!("cannot replace {}", real.display()))?;
    out.did(&format!(
        "{} {} 'script: {value}'",
        if old.is_some() { "wrote" } else { "created" },
        real.display()
    ));
    Ok(())
}

/// The text of vzdump.conf with its effective `script:` line set to `value`: the last
/// such line is replaced (keeping its line ending), or a line is appended.
pub(crate) fn set_script_line(old: &[u8], value: &str) -> Vec<u8> {
    let lines: Vec<&[u8]> = old.split_inclusive(|&b| b == b'\n').collect();
    let new_line = format!("script: {value}");
    let last = lines
        .iter()
        .rposition(|l| script_line_value(&String::from_utf8_lossy(l)).is_some());
    let mut out = Vec::with_capacity(old.len() + new_line.len() + 1);
    match last {
        Some(i) => {
            for (j, l) in lines.iter().enumerate() {
                if j == i {
                    let ending: &[u8] = if l.ends_with(b"\r\n") {
                        b"\r\n"
                    } else if l.ends_with(b"\n") {
                        b"\n"
                    } else {
                        b""
                    };
                    out.extend_from_slice(new_line.as_bytes());
                    out.extend_from_slice(ending);
                } else {
                    out.extend_from_slice(l);
                }
            }
        }
        None => {
            out.extend_from_slice(old);
            if !old.is_empty() && !old.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(new_line.as_bytes());
            out.push(b'\n');
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::set_script_line;

    #[test]
    fn script_line_is_replaced_or_appended_and_the_rest_kept() {
        let v = "/usr/bin/hookrun-vzdump";
        assert_eq!(
            set_script_line(b"tmpdir: /t\r\nscript: /old\r\n# x\n", v),
            b"tmpdir: /t\r\nscript: /usr/bin/hookrun-vzdump\r\n# x\n"
        );
        assert_eq!(
            set_script_line(b"#script: FILENAME\nbwlimit: 5", v),
            b"#script: FILENAME\nbwlimit: 5\nscript: /usr/bin/hookrun-vzdump\n"
        );
        assert_eq!(
            set_script_line(b"", v),
            b"script: /usr/bin/hookrun-vzdump\n"
        );
        // Two lines: vzdump uses the last; that one is replaced.
        assert_eq!(
            set_script_line(b"script: /a\nscript: /b", v),
            b"script: /a\nscript: /usr/bin/hookrun-vzdump"
        );
    }
}
