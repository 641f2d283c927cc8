//! `hookrun install <platform>`: the exact steps that wire a platform to hookrun, and
//! with `--apply` the host-side ones performed. The steps are the platform's (its
//! folder under `platforms/`); this is what every install shares.
//!
//! What `--apply` does, and nothing else: create the hooks directories (0755, owned by
//! the user running it: root); edit the platform's own configuration file where it has
//! one (after a copy to `<file>.hookrun-bak.<time>`, every other byte unchanged);
//! create the symlinks the platform calls. A file that is not hookrun's is replaced
//! only with `--force`, and then moved to a backup first. It never edits cluster-wide
//! or per-guest configuration (it prints the commands), and restarts a daemon only when
//! asked. Running it again changes nothing and says so. Paths are resolved under
//! `--root` like `hookrun doctor`'s (see `host.rs`).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::InstallArgs;
use crate::host::{self, Host, Target, TargetKind, sh};
use crate::platforms::{self, Platform};
use crate::{EXIT_CONFIG, EXIT_USAGE, Exit};

/// Prints the steps and keeps count of what `--apply` did.
pub(crate) struct Out<'a> {
    pub host: &'a Host,
    pub apply: bool,
    pub force: bool,
    step: usize,
    changes: usize,
    refusals: usize,
}

impl Out<'_> {
    pub(crate) fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}. {title}", self.step);
    }

    /// A command or a line to write, exactly.
    pub(crate) fn cmd(&self, c: &str) {
        println!("     {c}");
    }

    pub(crate) fn say(&self, t: &str) {
        println!("   {t}");
    }

    pub(crate) fn did(&mut self, t: &str) {
        self.changes += 1;
        println!("   done: {t}");
    }

    /// A backup made on the way to a change (not counted as one of its own).
    pub(crate) fn backed_up(&self, t: &str) {
        println!("   done: {t}");
    }

    pub(crate) fn same(&self, t: &str) {
        println!("   unchanged: {t}");
    }

    pub(crate) fn refuse(&mut self, t: &str) {
        self.refusals += 1;
        println!("   refused: {t}");
    }

    pub(crate) fn warn(&self, t: &str) {
        println!("   warning: {t}");
    }

    pub(crate) fn root_arg(&self) -> String {
        if self.host.is_real() {
            String::new()
        } else {
            format!(" --root {}", sh(&self.host.root))
        }
    }

    /// Creates `dir` (a real path) with mode 0755, or says it is there.
    pub(crate) fn ensure_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
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
    pub(crate) fn ensure_link(
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
pub(crate) fn backup_name(path: &Path) -> PathBuf {
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
    // clap took only the values the registry offers.
    let platform = platforms::installer(&args.platform)
        .ok_or_else(|| Exit::error(EXIT_USAGE, format!("cannot install {}", args.platform)))?;
    check_args(args, &host, platform.as_ref())?;
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
    let name = platform.family();
    let adapter = platform
        .adapter()
        .ok_or_else(|| anyhow::anyhow!("{name} has no adapter to install"))?;
    let bin = host.adapter(adapter);
    let real_bin = host.path(&bin);
    let present = host
        .resolve(&bin)
        .is_ok_and(|p| hookrun_core::discover::is_executable(&p));
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
        if args.apply && platform.install_needs_adapter() {
            return Err(Exit::error(1, format!("{msg}; nothing was changed")));
        }
        println!("warning: {msg}");
    }
    platform.install(&mut out, &config, &bin, args)?;
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

fn check_args(args: &InstallArgs, host: &Host, selected: &dyn Platform) -> anyhow::Result<()> {
    let usage = |m: &str| Err(Exit::error(EXIT_USAGE, m.to_owned()));
    // Each platform refuses the options of its own install given to another one.
    for p in platforms::installers() {
        if let Some(m) = p.install_usage(args, host, p.family() == selected.family()) {
            return usage(&m);
        }
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
