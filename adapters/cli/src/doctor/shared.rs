//! What all platforms share: the Checkmk agent and `gpg` the hooks need, the log and
//! lock directories.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hookrun_core::config::MkJobMode;

use super::report::{Section, Severity};
use super::{Doctor, shown};
use crate::host::{self, sh};

impl Doctor<'_> {
    pub(super) fn checkmk(&self, s: &mut Section) {
        let mut by_dir: BTreeMap<(bool, PathBuf), Vec<String>> = BTreeMap::new();
        for m in &self.mk_jobs {
            let name = m
                .hook
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            by_dir
                .entry((m.mode == MkJobMode::Native, m.dir.clone()))
                .or_default()
                .push(name);
        }
        for ((native, dir), hooks) in by_dir {
            let hooks = hooks.join(", ");
            if !native {
                match self.host.find_program("mk-job") {
                    Some(p) => s.ok("checkmk", format!("mk_job = \"external\": {} wraps {hooks}", shown(&p))),
                    None => s.fix(
                        Severity::Error,
                        "checkmk",
                        format!("mk_job = \"external\", but mk-job (Checkmk's agent) is not installed: {hooks} fail with exit 127"),
                        "apt install ./check-mk-agent_*.deb   # from your Checkmk site (Setup > Agents)",
                    ),
                }
                continue;
            }
            let agent = ["/usr/bin/check_mk_agent", "/usr/bin/mk-job"]
                .iter()
                .map(|p| self.host.path(p))
                .find(|p| p.exists());
            match agent {
                Some(a) => s.ok("checkmk", format!("agent installed ({})", shown(&a))),
                None => s.fix(
                    Severity::Warning,
                    "checkmk",
                    format!(
                        "no Checkmk agent (/usr/bin/check_mk_agent): nothing reads the job files of {hooks}"
                    ),
                    "apt install ./check-mk-agent_*.deb   # from your Checkmk site (Setup > Agents)",
                ),
            }
            if dir != self.host.path("/var/lib/check_mk_agent/job") {
                s.note(
                    "checkmk",
                    format!(
                        "mk_job_dir is {}; the agent reads $MK_VARDIR/job (/var/lib/check_mk_agent/job by default)",
                        shown(&dir)
                    ),
                );
            }
            // Dispatches run as root: their files go to <dir>/root/, and the agent reads
            // only the files in job/<user>/ that <user> owns.
            let user_dir = dir.join("root");
            let meta = match std::fs::metadata(&user_dir) {
                Ok(m) => m,
                Err(_) => {
                    s.note(
                        "checkmk",
                        format!(
                            "{} does not exist yet: the first run of {hooks} creates it (owner root, 0755)",
                            shown(&user_dir)
                        ),
                    );
                    continue;
                }
            };
            let mut problems = false;
            if meta.uid() != 0 {
                problems = true;
                s.fix(
                    Severity::Warning,
                    "checkmk",
                    format!(
                        "{} is owned by {}, not by root, the user it is named after: that user can replace or remove the job files of {hooks}",
                        shown(&user_dir),
                        host::user_label(meta.uid())
                    ),
                    format!("chown root:root {}", sh(&user_dir)),
                );
            }
            if meta.mode() & 0o022 != 0 {
                problems = true;
                s.fix(
                    Severity::Warning,
                    "checkmk",
                    format!(
                        "{} is writable by others than root: anyone there can fake job results",
                        shown(&user_dir)
                    ),
                    format!("chmod go-w {}", sh(&user_dir)),
                );
            }
            let mut foreign = Vec::new();
            let mut files = 0;
            if let Ok(rd) = std::fs::read_dir(&user_dir) {
                for item in rd.flatten() {
                    let Ok(m) = item.metadata() else { continue };
                    if !m.is_file() {
                        continue;
                    }
                    files += 1;
                    if m.uid() != 0 {
                        foreign.push(item.path());
                    }
                }
            }
            foreign.sort();
            if !foreign.is_empty() {
                problems = true;
                let names: Vec<String> = foreign.iter().map(sh).collect();
                s.fix(
                    Severity::Warning,
                    "checkmk",
                    format!(
                        "the agent reads only files owned by root in {}, so it ignores {}",
                        shown(&user_dir),
                        names.join(", ")
                    ),
                    format!("chown root {}", names.join(" ")),
                );
            }
            if !problems {
                s.ok(
                    "checkmk",
                    format!(
                        "{}: owned by root, {files} job file(s) the agent reads (hooks: {hooks})",
                        shown(&user_dir)
                    ),
                );
            }
        }
    }

    pub(super) fn gpg(&self, s: &mut Section) {
        let mut gpg_for = Vec::new();
        for c in &self.contrib {
            let name = c.hook.display().to_string();
            let found = if c.program.starts_with('/') {
                let p = self.host.path(&c.program);
                hookrun_core::discover::is_executable(&p).then_some(p)
            } else {
                self.host.find_program(&c.program)
            };
            if found.is_none() {
                s.fix(
                    Severity::Error,
                    "contrib",
                    format!(
                        "{name} runs {}, which is not installed: the hook fails",
                        c.program
                    ),
                    "apt install ./hookrun-contrib_*.deb",
                );
            }
            if c.needs_gpg {
                gpg_for.push(name);
            }
        }
        if gpg_for.is_empty() {
            return;
        }
        match self.host.find_program("gpg") {
            Some(p) => s.ok("gpg", format!("{} (for {})", shown(&p), gpg_for.join(", "))),
            None => s.fix(
                Severity::Error,
                "gpg",
                format!("gpg is not installed, but these hooks encrypt with it, so every copy fails: {}", gpg_for.join(", ")),
                "apt install gpg",
            ),
        }
    }
}

