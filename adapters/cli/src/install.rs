//! `hookrun install <vzdump|pve-guest|libvirt|worker>`: the exact steps that wire a
//! platform to hookrun, and with `--apply` the host-side ones performed.
//!
//! What `--apply` does, and nothing else: create the hooks directories (0755, owned by
//! the user running it: root); add or replace the `script:` line of `/etc/vzdump.conf`
//! (after a copy to `<file>.hookrun-bak.<time>`, every other byte unchanged); create the
//! snippet symlink for guest hookscripts; create the `/etc/libvirt/hooks/<driver>`
//! symlinks. A file that is not hookrun's (a foreign vzdump script, snippet or libvirt
//! hook script) is replaced only with `--force`, and then moved to a backup first. It
//! never edits guest configs, `/etc/pve/jobs.cfg` or `storage.cfg` (cluster-wide; it
//! prints the `qm`/`pct`/`pvesh`/`pvesm` commands), and restarts a libvirt daemon only
//! with `--restart-daemon`. Running it again changes nothing and says so. Paths are
//! resolved under `--root` like `hookrun doctor`'s (see `host.rs`).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{InstallArgs, InstallPlatform};
use crate::host::{self, Host, Target, TargetKind, sh};
use crate::{EXIT_CONFIG, EXIT_USAGE, Exit};

/// Prints the steps and keeps count of what `--apply` did.
struct Out<'a> {
    host: &'a Host,
    apply: bool,
    force: bool,
    step: usize,
    changes: usize,
    refusals: usize,
}

impl Out<'_> {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}. {title}", self.step);
    }

    /// A command or a line to write, exactly.
    fn cmd(&self, c: &str) {
        println!("     {c}");
    }

    fn say(&self, t: &str) {
        println!("   {t}");
    }

    fn did(&mut self, t: &str) {
        self.changes += 1;
        println!("   done: {t}");
    }

    /// A backup made on the way to a change (not counted as one of its own).
    fn backed_up(&self, t: &str) {
        println!("   done: {t}");
    }

    fn same(&self, t: &str) {
        println!("   unchanged: {t}");
    }

    fn refuse(&mut self, t: &str) {
        self.refusals += 1;
        println!("   refused: {t}");
    }

    fn warn(&self, t: &str) {
        println!("   warning: {t}");
    }

    fn root_arg(&self) -> String {
        if self.host.is_real() {
            String::new()
        } else {
            format!(" --root {}", sh(&self.host.root))
        }
    }

    /// Creates `dir` (a real path) with mode 0755, or says it is there.
    fn ensure_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode() & 0o7777;
                if mode & 0o022 != 0 {
                    self.warn(&format!(
                        "{} exists with mode {mode:04o}: hookrun refuses a directory others can write to: chmod go-w {}",
                        dir.display(),
                        sh(dir)
                    ));
                }
                self.same(&format!("{} exists", dir.display()));
                Ok(())
            }
            Ok(_) => {
                self.refuse(&format!(
                    "{} exists and is not a directory; move it away first",
                    dir.display()
                ));
                Ok(())
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("cannot chmod 0755 {}", dir.display()))?;
                let owner = host::user_label(nix::unistd::geteuid().as_raw());
                self.did(&format!(
                    "created {} (mode 0755, owner {owner})",
                    dir.display()
                ));
                Ok(())
            }
        }
    }

    /// Makes `link` (a real path) a symlink to `target` (a host path). An existing
    /// hookrun adapter or symlink to one is replaced by the link (after a backup) unless
    /// it already leads to the installed one; anything else only with `--force`.
    fn ensure_link(
        &mut self,
        link: &Path,
        target: &Path,
        found: &Target,
        foreign_hint: &str,
    ) -> anyhow::Result<bool> {
        let exists = std::fs::symlink_metadata(link).is_ok();
        let already = std::fs::read_link(link).is_ok_and(|t| t == target);
        if exists && (already || found.kind == TargetKind::Installed) {
            self.same(&format!(
                "{} → {} (the installed adapter)",
                link.display(),
                std::fs::read_link(link)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| target.display().to_string())
            ));
            return Ok(false);
        }
        if exists && found.kind == TargetKind::Foreign && !self.force {
            self.refuse(&format!(
                "{} is another script, not hookrun; {foreign_hint}; --force moves it to a backup and links hookrun in its place",
                link.display()
            ));
            return Ok(false);
        }
        if exists {
            let backup = backup_name(link);
            std::fs::rename(link, &backup).with_context(|| {
                format!("cannot move {} to {}", link.display(), backup.display())
            })?;
            self.backed_up(&format!(
                "moved {} ({}) to {}",
                link.display(),
                describe(found),
                backup.display()
            ));
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::os::unix::fs::symlink(target, link).with_context(|| {
            format!(
                "cannot create the symlink {} → {}",
                link.display(),
                target.display()
            )
        })?;
        self.did(&format!("{} → {}", link.display(), target.display()));
        Ok(true)
    }
}

