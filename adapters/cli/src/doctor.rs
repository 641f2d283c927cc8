//! `hookrun doctor`: is this host wired to hookrun, and will the hooks run?
//!
//! For every platform (or the one asked for) it reports the wiring as the platform
//! sees it (vzdump's `script`, the guests' `hookscript`, `/etc/libvirt/hooks/<driver>`
//! and whether the daemon that owns the driver has noticed it, cron lines for workers),
//! the hooks directory and its permissions, and every hook's state — the same judgement
//! a dispatch makes (discovery, header, permission checks) plus `hookrun lint`'s. Then
//! what all platforms share: the configuration file, the adapter binaries, the log and
//! lock directories (records readable, async runs lost), the Checkmk job directory and
//! `gpg` when hooks need them.
//!
//! Each finding has a severity — ok, note, warning, error — and warnings and errors
//! carry the command that fixes them. Exit 1 when there is an error (something is broken:
//! a backup, a guest start or a hook will fail), else 0. Every host path is resolved
//! under `--root` (see `host.rs`), so the test suite runs it against fake host trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hookrun_core::config::{Config, MkJobMode};
use hookrun_core::discover::{self, Entry, EntryState};
use hookrun_core::lint::{self, lint_bytes};
use hookrun_core::{Mode, Settings};

use crate::cli::DoctorArgs;
use crate::host::{self, GuestKind, Host, Target, TargetKind, sh};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub subject: String,
    pub message: String,
    pub fix: Option<String>,
}

/// The findings of one platform (or of `hookrun` itself: what all platforms share).
#[derive(Debug)]
struct Section {
    name: String,
    in_use: bool,
    findings: Vec<Finding>,
}

impl Section {
    fn new(name: &str) -> Section {
        Section {
            name: name.to_owned(),
            in_use: true,
            findings: Vec::new(),
        }
    }

    fn add(&mut self, severity: Severity, subject: &str, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            subject: subject.to_owned(),
            message: message.into(),
            fix: None,
        });
    }

    fn fix(
        &mut self,
        severity: Severity,
        subject: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            subject: subject.to_owned(),
            message: message.into(),
            fix: Some(fix.into()),
        });
    }

    fn ok(&mut self, subject: &str, message: impl Into<String>) {
        self.add(Severity::Ok, subject, message);
    }

    fn note(&mut self, subject: &str, message: impl Into<String>) {
        self.add(Severity::Note, subject, message);
    }
}

/// A hook with `# mk-job` that would run, and the settings it runs with.
struct MkJobUse {
    hook: PathBuf,
    mode: MkJobMode,
    dir: PathBuf,
}

/// A hook that runs a contrib tool.
struct ContribUse {
    hook: PathBuf,
    program: String,
    needs_gpg: bool,
}

struct Doctor<'a> {
    host: &'a Host,
    /// `None` when the configuration file does not parse (the defaults are used below).
    config: Config,
    config_ok: bool,
    mk_jobs: Vec<MkJobUse>,
    contrib: Vec<ContribUse>,
    /// Log and lock directories of the platforms in use.
    dirs: BTreeSet<(PathBuf, PathBuf)>,
    /// The running libvirt daemons, looked up once (`None`: `ROOT/proc` unreadable).
    daemons: std::cell::OnceCell<Option<Vec<host::Daemon>>>,
}

const LIBVIRT_ORDER: &[&str] = &["qemu", "lxc", "network", "daemon", "libxl", "bhyve"];

pub fn main(args: &DoctorArgs) -> anyhow::Result<i32> {
    let host = Host::new(&args.host)?;
    let wanted = selection(&host, args.platform.as_deref())?;
    let (config, config_error) = match host.load_config() {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e)),
    };
    let mut doc = Doctor {
        host: &host,
        config,
        config_ok: config_error.is_none(),
        mk_jobs: Vec::new(),
        contrib: Vec::new(),
        dirs: BTreeSet::new(),
        daemons: std::cell::OnceCell::new(),
    };
    let mut sections = Vec::new();
    for name in &wanted {
        let s = match name.as_str() {
            "vzdump" => doc.vzdump(),
            "pve-guest" => doc.pve_guest(),
            "worker" => doc.worker(),
            n => match n.strip_prefix("libvirt-") {
                Some(d) if hookrun_libvirt::DRIVERS.contains(&d) => doc.libvirt(d),
                _ => doc.generic(n),
            },
        };
        sections.push(s);
    }
    let general = doc.general(config_error.as_ref(), args.platform.is_none());
    sections.insert(0, general);

    let errors = count(&sections, Severity::Error);
    let warnings = count(&sections, Severity::Warning);
    if args.json {
        println!("{}", json(&host, &sections, errors, warnings));
    } else {
        print!("{}", text(&host, &sections, errors, warnings));
    }
    Ok(i32::from(errors > 0))
}

fn count(sections: &[Section], sev: Severity) -> usize {
    sections
        .iter()
        .flat_map(|s| &s.findings)
        .filter(|f| f.severity == sev)
        .count()
}

/// The platforms to check, in report order.
fn selection(host: &Host, platform: Option<&str>) -> anyhow::Result<Vec<String>> {
    let libvirt = || LIBVIRT_ORDER.iter().map(|d| format!("libvirt-{d}"));
    let Some(p) = platform else {
        let mut all: Vec<String> = ["vzdump", "pve-guest"].map(String::from).to_vec();
        all.extend(libvirt());
        all.push("worker".into());
        all.extend(generic_platforms(host));
        return Ok(all);
    };
    Ok(match p {
        "vzdump" | "pve-guest" | "worker" => vec![p.to_owned()],
        "libvirt" => libvirt().collect(),
        _ => {
            if let Some(d) = p.strip_prefix("libvirt-")
                && !hookrun_libvirt::DRIVERS.contains(&d)
            {
                return Err(crate::Exit::error(
                    crate::EXIT_USAGE,
                    format!(
                        "unknown libvirt driver '{d}'; libvirt has hooks for: {}",
                        hookrun_libvirt::DRIVERS.join(", ")
                    ),
                ));
            }
            crate::platforms::validate_name(p)?;
            vec![p.to_owned()]
        }
    })
}

fn is_known_platform(name: &str) -> bool {
    matches!(name, "vzdump" | "pve-guest" | "worker")
        || name
            .strip_prefix("libvirt-")
            .is_some_and(|d| hookrun_libvirt::DRIVERS.contains(&d))
}

/// Platforms of `hookrun run`: `[name]` tables of the configuration and
/// `/etc/hookrun/<name>.d` directories that no adapter owns.
fn generic_platforms(host: &Host) -> Vec<String> {
    let mut names = BTreeSet::new();
    if let Ok(c) = host.load_config() {
        names.extend(c.platform_names().map(str::to_owned));
    }
    if let Ok(rd) = std::fs::read_dir(host.path("/etc/hookrun")) {
        for item in rd.flatten() {
            if let Some(n) = item.file_name().to_str().and_then(|n| n.strip_suffix(".d"))
                && item.path().is_dir()
            {
                names.insert(n.to_owned());
            }
        }
    }
    names
        .into_iter()
        .filter(|n| !is_known_platform(n) && crate::platforms::validate_name(n).is_ok())
        .collect()
}