pub(super) fn check_log_dir(s: &mut Section, dir: &Path) {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            s.note(
                "log dir",
                format!(
                    "{} does not exist yet: the first run creates it (0750)",
                    shown(dir)
                ),
            );
            return;
        }
        Err(e) => {
            s.fix(
                Severity::Warning,
                "log dir",
                format!(
                    "cannot inspect {}: {e}; run records may not be written",
                    shown(dir)
                ),
                format!("ls -ld {}", sh(dir)),
            );
            return;
        }
    };
    if !meta.is_dir() {
        s.fix(
            Severity::Warning,
            "log dir",
            format!(
                "{} is not a directory: no run records or async logs are written (hooks still run)",
                shown(dir)
            ),
            format!("mv {0} {0}.old && install -d -m 0750 {0}", sh(dir)),
        );
        return;
    }
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        s.fix(
            Severity::Warning,
            "log dir",
            format!(
                "{} is not writable: no run records or async logs are written (hooks still run)",
                shown(dir)
            ),
            format!("chmod u+w {}", sh(dir)),
        );
    } else if meta.mode() & 0o002 != 0 {
        s.fix(
            Severity::Warning,
            "log dir",
            format!(
                "{} is writable by others: anyone can fake or remove run records",
                shown(dir)
            ),
            format!("chmod o-w {}", sh(dir)),
        );
    } else {
        s.ok(
            "log dir",
            format!("{}: {}, writable", shown(dir), host::mode_owner(&meta)),
        );
    }
    let records = dir.join(hookrun_core::record::RECORDS_FILE);
    match hookrun_core::record::read_records(&records) {
        Ok((recs, bad)) => {
            let mut msg = format!("{}: {} run record(s)", shown(&records), recs.len());
            if let Some(last) = recs.last() {
                let _ = write!(
                    msg,
                    "; the last: {} {} {} {} {}",
                    last.time,
                    last.platform,
                    last.phase,
                    last.hook,
                    last.outcome.as_str()
                );
            }
            s.ok("records", msg);
            if bad > 0 {
                s.note(
                    "records",
                    format!(
                        "{bad} line(s) of {} do not parse; hookrun log skips them",
                        shown(&records)
                    ),
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            s.note(
                "records",
                format!("{} does not exist yet: nothing has run", shown(&records)),
            );
        }
        Err(e) => s.fix(
            Severity::Warning,
            "records",
            format!("cannot read {}: {e}", shown(&records)),
            format!("chmod 0640 {}", sh(&records)),
        ),
    }
    for (entry, alive) in hookrun_core::supervise::running_entries(dir) {
        let r = &entry.record;
        let what = format!(
            "{} ({} {}{}) since {}",
            r.hook,
            r.platform,
            r.phase,
            r.object
                .as_deref()
                .map(|o| format!(" {o}"))
                .unwrap_or_default(),
            r.time
        );
        let log = hookrun_core::supervise::async_log_path(dir, &r.job);
        if alive {
            s.note(
                "async",
                format!("running: {what}, supervisor pid {}", entry.supervisor_pid),
            );
        } else {
            let marker = hookrun_core::supervise::running_dir(dir)
                .join(format!("{}.{}.json", r.run_id, r.job));
            s.fix(
                Severity::Warning,
                "async",
                format!(
                    "lost: {what}: its supervisor (pid {}) died without a record (killed, OOM, reboot); the end of {} shows how far it got, and 'hookrun log' lists it as lost until the marker is removed",
                    entry.supervisor_pid,
                    shown(&log)
                ),
                format!("rm {}", sh(&marker)),
            );
        }
    }
}

pub(super) fn check_lock_dir(s: &mut Section, dir: &Path) {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => s.note(
            "lock dir",
            format!(
                "{} does not exist (yet): created (0700) when a hook with '# lock:' first runs",
                shown(dir)
            ),
        ),
        Err(e) => s.fix(
            Severity::Warning,
            "lock dir",
            format!("cannot inspect {}: {e}", shown(dir)),
            format!("ls -ld {}", sh(dir)),
        ),
        Ok(m) if !m.is_dir() => s.fix(
            Severity::Error,
            "lock dir",
            format!(
                "{} is not a directory: hooks with '# lock:' are refused",
                shown(dir)
            ),
            format!("mv {0} {0}.old && install -d -m 0700 {0}", sh(dir)),
        ),
        Ok(_) if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() => s.fix(
            Severity::Error,
            "lock dir",
            format!(
                "{} is not writable: hooks with '# lock:' are refused",
                shown(dir)
            ),
            format!("chmod u+w {}", sh(dir)),
        ),
        Ok(m) if m.mode() & 0o022 != 0 => s.fix(
            Severity::Warning,
            "lock dir",
            format!(
                "{} is writable by others than its owner: they can hold hookrun's locks",
                shown(dir)
            ),
            format!("chmod go-w {}", sh(dir)),
        ),
        Ok(m) => s.ok(
            "lock dir",
            format!("{}: {}, writable", shown(dir), host::mode_owner(&m)),
        ),
    }
}