fn describe(t: &Target) -> &'static str {
    match t.kind {
        TargetKind::Installed => "the installed adapter",
        TargetKind::Copy => "a copy of the adapter",
        TargetKind::OtherHookrun => "another hookrun adapter",
        TargetKind::Foreign => "another script",
        TargetKind::Missing => "a dangling symlink",
        TargetKind::Broken(_) => "unusable",
    }
}

/// `<path>.hookrun-bak.<time>`, with `.N` added when that exists already.
fn backup_name(path: &Path) -> PathBuf {
    let base = format!("{}.hookrun-bak.{}", path.display(), host::timestamp());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while std::fs::symlink_metadata(&candidate).is_ok() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

pub fn main(args: &InstallArgs) -> anyhow::Result<i32> {
    let host = Host::new(&args.host)?;
    check_args(args, &host)?;
    let config = host.load_config().map_err(|e| {
        Exit::error(
            EXIT_CONFIG,
            format!("{e}; fix the configuration file first (it decides the hooks directories)"),
        )
    })?;
    let mut out = Out {
        host: &host,
        apply: args.apply,
        force: args.force,
        step: 0,
        changes: 0,
        refusals: 0,
    };
    let (name, adapter) = match args.platform {
        InstallPlatform::Vzdump => ("vzdump", "hookrun-vzdump"),
        InstallPlatform::PveGuest => ("pve-guest", "hookrun-pve-guest"),
        InstallPlatform::Libvirt => ("libvirt", "hookrun-libvirt"),
        InstallPlatform::Worker => ("worker", "hookrun-worker"),
    };
    let bin = host.adapter(adapter);
    let real_bin = host.path(&bin);
    let present = host
        .resolve(&bin)
        .and_then(std::fs::metadata)
        .is_ok_and(|m| host::is_executable(&m));
    println!(
        "hookrun install {name}: {}",
        if args.apply {
            "performing the host-side steps"
        } else {
            "the steps (nothing is changed; --apply performs the host-side ones)"
        }
    );
    if present {
        println!("adapter: {} (found)", real_bin.display());
    } else {
        let msg = format!(
            "{} does not exist or is not executable: install it first (apt install ./{adapter}_*.deb, or install -m 0755 target/release/{adapter} {})",
            real_bin.display(),
            sh(host.path(&host.bin_dir))
        );
        if args.apply && args.platform != InstallPlatform::Worker {
            return Err(Exit::error(1, format!("{msg}; nothing was changed")));
        }
        println!("warning: {msg}");
    }
    match args.platform {
        InstallPlatform::Vzdump => vzdump(&mut out, &config, &bin)?,
        InstallPlatform::PveGuest => pve_guest(&mut out, &config, &bin, args)?,
        InstallPlatform::Libvirt => libvirt(&mut out, &config, &bin, args)?,
        InstallPlatform::Worker => worker(&mut out, &config, &bin)?,
    }
    println!();
    if !args.apply {
        println!(
            "Nothing was changed. 'hookrun install {name} --apply{}' performs the host-side steps and backs up every file it changes.",
            out.root_arg()
        );
        return Ok(0);
    }
    if out.refusals > 0 {
        println!(
            "refused {} step(s) (see above); {} change(s) made",
            out.refusals, out.changes
        );
        return Ok(1);
    }
    if out.changes == 0 {
        println!("nothing to change: everything was already in place");
    } else {
        println!("applied: {} change(s)", out.changes);
    }
    Ok(0)
}

fn check_args(args: &InstallArgs, host: &Host) -> anyhow::Result<()> {
    let usage = |m: &str| Err(Exit::error(EXIT_USAGE, m.to_owned()));
    if !args.vmids.is_empty() && args.platform != InstallPlatform::PveGuest {
        return usage("--vmid is for 'hookrun install pve-guest'");
    }
    if args.storage.is_some() && args.platform != InstallPlatform::PveGuest {
        return usage("--storage is for 'hookrun install pve-guest'");
    }
    if !args.drivers.is_empty() && args.platform != InstallPlatform::Libvirt {
        return usage("--driver is for 'hookrun install libvirt'");
    }
    if args.restart_daemon && (args.platform != InstallPlatform::Libvirt || !args.apply) {
        return usage("--restart-daemon goes with 'hookrun install libvirt --apply'");
    }
    if args.restart_daemon && !host.is_real() {
        return usage("--restart-daemon cannot restart a daemon of another --root");
    }
    if args.force && !args.apply {
        return usage("--force only means something with --apply");
    }
    if args.apply && host.is_real() && !nix::unistd::geteuid().is_root() {
        return Err(Exit::error(
            1,
            "--apply changes /etc: run it as root (sudo hookrun install ... --apply)",
        ));
    }
    Ok(())
}

/// `hooks.d` beside `invoked` (a host path) when it exists, else the configured or
/// default directory — the one a dispatch would use.
fn hooks_dir_for(
    host: &Host,
    settings: &hookrun_core::Settings,
    invoked: Option<&Path>,
    default: &str,
) -> PathBuf {
    if let Some(parent) = invoked.and_then(Path::parent) {
        let beside = host.path(parent.join("hooks.d"));
        if beside.is_dir() {
            return beside;
        }
    }
    settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| host.path(default))
}