/// Splits a core message ending in `...: chmod go-w DIR` into the message and the fix.
fn split_fix(msg: &str) -> (String, Option<String>) {
    for (i, _) in msg.rmatch_indices(": ") {
        let rest = &msg[i + 2..];
        if ["chmod ", "chown ", "mkdir "]
            .iter()
            .any(|p| rest.starts_with(p))
        {
            return (msg[..i].to_owned(), Some(rest.to_owned()));
        }
    }
    (msg.to_owned(), None)
}

fn install_d(dir: &Path) -> String {
    format!("install -d -m 0755 {}", sh(dir))
}

fn editor(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("editor +{l} {}", sh(path)),
        None => format!("editor {}", sh(path)),
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

impl Doctor<'_> {
    fn settings(&self, platform: &str) -> Settings {
        self.host.settings(&self.config, platform)
    }

    fn defaults_note(&self, s: &mut Section) {
        if !self.config_ok {
            s.note(
                "config",
                "the configuration file does not parse (see above): the defaults are assumed below",
            );
        }
    }

    /// What to print for a wiring that resolves to `target`.
    fn describe_target(&self, t: &Target, adapter: &str) -> String {
        let installed = shown(&self.host.adapter(adapter));
        match &t.kind {
            TargetKind::Installed => format!("the installed {adapter} ({installed})"),
            TargetKind::Copy => format!("a copy of the installed {adapter} ({installed})"),
            TargetKind::OtherHookrun => format!(
                "{}, a {adapter} that is not the installed one ({installed})",
                t.resolved.as_deref().map(shown).unwrap_or_default()
            ),
            TargetKind::Foreign => format!(
                "{}, which is not hookrun",
                t.resolved.as_deref().map(shown).unwrap_or_default()
            ),
            TargetKind::Missing => "nothing: it does not exist".into(),
            TargetKind::Broken(why) => format!("nothing usable: {why}"),
        }
    }

    /// Why a wiring that leads nowhere is broken.
    fn problem(t: &Target) -> String {
        match &t.kind {
            TargetKind::Broken(why) => format!("is unusable ({why})"),
            _ => "does not exist".into(),
        }
    }

    /// The hooks directory a dispatch through `invoked` (a host path) uses: `hooks.d`
    /// beside it when that exists, else `hooks_dir` from the config, else `default`.
    fn hooks_dir_beside(
        &self,
        invoked: Option<&Path>,
        settings: &Settings,
        default: &str,
    ) -> PathBuf {
        if let Some(parent) = invoked.and_then(Path::parent) {
            let beside = self.host.path(parent.join("hooks.d"));
            if beside.is_dir() {
                return beside;
            }
        }
        settings
            .hooks_dir
            .clone()
            .unwrap_or_else(|| self.host.path(default))
    }

    // -----------------------------------------------------------------------------------
    // vzdump
    // -----------------------------------------------------------------------------------

    fn vzdump(&mut self) -> Section {
        let mut s = Section::new("vzdump");
        let settings = self.settings("vzdump");
        let conf = self.host.path(host::VZDUMP_CONF);
        let adapter = "hookrun-vzdump";
        let want = self.host.adapter(adapter);
        // (where it is configured, value, target, fix)
        struct Wiring {
            place: String,
            script: String,
            target: Target,
            fix: String,
            force_fix: String,
        }
        let mut wirings = Vec::new();
        let mut global = false;
        match self.host.read(host::VZDUMP_CONF) {
            Ok(Some(text)) => {
                if let Some((line, script)) = host::vzdump_script(&text) {
                    global = true;
                    wirings.push(Wiring {
                        place: format!("{}:{line}", shown(&conf)),
                        target: self.host.identify(Path::new(&script), adapter),
                        script,
                        fix: self.install_cmd("vzdump", false),
                        force_fix: self.install_cmd("vzdump", true),
                    });
                }
            }
            Ok(None) => {}
            Err(e) => s.fix(
                Severity::Error,
                "wiring",
                format!("cannot read {}: {e}", shown(&conf)),
                format!("chmod 0644 {}", sh(&conf)),
            ),
        }
        let jobs_cfg = self.host.path(host::JOBS_CFG);
        let mut jobs_without_script = Vec::new();
        if let Ok(Some(text)) = self.host.read(host::JOBS_CFG) {
            for job in host::sections(&text)
                .into_iter()
                .filter(|j| j.kind == "vzdump")
            {
                match job.get("script") {
                    Some(script) => {
                        let fix = format!(
                            "pvesh set /cluster/backup/{} --script {}",
                            sh(&job.id),
                            sh(&want)
                        );
                        wirings.push(Wiring {
                            place: format!(
                                "backup job {} ({}:{})",
                                job.id,
                                shown(&jobs_cfg),
                                job.line
                            ),
                            target: self.host.identify(Path::new(script), adapter),
                            script: script.to_owned(),
                            force_fix: fix.clone(),
                            fix,
                        });
                    }
                    None => jobs_without_script.push(job.id),
                }
            }
        }

        let mut hooks_dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        let mut foreign = Vec::new();
        for w in &wirings {
            let what = format!("{}: script {}", w.place, w.script);
            let target = &w.target;
            match &target.kind {
                TargetKind::Missing | TargetKind::Broken(_) => s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "{what} {}: vzdump fails every backup it runs (\"The hook script '{}' does not exist\")",
                        Self::problem(target),
                        w.script
                    ),
                    w.fix.clone(),
                ),
                _ if !target.executable => s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "{what} is not executable: vzdump fails every backup it runs (\"The hook script '{}' is not executable\")",
                        w.script
                    ),
                    format!(
                        "chmod 0755 {}",
                        sh(target.resolved.as_deref().unwrap_or(Path::new(&w.script)))
                    ),
                ),
                TargetKind::Installed => s.ok("wiring", format!("{what} → {}", self.describe_target(target, adapter))),
                TargetKind::Copy => s.note(
                    "wiring",
                    format!(
                        "{what} → {}; a copy must be replaced after every upgrade (a symlink follows it)",
                        self.describe_target(target, adapter)
                    ),
                ),
                TargetKind::OtherHookrun => s.fix(
                    Severity::Warning,
                    "wiring",
                    format!("{what} → {}: an older copy?", self.describe_target(target, adapter)),
                    w.fix.clone(),
                ),
                TargetKind::Foreign => foreign.push(w),
            }
            if target.is_hookrun()
                || (matches!(target.kind, TargetKind::Missing) && w.script.contains("hookrun"))
            {
                let dir = self.hooks_dir_beside(
                    Some(Path::new(&w.script)),
                    &settings,
                    hookrun_vzdump::DEFAULT_HOOKS_DIR,
                );
                hooks_dirs.entry(dir).or_default().push(w.place.clone());
            }
        }
        let wired_jobs_note = !jobs_without_script.is_empty() && global;
        let default_dir = self.hooks_dir_beside(None, &settings, hookrun_vzdump::DEFAULT_HOOKS_DIR);
        let wired = wirings.iter().any(|w| w.target.is_hookrun());
        s.in_use = wired || !hooks_dirs.is_empty() || default_dir.exists();
        if !s.in_use {
            let why = match foreign.first() {
                Some(w) => format!("vzdump calls {}, which is not hookrun", w.script),
                None if conf.exists() => format!("{} has no script line", shown(&conf)),
                None => format!("not a Proxmox VE node (no {})", shown(&conf)),
            };
            s.fix(
                Severity::Note,
                "wiring",
                format!(
                    "not in use: {why}; no hooks directory {}",
                    shown(&default_dir)
                ),
                self.install_cmd("vzdump", false),
            );
            return s;
        }
        for w in foreign {
            s.fix(
                Severity::Warning,
                "wiring",
                format!(
                    "{}: script {} → {}: for those backups vzdump runs it instead of hookrun, so hookrun's hooks do not run (keep the old script as a hook: copy it into the hooks directory and add '# mode: sync' and '# phases: *')",
                    w.place,
                    w.script,
                    self.describe_target(&w.target, adapter)
                ),
                w.force_fix.clone(),
            );
        }
        if !wired {
            s.fix(
                Severity::Warning,
                "wiring",
                format!(
                    "not wired: vzdump does not call hookrun-vzdump, so the hooks in {} never run",
                    shown(&default_dir)
                ),
                self.install_cmd("vzdump", false),
            );
        } else if wired_jobs_note {
            s.note(
                "wiring",
                format!(
                    "scheduled backup jobs without a script of their own use {}'s: {}",
                    shown(&conf),
                    jobs_without_script.join(", ")
                ),
            );
        }
        if !global && wired {
            s.note(
                "wiring",
                format!(
                    "{} has no script line: backups outside the jobs above (manual runs, other jobs) do not call hookrun",
                    shown(&conf)
                ),
            );
        }
        self.defaults_note(&mut s);
        if hooks_dirs.is_empty() {
            hooks_dirs.insert(default_dir, Vec::new());
        }
        for (dir, users) in hooks_dirs {
            let missing = (!users.is_empty()).then(|| {
                (
                    Severity::Error,
                    "every backup vzdump runs through it fails at job-init (exit 78)".to_owned(),
                )
            });
            self.check_hooks_dir(&mut s, "vzdump", &dir, &settings, missing);
        }
        self.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }

    fn install_cmd(&self, platform: &str, force: bool) -> String {
        let mut cmd = format!("hookrun install {platform} --apply");
        if force {
            cmd.push_str(" --force");
        }
        if !self.host.is_real() {
            let _ = write!(cmd, " --root {}", sh(&self.host.root));
        }
        cmd
    }

    // -----------------------------------------------------------------------------------
    // Proxmox guests
    // -----------------------------------------------------------------------------------

    fn pve_guest(&mut self) -> Section {
        let mut s = Section::new("pve-guest");
        let settings = self.settings("pve-guest");
        let adapter = "hookrun-pve-guest";
        let storages = host::storages(self.host);
        let guests = host::guests(self.host);
        let want = self.host.adapter(adapter);
        // snippet host path -> (volid, guests using it, target)
        // A snippet: its volume id, the guests using it, what it leads to.
        type Snippet = (String, Vec<(GuestKind, u32)>, Target);
        let mut snippets: BTreeMap<PathBuf, Snippet> = BTreeMap::new();
        let mut broken = Vec::new();
        let mut foreign = Vec::new();
        for g in &guests {
            let Some(volid) = &g.hookscript else {
                continue;
            };
            match host::snippet_path(&storages, volid) {
                Ok(path) => {
                    let target = self.host.identify(&path, adapter);
                    snippets
                        .entry(path)
                        .or_insert_with(|| (volid.clone(), Vec::new(), target))
                        .1
                        .push((g.kind, g.vmid));
                }
                Err(why) => broken.push((g, volid.clone(), why)),
            }
        }
        // hookrun snippets nobody uses (yet): after `hookrun install pve-guest --apply`.
        for st in &storages {
            let Some(dir) = st.snippets_dir() else {
                continue;
            };
            let Ok(rd) = std::fs::read_dir(self.host.path(&dir)) else {
                continue;
            };
            for item in rd.flatten() {
                let path = dir.join(item.file_name());
                if snippets.contains_key(&path) || item.path().is_dir() {
                    continue;
                }
                let target = self.host.identify(&path, adapter);
                if target.is_hookrun() {
                    let volid =
                        format!("{}:snippets/{}", st.id, item.file_name().to_string_lossy());
                    snippets.insert(path, (volid, Vec::new(), target));
                }
            }
        }

        let mut hooks_dirs: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        let mut used = false;
        for (path, (volid, users, target)) in &snippets {
            let real = self.host.path(path);
            let labels: Vec<String> = users
                .iter()
                .map(|(k, id)| format!("{} {id}", k.label()))
                .collect();
            let who = if users.is_empty() {
                "no guest uses it yet".to_owned()
            } else {
                format!("used by {}", labels.join(", "))
            };
            let what = format!("{volid} ({}), {who}", shown(&real));
            let is_ours = target.is_hookrun()
                || volid.contains("hookrun")
                || std::fs::read_link(&real).is_ok_and(|t| t.ends_with(adapter));
            if !is_ours && matches!(target.kind, TargetKind::Foreign) {
                if !users.is_empty() {
                    foreign.push(format!("{} ({volid})", labels.join(", ")));
                }
                continue;
            }
            if is_ours && !users.is_empty() {
                used = true;
            }
            let vmids: Vec<String> = users.iter().map(|(_, id)| id.to_string()).collect();
            // A snippet that is not hookrun's and is gone: restore it, or unset it.
            let unset = users
                .iter()
                .map(|(k, id)| format!("{} set {id} --delete hookscript", k.tool()))
                .collect::<Vec<_>>()
                .join(" && ");
            let relink = if is_ours || unset.is_empty() {
                format!("ln -sfn {} {}", sh(&want), sh(&real))
            } else {
                unset
            };
            match &target.kind {
                TargetKind::Missing | TargetKind::Broken(_) => {
                    let storage = volid.split(':').next().unwrap_or_default();
                    let mounted = storages
                        .iter()
                        .find(|st| st.id == storage && st.is_network())
                        .map(|st| {
                            format!(
                                " ({} is a {} storage: is it mounted?)",
                                st.id, st.kind
                            )
                        })
                        .unwrap_or_default();
                    let consequence = if users.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": Proxmox checks it before every start and refuses to start {}",
                            labels.join(", ")
                        )
                    };
                    s.fix(
                        Severity::Error,
                        "wiring",
                        format!("{what}: the snippet {}{consequence}{mounted}", Self::problem(target)),
                        relink,
                    );
                }
                _ if !target.executable => s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "{what}: the snippet is not executable: Proxmox refuses to start {}",
                        if labels.is_empty() { "guests that use it".to_owned() } else { labels.join(", ") }
                    ),
                    format!("chmod 0755 {}", sh(target.resolved.as_deref().unwrap_or(&real))),
                ),
                TargetKind::Installed => s.ok("wiring", format!("{what} → {}", self.describe_target(target, adapter))),
                TargetKind::Copy => s.note(
                    "wiring",
                    format!(
                        "{what} → {}; a copy must be replaced after every upgrade (a symlink follows it)",
                        self.describe_target(target, adapter)
                    ),
                ),
                TargetKind::OtherHookrun | TargetKind::Foreign => s.fix(
                    Severity::Warning,
                    "wiring",
                    format!("{what} → {}", self.describe_target(target, adapter)),
                    format!("ln -sfn {} {}", sh(&want), sh(&real)),
                ),
            }
            if is_ours {
                let dir = self.hooks_dir_beside(
                    Some(path),
                    &settings,
                    hookrun_pve_guest::DEFAULT_HOOKS_DIR,
                );
                hooks_dirs.entry(dir).or_default().extend(vmids);
            }
        }
        for (g, volid, why) in &broken {
            s.fix(
                Severity::Error,
                "wiring",
                format!(
                    "{} {}: hookscript {volid}: {why}: Proxmox refuses to start it",
                    g.kind.label(),
                    g.vmid
                ),
                format!("{} set {} --delete hookscript", g.kind.tool(), g.vmid),
            );
        }
        let default_dir =
            self.hooks_dir_beside(None, &settings, hookrun_pve_guest::DEFAULT_HOOKS_DIR);
        s.in_use = !snippets.is_empty() || !hooks_dirs.is_empty() || default_dir.exists();
        if !s.in_use {
            let why = if self.host.path("/etc/pve").exists() {
                "no guest's hookscript is hookrun, and there is no hookrun snippet".to_owned()
            } else {
                "not a Proxmox VE node (no /etc/pve)".to_owned()
            };
            s.fix(
                Severity::Note,
                "wiring",
                format!(
                    "not in use: {why}; no hooks directory {}",
                    shown(&default_dir)
                ),
                "hookrun install pve-guest".to_owned(),
            );
            return s;
        }
        if !foreign.is_empty() {
            s.note(
                "wiring",
                format!(
                    "guests with a hookscript that is not hookrun: {}",
                    foreign.join(", ")
                ),
            );
        }
        if !used {
            let snippet = snippets.values().next().map_or_else(
                || format!("local:snippets/{}", host::SNIPPET_NAME),
                |v| v.0.clone(),
            );
            s.fix(
                Severity::Warning,
                "wiring",
                "no guest's hookscript is a hookrun snippet, so no hooks run for guests (set it for each guest that should have hooks; qm for VMs, pct for containers)",
                format!("qm set <vmid> --hookscript {snippet}"),
            );
        }
        self.defaults_note(&mut s);
        if hooks_dirs.is_empty() {
            hooks_dirs.insert(default_dir, Vec::new());
        }
        for (dir, vmids) in hooks_dirs {
            let missing = (!vmids.is_empty()).then(|| {
                (
                    Severity::Error,
                    format!(
                        "pre-start exits 78, so Proxmox refuses to start guest(s) {}",
                        vmids.join(", ")
                    ),
                )
            });
            self.check_hooks_dir(&mut s, "pve-guest", &dir, &settings, missing);
        }
        self.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }

    // -----------------------------------------------------------------------------------
    // libvirt
    // -----------------------------------------------------------------------------------

    fn libvirt(&mut self, driver: &str) -> Section {
        let platform = hookrun_libvirt::platform(driver);
        let mut s = Section::new(&platform);
        let settings = self.settings(&platform);
        let adapter = "hookrun-libvirt";
        let want = self.host.adapter(adapter);
        let link_host = Path::new(host::LIBVIRT_HOOKS_DIR).join(driver);
        let link = self.host.path(&link_host);
        let link_exists = std::fs::symlink_metadata(&link).is_ok();
        let target = self.host.identify(&link_host, adapter);
        let dotd_host = Path::new(host::LIBVIRT_HOOKS_DIR).join(format!("{driver}.d"));
        let dotd = self.host.path(&dotd_host);
        // libvirt runs every executable regular file in <driver>.d itself.
        let mut dotd_hookrun = Vec::new();
        let mut dotd_foreign = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dotd) {
            let mut names: Vec<_> = rd.flatten().map(|i| i.file_name()).collect();
            names.sort();
            for name in names {
                let h = dotd_host.join(&name);
                let t = self.host.identify(&h, adapter);
                if !t.executable {
                    continue;
                }
                if t.is_hookrun() {
                    dotd_hookrun.push(self.host.path(&h));
                } else {
                    dotd_foreign.push(name.to_string_lossy().into_owned());
                }
            }
        }
        let wired_main = link_exists && target.is_hookrun();
        let dangling =
            link_exists && matches!(target.kind, TargetKind::Missing | TargetKind::Broken(_));
        let hooks_dir = settings
            .hooks_dir
            .clone()
            .unwrap_or_else(|| self.host.path(format!("/etc/hookrun/{platform}.d")));
        let wired = wired_main || !dotd_hookrun.is_empty() || dangling;
        s.in_use = wired || hooks_dir.exists();
        let restart = format!("systemctl restart {}", self.owner_names(driver).join(" "));
        if !s.in_use {
            let mut why = if link_exists {
                format!("{} is another script, not hookrun", shown(&link))
            } else {
                format!("no {}", shown(&link))
            };
            if !self.host.path("/etc/libvirt").exists() {
                why = "libvirt is not installed (no /etc/libvirt)".into();
            }
            s.fix(
                Severity::Note,
                "wiring",
                format!(
                    "not in use: {why}; no hooks directory {}",
                    shown(&hooks_dir)
                ),
                format!("hookrun install libvirt --driver {driver}"),
            );
            return s;
        }
        let link_fix = format!("ln -sfn {} {}", sh(&want), sh(&link));
        if link_exists {
            let what = if target.resolved.as_deref() == Some(link.as_path()) {
                format!("{} is a script of its own", shown(&link))
            } else {
                format!(
                    "{} → {}",
                    shown(&link),
                    self.describe_target(&target, adapter)
                )
            };
            match &target.kind {
                TargetKind::Missing | TargetKind::Broken(_) => s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "{} (→ {}) {}: libvirt ignores it, so no hook runs for {driver}",
                        shown(&link),
                        std::fs::read_link(&link).map(|t| t.display().to_string()).unwrap_or_default(),
                        Self::problem(&target)
                    ),
                    link_fix.clone(),
                ),
                _ if !target.executable => s.fix(
                    Severity::Error,
                    "wiring",
                    format!("{what} is not executable: libvirt ignores it, so no hook runs for {driver}"),
                    format!("chmod 0755 {}", sh(target.resolved.as_deref().unwrap_or(&link))),
                ),
                TargetKind::Installed => s.ok("wiring", what),
                TargetKind::Copy => s.note(
                    "wiring",
                    format!("{what}; a copy must be replaced after every upgrade (a symlink follows it)"),
                ),
                TargetKind::OtherHookrun => s.fix(Severity::Warning, "wiring", what, link_fix.clone()),
                TargetKind::Foreign => s.fix(
                    Severity::Warning,
                    "wiring",
                    format!(
                        "{what}: libvirt runs that script, and the hooks in {} never run (to keep it, move it to {}/50-legacy and add '# mode: sync' and '# phases: *' below its #! line; --force keeps a backup)",
                        shown(&hooks_dir),
                        shown(&hooks_dir)
                    ),
                    format!("hookrun install libvirt --driver {driver} --apply --force{}", self.root_arg()),
                ),
            }
        } else if dotd_hookrun.is_empty() {
            s.fix(
                Severity::Warning,
                "wiring",
                format!(
                    "not wired: there is no {}, so the hooks in {} never run",
                    shown(&link),
                    shown(&hooks_dir)
                ),
                format!(
                    "hookrun install libvirt --driver {driver} --apply{}",
                    self.root_arg()
                ),
            );
        }
        for d in &dotd_hookrun {
            if wired_main {
                s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "{} is hookrun too: libvirt calls both it and {}, so every hook runs twice",
                        shown(d),
                        shown(&link)
                    ),
                    format!("rm {}", sh(d)),
                );
            } else {
                s.ok(
                    "wiring",
                    format!("{} → hookrun-libvirt (from libvirt's {driver}.d)", shown(d)),
                );
            }
        }
        if !dotd_foreign.is_empty() {
            s.note(
                "wiring",
                format!(
                    "libvirt itself runs these files in {} for every {driver} event, after {}; hookrun does not manage them: {}",
                    shown(&dotd),
                    shown(&link),
                    dotd_foreign.join(", ")
                ),
            );
        }
        if wired_main || !dotd_hookrun.is_empty() {
            let since = if wired_main {
                host::created(&link)
            } else {
                dotd_hookrun.iter().filter_map(|d| host::created(d)).max()
            };
            self.daemon_check(&mut s, driver, since, &restart);
        }
        if !self.host.path("/etc/libvirt").exists() {
            s.note(
                "wiring",
                "libvirt does not seem to be installed (no /etc/libvirt)",
            );
        }
        self.defaults_note(&mut s);
        let missing = wired.then(|| {
            (
                Severity::Error,
                format!(
                    "the {driver} operations libvirt lets a hook abort (e.g. a VM's prepare/start) fail with exit 78"
                ),
            )
        });
        self.check_hooks_dir(&mut s, &platform, &hooks_dir, &settings, missing);
        self.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }

    fn root_arg(&self) -> String {
        if self.host.is_real() {
            String::new()
        } else {
            format!(" --root {}", sh(&self.host.root))
        }
    }

    /// The daemons that would run `driver`'s hook, by name (running ones first).
    fn daemons(&self) -> Option<&[host::Daemon]> {
        self.daemons
            .get_or_init(|| host::libvirt_daemons(self.host))
            .as_deref()
    }

    fn owner_names(&self, driver: &str) -> Vec<String> {
        if let Some(running) = self.daemons() {
            let owners = owners(running, driver);
            if !owners.is_empty() {
                let mut names: Vec<String> = owners.iter().map(|d| d.name.clone()).collect();
                names.dedup();
                return names;
            }
        }
        vec!["libvirtd".into()]
    }

    /// Whether the daemons owning `driver` started after the hook appeared (A5: libvirt
    /// looks for hook scripts at start and on SIGHUP only).
    fn daemon_check(
        &self,
        s: &mut Section,
        driver: &str,
        since: Option<SystemTime>,
        restart: &str,
    ) {
        let modular = host::modular_daemon(driver)
            .map(|m| format!("libvirtd or {m}"))
            .unwrap_or_else(|| "every libvirt daemon".into());
        let Some(running) = self.daemons() else {
            s.fix(
                Severity::Note,
                "daemon",
                format!(
                    "cannot see the running processes ({} is not readable{}): libvirt looks for hook scripts only when its daemon starts or gets SIGHUP, so restart the daemon that owns {driver} ({modular}) if you added the link since it started",
                    shown(&self.host.path("/proc")),
                    if self.host.is_real() { "" } else { "; process detection is skipped for this --root" }
                ),
                restart.to_owned(),
            );
            return;
        };
        let owners = owners(running, driver);
        if owners.is_empty() {
            s.note(
                "daemon",
                format!("no daemon owning the {driver} driver ({modular}) is running: it finds the hook when it starts"),
            );
            return;
        }
        for d in owners {
            let fix = format!("systemctl restart {}", d.name);
            match (d.started, since) {
                (Some(started), Some(link)) if link > started => s.fix(
                    Severity::Warning,
                    "daemon",
                    format!(
                        "{} (pid {}) started at {}, before the hook appeared ({}): it does not call the hook until it is restarted or gets SIGHUP",
                        d.name,
                        d.pid,
                        hookrun_core::time::rfc3339(started),
                        hookrun_core::time::rfc3339(link)
                    ),
                    fix,
                ),
                (Some(started), Some(_)) => s.ok(
                    "daemon",
                    format!(
                        "{} (pid {}) started at {}, after the hook appeared: it calls it",
                        d.name,
                        d.pid,
                        hookrun_core::time::rfc3339(started)
                    ),
                ),
                _ => s.fix(
                    Severity::Note,
                    "daemon",
                    format!(
                        "{} (pid {}) is running; cannot tell when it started: restart it if you added the hook since it started",
                        d.name, d.pid
                    ),
                    fix,
                ),
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // workers and other tools
    // -----------------------------------------------------------------------------------

    fn worker(&mut self) -> Section {
        let mut s = Section::new("worker");
        let settings = self.settings("worker");
        let container = self.host.path(hookrun_worker::CONTAINER_HOOKS_DIR);
        let dir = settings.hooks_dir.clone().unwrap_or_else(|| {
            if container.is_dir() {
                container.clone()
            } else {
                self.host.path(hookrun_worker::DEFAULT_HOOKS_DIR)
            }
        });
        let cron = self.cron_lines();
        s.in_use = !cron.is_empty() || dir.exists();
        if !s.in_use {
            s.fix(
                Severity::Note,
                "wiring",
                format!(
                    "not in use: no cron line runs hookrun-worker; no hooks directory {}",
                    shown(&dir)
                ),
                "hookrun install worker",
            );
            return s;
        }
        for (file, line, text) in &cron {
            let place = format!("{}:{line}", shown(file));
            let program = text
                .split_whitespace()
                .find(|w| w.ends_with("hookrun-worker"))
                .unwrap_or("hookrun-worker");
            let t = if program.starts_with('/') {
                Some(self.host.identify(Path::new(program), "hookrun-worker"))
            } else {
                None
            };
            match t {
                Some(t) if !t.executable => s.fix(
                    Severity::Error,
                    "wiring",
                    format!(
                        "cron {place}: {program} leads to {}: the job fails",
                        self.describe_target(&t, "hookrun-worker")
                    ),
                    editor(file, Some(*line)),
                ),
                _ => s.ok("wiring", format!("cron {place}: {}", text.trim())),
            }
        }
        s.note(
            "wiring",
            "containers: mount the hooks at /hooks (read-only); doctor cannot see containers",
        );
        self.defaults_note(&mut s);
        self.check_hooks_dir(&mut s, "worker", &dir, &settings, None);
        self.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }

    /// Lines of the system crontabs that run hookrun-worker: (file, line, text).
    fn cron_lines(&self) -> Vec<(PathBuf, usize, String)> {
        let mut files = vec![self.host.path("/etc/crontab")];
        for d in ["/etc/cron.d", "/var/spool/cron/crontabs"] {
            if let Ok(rd) = std::fs::read_dir(self.host.path(d)) {
                let mut more: Vec<PathBuf> = rd.flatten().map(|i| i.path()).collect();
                more.sort();
                files.extend(more);
            }
        }
        let mut out = Vec::new();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            for (i, l) in text.lines().enumerate() {
                if !l.trim_start().starts_with('#') && l.contains("hookrun-worker") {
                    out.push((f.clone(), i + 1, l.to_owned()));
                }
            }
        }
        out
    }

    fn generic(&mut self, name: &str) -> Section {
        let mut s = Section::new(name);
        let settings = self.settings(name);
        let dir = settings
            .hooks_dir
            .clone()
            .unwrap_or_else(|| self.host.path(format!("/etc/hookrun/{name}.d")));
        let has_table = self.config.platform_names().any(|p| p == name);
        s.in_use = dir.exists() || has_table;
        if !s.in_use {
            s.note(
                "wiring",
                format!(
                    "not in use: no hooks directory {} and no [{name}] table in the configuration",
                    shown(&dir)
                ),
            );
            return s;
        }
        s.note(
            "wiring",
            format!("dispatched by 'hookrun run --platform {name} --phase ...' from the tool's own configuration; doctor cannot see that"),
        );
        self.defaults_note(&mut s);
        let missing = has_table.then(|| {
            (
                Severity::Warning,
                format!("'hookrun run --platform {name}' exits 78 and runs no hooks"),
            )
        });
        self.check_hooks_dir(&mut s, name, &dir, &settings, missing);
        self.dirs.insert((settings.log_dir, settings.lock_dir));
        s
    }

    // -----------------------------------------------------------------------------------
    // hooks directories and hooks
    // -----------------------------------------------------------------------------------

    /// Checks a hooks directory and every file in it. `missing`: how bad it is when the
    /// directory does not exist, and what happens then (`None`: nothing happens).
    fn check_hooks_dir(
        &mut self,
        s: &mut Section,
        platform: &str,
        dir: &Path,
        settings: &Settings,
        missing: Option<(Severity, String)>,
    ) {
        // The platforms run hooks as root; only a worker may run as someone else.
        let uid = if platform == "worker" {
            nix::unistd::geteuid().as_raw()
        } else {
            0
        };
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match missing {
                    Some((sev, what)) => s.fix(
                        sev,
                        "hooks dir",
                        format!("{} does not exist: {what}", shown(dir)),
                        install_d(dir),
                    ),
                    None => s.fix(
                        Severity::Note,
                        "hooks dir",
                        format!("{} does not exist: no hooks run", shown(dir)),
                        install_d(dir),
                    ),
                }
                return;
            }
            Err(e) => {
                s.fix(
                    Severity::Error,
                    "hooks dir",
                    format!("cannot inspect {}: {e}", shown(dir)),
                    format!("ls -ld {}", sh(dir)),
                );
                return;
            }
        };
        if !meta.is_dir() {
            s.fix(
                Severity::Error,
                "hooks dir",
                format!("{} is not a directory: no hooks run", shown(dir)),
                format!("mv {0} {0}.old && {1}", sh(dir), install_d(dir)),
            );
            return;
        }
        let entries = match discover::scan(dir) {
            Ok(mut e) => {
                if platform == "worker" {
                    discover::apply_implicit(&mut e, &hookrun_worker::IMPLICIT);
                }
                e
            }
            Err(e) => {
                s.fix(
                    Severity::Error,
                    "hooks dir",
                    format!("{e}: no hooks run"),
                    format!("chmod 0755 {}", sh(dir)),
                );
                return;
            }
        };
        let mut dir_refused = false;
        if settings.strict_permissions {
            if let Err(why) = hookrun_core::perms::check_dir_path(dir, uid) {
                let (msg, fix) = split_fix(&why);
                s.findings.push(Finding {
                    severity: Severity::Error,
                    subject: "hooks dir".into(),
                    message: format!("{msg}: every hook in it is refused"),
                    fix: fix.or_else(|| Some(format!("chmod 0755 {}", sh(dir)))),
                });
                dir_refused = true;
            }
        } else {
            s.note(
                "hooks dir",
                format!("strict_permissions is off for {platform}: hooks and the directory are not checked for who can change them"),
            );
        }
        if !dir_refused {
            let runnable = entries
                .iter()
                .filter(|e| e.candidate().is_some_and(|c| c.header.phases.is_some()))
                .count();
            s.ok(
                "hooks dir",
                format!(
                    "{}: {}; {} file(s), {runnable} with '# phases:'",
                    shown(dir),
                    host::mode_owner(&meta),
                    entries.len()
                ),
            );
        }
        if entries.is_empty() {
            s.note("hooks", format!("{} is empty: no hooks yet", shown(dir)));
        }
        let known = crate::platforms::platform(platform).phases;
        for e in &entries {
            self.check_entry(s, platform, known, e, settings, uid, dir_refused);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_entry(
        &mut self,
        s: &mut Section,
        platform: &str,
        known: Option<&'static [&'static str]>,
        e: &Entry,
        settings: &Settings,
        uid: u32,
        dir_refused: bool,
    ) {
        let subject = format!("hook {}", e.display_name());
        let path = &e.path;
        let cand = match &e.state {
            EntryState::Ignored(r) => {
                s.note(&subject, format!("ignored ({r})"));
                return;
            }
            EntryState::Unusable(why) => {
                s.fix(
                    Severity::Warning,
                    &subject,
                    format!(
                        "{}: {why}; it is not run, and every dispatch reports it",
                        shown(path)
                    ),
                    format!("mv {} {}.disabled", sh(path), sh(path)),
                );
                return;
            }
            EntryState::Candidate(c) => c,
        };
        let h = &cand.header;
        if let Some(why) = e.job_conflict() {
            s.fix(
                Severity::Error,
                &subject,
                format!("{why}; every dispatch refuses it"),
                format!("mv {} {}.disabled", sh(path), sh(path)),
            );
        }
        let (buf, truncated) = discover::read_head(path).unwrap_or_default();
        let findings: Vec<lint::Finding> =
            lint_bytes(&buf, truncated, known.map(|k| (platform, k)))
                .into_iter()
                .filter(|f| !(cand.implicit && f.message.contains("never runs")))
                .collect();
        let located = |f: &lint::Finding| match f.line {
            Some(l) => format!("{}:{l}: {}", shown(path), f.message),
            None => format!("{}: {}", shown(path), f.message),
        };
        if h.phases.is_none() && !h.phases_invalid {
            // Never runs; only near misses (`# phase:`) matter, because they say it was
            // meant to.
            let mut near = false;
            for f in findings
                .iter()
                .filter(|f| f.severity == lint::Severity::Warning && f.line.is_some())
            {
                near = true;
                s.fix(
                    Severity::Warning,
                    &subject,
                    located(f),
                    editor(path, f.line),
                );
            }
            if !near {
                s.note(&subject, "never runs: no '# phases:' line");
            }
            return;
        }
        let mut clean = true;
        for f in &findings {
            let sev = match f.severity {
                lint::Severity::Error => Severity::Error,
                lint::Severity::Warning => Severity::Warning,
                lint::Severity::Info => continue,
            };
            clean = false;
            let consequence = if f.severity == lint::Severity::Error {
                "; the hook is refused (a failure) wherever it would run"
            } else {
                ""
            };
            s.fix(
                sev,
                &subject,
                format!("{}{consequence}", located(f)),
                editor(path, f.line),
            );
        }
        if !cand.executable {
            clean = false;
            s.fix(
                Severity::Warning,
                &subject,
                format!(
                    "asks for {} but is not executable, so it is not run (or rename it to {}.disabled if it is meant to be off)",
                    phases(h),
                    e.display_name()
                ),
                format!("chmod +x {}", sh(path)),
            );
        } else if settings.strict_permissions
            && !dir_refused
            && let Err(why) = hookrun_core::perms::check_entry(e, uid)
        {
            clean = false;
            let (msg, fix) = split_fix(&why);
            s.findings.push(Finding {
                severity: Severity::Error,
                subject: subject.clone(),
                message: format!("refused (a failure wherever it would run): {msg}"),
                fix: fix.or_else(|| Some(format!("mv {} {}.disabled", sh(path), sh(path)))),
            });
        }
        if platform.starts_with("libvirt-")
            && h.mode == Some(Mode::Sync)
            && let Some(line) = crate::lint::calls_libvirt(path)
        {
            clean = false;
            s.fix(
                Severity::Warning,
                &subject,
                format!(
                    "{}:{line}: a sync libvirt hook calls back into libvirt (virsh): this deadlocks; use the XML on stdin, or make it '# mode: async'",
                    shown(path)
                ),
                editor(path, Some(line)),
            );
        }
        // What the hooks need (Checkmk, gpg) is checked for every hook that would run
        // once its own problems are fixed.
        if cand.executable && h.errors.is_empty() {
            if h.mk_job {
                self.mk_jobs.push(MkJobUse {
                    hook: path.clone(),
                    mode: settings.mk_job,
                    dir: settings.mk_job_dir.clone(),
                });
            }
            if let Some(c) = contrib_use(path) {
                self.contrib.push(c);
            }
        }
        let how = describe(h, settings, known, platform);
        if clean && dir_refused {
            s.note(
                &subject,
                format!(
                    "refused with its directory (above); otherwise it runs in {}: {how}",
                    phases(h)
                ),
            );
        } else if clean {
            s.ok(&subject, format!("runs in {}: {how}", phases(h)));
        }
    }

    // -----------------------------------------------------------------------------------
    // what all platforms share
    // -----------------------------------------------------------------------------------

    fn general(&mut self, config_error: Option<&hookrun_core::ConfigError>, all: bool) -> Section {
        let mut s = Section::new("hookrun");
        let path = self.host.config_path();
        match config_error {
            Some(e) => s.fix(
                Severity::Error,
                "config",
                format!(
                    "{e}: every dispatch stops at this and runs no hooks (exit 78; 0 where the platform ignores failures)"
                ),
                editor(&e.path, e.line),
            ),
            None if path.exists() => s.ok("config", format!("{} parses", shown(&path))),
            None => s.ok(
                "config",
                format!("{} does not exist: the defaults apply", shown(&path)),
            ),
        }
        for var in ["HOOKRUN_CONFIG", "HOOKRUN_HOOKS_DIR"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                s.note(
                    "environment",
                    format!(
                        "{var}={} is set here, but vzdump, Proxmox and libvirt do not pass it to hookrun: doctor ignores it and checks what they use",
                        v.to_string_lossy()
                    ),
                );
            }
        }
        let bin = self.host.path(&self.host.bin_dir);
        let (present, absent): (Vec<&str>, Vec<&str>) = host::ADAPTERS.iter().partition(|a| {
            self.host
                .resolve(&self.host.adapter(a))
                .and_then(std::fs::metadata)
                .is_ok_and(|m| host::is_executable(&m))
        });
        if !present.is_empty() {
            s.ok(
                "binaries",
                format!("in {}: {}", shown(&bin), present.join(", ")),
            );
        }
        if !absent.is_empty() {
            s.note(
                "binaries",
                format!(
                    "not in {}: {} (install the package of each platform you use, e.g. apt install ./{}_*.deb)",
                    shown(&bin),
                    absent.join(", "),
                    absent[0]
                ),
            );
        }
        // The log and lock directories: the top level's, and every platform's in use.
        let top = self.settings("-");
        let mut dirs = std::mem::take(&mut self.dirs);
        if all || dirs.is_empty() {
            dirs.insert((top.log_dir.clone(), top.lock_dir.clone()));
        }
        let logs: BTreeSet<PathBuf> = dirs.iter().map(|d| d.0.clone()).collect();
        let locks: BTreeSet<PathBuf> = dirs.iter().map(|d| d.1.clone()).collect();
        for d in &logs {
            check_log_dir(&mut s, d);
        }
        for d in &locks {
            check_lock_dir(&mut s, d);
        }
        self.checkmk(&mut s);
        self.gpg(&mut s);
        s
    }

    fn checkmk(&self, s: &mut Section) {
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

    fn gpg(&self, s: &mut Section) {
        let mut gpg_for = Vec::new();
        for c in &self.contrib {
            let name = c.hook.display().to_string();
            let found = if c.program.starts_with('/') {
                let p = self.host.path(&c.program);
                std::fs::metadata(&p)
                    .is_ok_and(|m| host::is_executable(&m))
                    .then_some(p)
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

/// The running daemons that call `driver`'s hook.
fn owners<'a>(running: &'a [host::Daemon], driver: &str) -> Vec<&'a host::Daemon> {
    running
        .iter()
        .filter(|d| {
            driver == "daemon"
                || d.name == "libvirtd"
                || host::modular_daemon(driver) == Some(d.name.as_str())
        })
        .collect()
}

fn phases(h: &hookrun_core::header::Header) -> String {
    match &h.phases {
        Some(hookrun_core::header::Phases::All) => "every phase".into(),
        Some(p) => p.to_string(),
        None => "-".into(),
    }
}

fn describe(
    h: &hookrun_core::header::Header,
    settings: &Settings,
    known: Option<&'static [&'static str]>,
    platform: &str,
) -> String {
    let mut parts = vec![h.mode_or_default().to_string()];
    match h.on_error {
        Some(o) => parts.push(format!("on-error {o}")),
        None => {
            // The platform's default, per phase where it differs.
            let default = crate::platforms::platform(platform).default_on_error;
            let list: Vec<String> = match (&h.phases, known) {
                (Some(hookrun_core::header::Phases::List(l)), _) => l.clone(),
                (_, Some(k)) => k.iter().map(|p| (*p).to_owned()).collect(),
                _ => Vec::new(),
            };
            let each: Vec<(String, hookrun_core::OnError)> = list
                .into_iter()
                .map(|p| {
                    let o = default(&p);
                    (p, o)
                })
                .collect();
            match each.first() {
                Some((_, first)) if each.iter().all(|(_, o)| o == first) => {
                    parts.push(format!("on-error {first} (platform default)"));
                }
                Some(_) => {
                    let by: Vec<String> = each.iter().map(|(p, o)| format!("{p} {o}")).collect();
                    parts.push(format!("on-error {} (platform defaults)", by.join(", ")));
                }
                None => parts.push(format!("on-error {} (platform default)", default("-"))),
            }
        }
    }
    match (h.timeout, settings.default_timeout) {
        (Some(t), _) => parts.push(format!("timeout {}s", t.as_secs())),
        (None, Some(t)) => parts.push(format!("timeout {}s (config)", t.as_secs())),
        (None, None) => parts.push("no timeout".into()),
    }
    if let Some(l) = &h.lock {
        parts.push(format!("lock {l}"));
    }
    if h.mk_job {
        parts.push("mk-job".into());
    }
    if let Some(o) = &h.objects {
        let o: Vec<String> = o.iter().map(ToString::to_string).collect();
        parts.push(format!("objects {}", o.join(" ")));
    }
    parts.join(", ")
}

/// A hook that runs `hookrun-copy-encrypt-retain` (the contrib drop-in, or one of its
/// own), and whether it encrypts.
fn contrib_use(path: &Path) -> Option<ContribUse> {
    let text = crate::lint::script_text(path)?;
    let line = text
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.contains("hookrun-copy-encrypt-retain"))?;
    let program = line
        .split_whitespace()
        .find(|w| w.ends_with("hookrun-copy-encrypt-retain"))
        .unwrap_or("hookrun-copy-encrypt-retain")
        .trim_matches(['"', '\''])
        .to_owned();
    Some(ContribUse {
        hook: path.to_owned(),
        program,
        needs_gpg: !line.contains("--no-encrypt"),
    })
}

fn check_log_dir(s: &mut Section, dir: &Path) {
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

fn check_lock_dir(s: &mut Section, dir: &Path) {
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

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

fn text(host: &Host, sections: &[Section], errors: usize, warnings: usize) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "hookrun doctor: adapters expected in {}",
        shown(&host.path(&host.bin_dir))
    );
    if !host.is_real() {
        let _ = write!(out, " (root {})", shown(&host.root));
    }
    out.push('\n');
    let mut unused = Vec::new();
    for sec in sections {
        let problems = sec.findings.iter().any(|f| f.severity >= Severity::Warning);
        if !sec.in_use && !problems {
            let why = sec
                .findings
                .first()
                .map(|f| f.message.trim_start_matches("not in use: ").to_owned())
                .unwrap_or_default();
            unused.push(format!("  {:<16} {why}", sec.name));
            continue;
        }
        let _ = writeln!(
            out,
            "\n{}{}",
            sec.name,
            if sec.in_use {
                ""
            } else {
                " (not in use by hookrun)"
            }
        );
        for f in &sec.findings {
            let _ = writeln!(
                out,
                "  {:<8} {}: {}",
                f.severity.as_str(),
                f.subject,
                f.message
            );
            if let Some(fix) = &f.fix
                && f.severity >= Severity::Warning
            {
                let _ = writeln!(out, "  {:<8} fix: {fix}", "");
            }
        }
    }
    if !unused.is_empty() {
        let _ = writeln!(
            out,
            "\nnot in use (hookrun install <platform> shows how to wire one):"
        );
        for u in unused {
            let _ = writeln!(out, "{u}");
        }
    }
    let _ = writeln!(
        out,
        "\n{errors} error(s), {warnings} warning(s){}",
        if errors > 0 {
            ": something is broken; run the fixes above"
        } else if warnings > 0 {
            ": nothing is broken, but see the warnings"
        } else {
            ": all good"
        }
    );
    out
}

fn json(host: &Host, sections: &[Section], errors: usize, warnings: usize) -> String {
    let mut platforms = serde_json::Map::new();
    for sec in sections {
        let findings: Vec<serde_json::Value> = sec
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "severity": f.severity.as_str(),
                    "subject": f.subject,
                    "message": f.message,
                    "fix": f.fix,
                })
            })
            .collect();
        platforms.insert(
            sec.name.clone(),
            serde_json::json!({ "in_use": sec.in_use, "findings": findings }),
        );
    }
    let doc = serde_json::json!({
        "root": host.root,
        "bin_dir": host.bin_dir,
        "errors": errors,
        "warnings": warnings,
        "platforms": platforms,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_are_split_from_core_messages() {
        let (m, f) = split_fix(
            "directory /x is writable by its group, so anyone there could run code as root: chmod go-w /x",
        );
        assert_eq!(f.as_deref(), Some("chmod go-w /x"));
        assert!(m.ends_with("as root"), "{m}");
        assert_eq!(
            split_fix("no fix here: sorry"),
            ("no fix here: sorry".into(), None)
        );
    }
}