// ---------------------------------------------------------------------------------------
// vzdump
// ---------------------------------------------------------------------------------------

fn vzdump(out: &mut Out<'_>, config: &hookrun_core::Config, bin: &Path) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, "vzdump");
    let conf = host.path(host::VZDUMP_CONF);
    let text = host
        .read(host::VZDUMP_CONF)
        .with_context(|| format!("cannot read {}", conf.display()))?;
    if text.is_none() {
        println!(
            "warning: {} does not exist: is this a Proxmox VE node? (--apply creates it with the script line alone)",
            conf.display()
        );
    }
    let current = text.as_deref().and_then(host::vzdump_script);
    let target = current
        .as_ref()
        .map(|(_, v)| host.identify(Path::new(v), "hookrun-vzdump"));
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
    let dir = hooks_dir_for(
        host,
        &settings,
        invoked.as_deref(),
        hookrun_vzdump::DEFAULT_HOOKS_DIR,
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
        .read(host::JOBS_CFG)
        .ok()
        .flatten()
        .map(|t| {
            host::sections(&t)
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
        if host.identify(Path::new(script), "hookrun-vzdump").kind == TargetKind::Installed {
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
        let backup = backup_name(&real);
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
        .rposition(|l| host::script_line_value(&String::from_utf8_lossy(l)).is_some());
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

// ---------------------------------------------------------------------------------------
// Proxmox guests
// ---------------------------------------------------------------------------------------

fn pve_guest(
    out: &mut Out<'_>,
    config: &hookrun_core::Config,
    bin: &Path,
    args: &InstallArgs,
) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, "pve-guest");
    let storages = host::storages(host);
    let sid = args.storage.as_deref().unwrap_or("local");
    let with_path: Vec<&str> = storages
        .iter()
        .filter(|s| s.path.is_some())
        .map(|s| s.id.as_str())
        .collect();
    let Some(storage) = storages.iter().find(|s| s.id == sid) else {
        return Err(Exit::error(
            EXIT_USAGE,
            format!(
                "storage '{sid}' is not in {} (storages with a path: {})",
                host.path(host::STORAGE_CFG).display(),
                with_path.join(", ")
            ),
        ));
    };
    let Some(snippets) = storage.snippets_dir() else {
        return Err(Exit::error(
            EXIT_USAGE,
            format!(
                "storage '{sid}' ({}) has no path, so it cannot hold snippets; pick one of: {}",
                storage.kind,
                with_path.join(", ")
            ),
        ));
    };
    let snippet = snippets.join(host::SNIPPET_NAME);
    let volid = format!("{sid}:snippets/{}", host::SNIPPET_NAME);
    let dir = hooks_dir_for(
        host,
        &settings,
        Some(&snippet),
        hookrun_pve_guest::DEFAULT_HOOKS_DIR,
    );

    out.step("The hooks directory (hooks go here, mode 0755, owned by root):");
    out.cmd(&format!("install -d -m 0755 {}", sh(&dir)));
    if out.apply {
        out.ensure_dir(&dir)?;
    }

    if !storage.content.iter().any(|c| c == "snippets") {
        out.step(&format!(
            "Enable the snippets content type on storage {sid} (storage.cfg is cluster-wide: hookrun never edits it):"
        ));
        let mut content = storage.content.clone();
        content.push("snippets".into());
        out.cmd(&format!("pvesm set {sid} --content {}", content.join(",")));
    }

    let real_snippets = host.path(&snippets);
    let mounted = storage.path.as_ref().is_some_and(|p| host.path(p).is_dir());
    out.step(&format!(
        "The snippet: a symlink to hookrun-pve-guest in the snippets directory of storage {sid}:"
    ));
    out.cmd(&format!("install -d -m 0755 {}", sh(&real_snippets)));
    out.cmd(&format!("ln -s {} {}", sh(bin), sh(host.path(&snippet))));
    if storage.is_network() {
        out.warn(&format!(
            "{sid} is a {} storage: Proxmox checks the snippet before every start without mounting it, so while it is not mounted no guest using it starts; prefer local storage",
            storage.kind
        ));
    }
    out.say("do this (and install hookrun and the hooks) on every node the guests may run on");
    if out.apply {
        if storage.is_network() && !mounted {
            out.refuse(&format!(
                "storage {sid} is not mounted at {}: mount it first (nothing is written onto the mount point)",
                storage.path.as_ref().map(|p| host.path(p).display().to_string()).unwrap_or_default()
            ));
        } else {
            out.ensure_dir(&real_snippets)?;
            let found = host.identify(&snippet, "hookrun-pve-guest");
            out.ensure_link(
                &host.path(&snippet),
                bin,
                &found,
                "guests using it would run hookrun instead",
            )?;
        }
    }

    out.step("Point each guest at the snippet (run these yourself: hookrun never edits guest configs; only root@pam may set hookscript):");
    if args.vmids.is_empty() {
        out.cmd(&format!("qm set <vmid> --hookscript {volid}     # a VM"));
        out.cmd(&format!(
            "pct set <vmid> --hookscript {volid}    # a container"
        ));
    }
    for vmid in &args.vmids {
        match host::find_guest(host, *vmid) {
            Some(g) if g.hookscript.as_deref() == Some(volid.as_str()) => {
                out.say(&format!("{} {vmid} already uses {volid}", g.kind.label()));
            }
            Some(g) => {
                out.cmd(&format!(
                    "{} set {vmid} --hookscript {volid}",
                    g.kind.tool()
                ));
                if let Some(old) = &g.hookscript {
                    out.say(&format!(
                        "(replaces its hookscript {old}: to keep it, make it a hook in {})",
                        dir.display()
                    ));
                }
            }
            None => {
                out.say(&format!(
                    "guest {vmid} is not on this node (no {}/{vmid}.conf or {}/{vmid}.conf); on its node:",
                    host::QEMU_CONF_DIR,
                    host::LXC_CONF_DIR
                ));
                out.cmd(&format!("qm set {vmid} --hookscript {volid}     # a VM"));
                out.cmd(&format!(
                    "pct set {vmid} --hookscript {volid}    # a container"
                ));
            }
        }
    }

    out.step("Check:");
    out.cmd(&format!(
        "hookrun doctor --platform pve-guest{}",
        out.root_arg()
    ));
    out.cmd(&format!(
        "hookrun list --platform pve-guest --phase pre-start --object <vmid> --hooks-dir {}",
        sh(&dir)
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// libvirt
// ---------------------------------------------------------------------------------------

fn libvirt(
    out: &mut Out<'_>,
    config: &hookrun_core::Config,
    bin: &Path,
    args: &InstallArgs,
) -> anyhow::Result<()> {
    let host = out.host;
    let mut drivers: Vec<&str> = args.drivers.iter().map(String::as_str).collect();
    if drivers.is_empty() {
        drivers.push("qemu");
    }
    drivers.dedup();
    let dirs: Vec<(&str, PathBuf)> = drivers
        .iter()
        .map(|d| {
            let platform = hookrun_libvirt::platform(d);
            let s = host.settings(config, &platform);
            let dir = s
                .hooks_dir
                .clone()
                .unwrap_or_else(|| host.path(format!("/etc/hookrun/{platform}.d")));
            (*d, dir)
        })
        .collect();

    out.step("The hooks directories (hooks go here, mode 0755, owned by root; never libvirt's own <driver>.d):");
    for (_, dir) in &dirs {
        out.cmd(&format!("install -d -m 0755 {}", sh(dir)));
    }
    if out.apply {
        for (_, dir) in &dirs {
            out.ensure_dir(dir)?;
        }
    }

    let hooks = host.path(host::LIBVIRT_HOOKS_DIR);
    if !host.path("/etc/libvirt").is_dir() {
        println!(
            "\nwarning: {} does not exist: is libvirt installed (apt install libvirt-daemon-system)?",
            host.path("/etc/libvirt").display()
        );
    }
    out.step(
        "libvirt's hook scripts: one symlink per driver (libvirt takes the driver from the name):",
    );
    out.cmd(&format!("install -d -m 0755 {}", sh(&hooks)));
    for (d, _) in &dirs {
        let link = host.path(Path::new(host::LIBVIRT_HOOKS_DIR).join(d));
        out.cmd(&format!("ln -s {} {}", sh(bin), sh(&link)));
    }
    let mut changed = false;
    if out.apply {
        out.ensure_dir(&hooks)?;
    }
    for (d, dir) in &dirs {
        let link_host = Path::new(host::LIBVIRT_HOOKS_DIR).join(d);
        let link = host.path(&link_host);
        let found = host.identify(&link_host, "hookrun-libvirt");
        if std::fs::symlink_metadata(&link).is_ok() && found.kind == TargetKind::Foreign {
            out.say(&format!(
                "{} exists and is another script: to keep it, make it a hook (mv {} {}/50-legacy, then add '# mode: sync' and '# phases: *' below its #! line)",
                link.display(),
                sh(&link),
                sh(dir)
            ));
        }
        let dotd = hooks.join(format!("{d}.d"));
        if let Ok(rd) = std::fs::read_dir(&dotd) {
            for item in rd.flatten() {
                let h = Path::new(host::LIBVIRT_HOOKS_DIR)
                    .join(format!("{d}.d"))
                    .join(item.file_name());
                if host.identify(&h, "hookrun-libvirt").is_hookrun() {
                    out.warn(&format!(
                        "{} is hookrun too: with both, libvirt calls hookrun twice and every hook runs twice; remove one: rm {}",
                        item.path().display(),
                        sh(item.path())
                    ));
                }
            }
        }
        if out.apply {
            changed |= out.ensure_link(
                &link,
                bin,
                &found,
                "libvirt would run hookrun instead of it",
            )?;
        }
    }

    out.step("Restart the daemon that owns each driver: libvirt looks for hook scripts only when it starts and on SIGHUP:");
    let running = host::libvirt_daemons(host);
    let mut restart: Vec<String> = Vec::new();
    let mut stale = false;
    for (d, _) in &dirs {
        let link = host.path(Path::new(host::LIBVIRT_HOOKS_DIR).join(d));
        let since = host::created(&link);
        let owners: Vec<&host::Daemon> = running
            .iter()
            .flatten()
            .filter(|x| {
                *d == "daemon"
                    || x.name == "libvirtd"
                    || host::modular_daemon(d) == Some(x.name.as_str())
            })
            .collect();
        for o in owners {
            if !restart.contains(&o.name) {
                restart.push(o.name.clone());
            }
            if matches!((o.started, since), (Some(s), Some(l)) if l > s) || o.started.is_none() {
                stale = true;
            }
        }
    }
    match &running {
        None => {
            out.cmd("systemctl restart libvirtd");
            out.say(&format!(
                "(cannot see the running processes in {}; with modular daemons restart virtqemud for qemu, virtnetworkd for network, virtlxcd for lxc, every daemon for daemon)",
                host.path("/proc").display()
            ));
        }
        Some(_) if restart.is_empty() => {
            out.say("no libvirt daemon owning these drivers is running: it finds the hooks when it starts");
        }
        Some(_) => {
            let cmd = format!("systemctl restart {}", restart.join(" "));
            out.cmd(&cmd);
            out.say("(systemctl reload sends SIGHUP instead, which also reloads the driver's state; running guests keep running either way)");
            if out.apply {
                if !(stale || changed) {
                    out.same(&format!(
                        "{} started after the hook scripts: nothing to restart",
                        restart.join(", ")
                    ));
                } else if args.restart_daemon {
                    let status = std::process::Command::new("systemctl")
                        .arg("restart")
                        .args(&restart)
                        .status()
                        .context("cannot run systemctl")?;
                    if status.success() {
                        out.did(&format!("ran {cmd}"));
                    } else {
                        out.refuse(&format!("{cmd} failed ({status})"));
                    }
                } else {
                    out.say(&format!(
                        "not done: run '{cmd}' yourself, or add --restart-daemon"
                    ));
                }
            }
        }
    }

    out.step("Check:");
    out.cmd(&format!(
        "hookrun doctor --platform libvirt{}",
        out.root_arg()
    ));
    for (d, dir) in &dirs {
        out.cmd(&format!("hookrun lint --platform libvirt-{d} {}", sh(dir)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// workers
// ---------------------------------------------------------------------------------------

fn worker(out: &mut Out<'_>, config: &hookrun_core::Config, bin: &Path) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, "worker");
    let dir = settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| host.path(hookrun_worker::DEFAULT_HOOKS_DIR));

    out.step("On a host (cron): the hooks directory (pre-<worker>, post-<worker> hooks go here, mode 0755, owned by root):");
    out.cmd(&format!("install -d -m 0755 {}", sh(&dir)));
    if out.apply {
        out.ensure_dir(&dir)?;
    }

    out.step("On a host: a cron line, e.g. in /etc/cron.d/hookrun-backup (cron's PATH is short: full paths):");
    out.cmd(&format!(
        "0 3 * * * root {} run --no-wait backup -- /usr/local/bin/backup.sh",
        bin.display()
    ));
    out.say(
        "(--no-wait: a run that finds the previous one still going exits 0 instead of piling up)",
    );

    out.step("In a container (Docker, Compose): put hookrun-worker in the image and mount the hooks at /hooks, read-only:");
    out.cmd("chown -R root:root hooks && chmod 0755 hooks hooks/*      # on the host: hookrun refuses hooks others can change");
    out.cmd("docker run -v ./hooks:/hooks:ro -e HOOK_TIMEOUT=300 IMAGE hookrun-worker run backup -- /usr/local/bin/backup.sh");
    out.say("Compose: volumes: [\"./hooks:/hooks:ro\"] and command: [\"hookrun-worker\", \"run\", \"backup\", \"--\", \"/usr/local/bin/backup.sh\"]");

    out.step("In Kubernetes: a ConfigMap with the hooks, mounted at /hooks with defaultMode 0755 (in JSON: 493):");
    out.cmd("volumes: [{name: hooks, configMap: {name: backup-hooks, defaultMode: 0755}}]");
    out.cmd("volumeMounts: [{name: hooks, mountPath: /hooks, readOnly: true}]");
    out.say("Kubernetes makes the volume directory world-writable, which hookrun refuses: add a key hookrun.toml");
    out.say("holding '[worker]' and 'strict_permissions = false' to the ConfigMap, and set HOOKRUN_CONFIG=/hooks/hookrun.toml");

    out.step("Check:");
    out.cmd(&format!(
        "hookrun list --platform worker --phase pre-backup --object backup --hooks-dir {}",
        sh(&dir)
    ));
    out.cmd(&format!(
        "hookrun doctor --platform worker{}",
        out.root_arg()
    ));
    Ok(())
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
