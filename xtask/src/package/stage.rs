//! Staging: the release build, the tree of each package (files, control, Depends), and
//! `dpkg-deb`.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use super::*;

/// What one set of packages is built with.
pub(super) struct Variant {
    pub(super) revision: String,
    /// Stage the files in reverse order (the reproducibility check: the order in which
    /// files are created must not matter).
    pub(super) reverse: bool,
    /// A line appended to the shipped hookrun.toml (the install cycle's "new upstream
    /// conffile").
    pub(super) conffile_note: Option<&'static str>,
}

impl Variant {
    pub(super) fn new(revision: &str) -> Variant {
        Variant {
            revision: revision.to_owned(),
            reverse: false,
            conffile_note: None,
        }
    }
}

/// Everything that does not depend on the revision: binaries, generated files, metadata.
pub(super) struct Prepared {
    pub(super) root: PathBuf,
    pub(super) target: PathBuf,
    pub(super) upstream: String,
    pub(super) arch: String,
    pub(super) epoch: u64,
    pub(super) maintainer: String,
    pub(super) changelog: String,
    /// The date of pkg/changelog's newest entry.
    pub(super) changelog_date: u64,
    pub(super) changelog_revision: String,
    pub(super) bins: PathBuf,
    pub(super) generated: Vec<man::File>,
    pub(super) copyright: String,
}

/// One binary package.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) summary: &'static str,
    pub(super) description: &'static str,
    pub(super) bins: &'static [&'static str],
    pub(super) recommends: &'static [&'static str],
    pub(super) readme: Option<&'static str>,
}

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "hookrun",
        summary: "run a directory of self-describing hooks from one platform hook",
        description: "hookrun turns the single hook script that a virtualisation or backup \
platform calls into a directory of small hooks. Each hook says in a comment header when it \
runs (# phases:), whether the platform waits for it (# mode: sync or async) and what a \
failure does (# on-error:). hookrun runs the matching hooks in order, with timeouts, \
process-group handling, prefixed output, locks, Checkmk job files and a JSON record of \
every run.\n\nThis package contains the admin tool hookrun (list, lint, run, log, doctor, \
install), the configuration file, the hooks directories and the log rotation. The \
platform adapters are in hookrun-vzdump, hookrun-pve-guest, hookrun-libvirt and \
hookrun-worker; installing them changes no platform configuration: `hookrun install` \
prints or applies the wiring, `hookrun doctor` checks it.",
        bins: &["hookrun"],
        recommends: &[],
        readme: Some("README.md"),
    },
    Spec {
        name: "hookrun-vzdump",
        summary: "hookrun adapter for Proxmox vzdump backup hooks",
        description: "hookrun-vzdump is the hook script for Proxmox VE's vzdump (script: in \
/etc/vzdump.conf or in a backup job). vzdump calls it for every phase of a backup job, \
from job-init to log-end; it runs the hooks in /etc/hookrun/vzdump.d that asked for the \
phase and passes their result on to vzdump.\n\nWire it with `hookrun install vzdump`; \
installing the package does not change /etc/vzdump.conf.",
        bins: &["hookrun-vzdump"],
        recommends: &[],
        readme: None,
    },
    Spec {
        name: "hookrun-pve-guest",
        summary: "hookrun adapter for Proxmox VE guest hookscripts",
        description: "hookrun-pve-guest is a hookscript for Proxmox VE virtual machines and \
containers. Proxmox calls it in pre-start, post-start, pre-stop and post-stop; it runs \
the hooks in /etc/hookrun/pve-guest.d that asked for the phase and guest, and a failing \
pre-start hook stops the guest from starting.\n\nWire it with `hookrun install \
pve-guest`, which prints the snippet and the qm/pct commands; installing the package \
changes no guest configuration.",
        bins: &["hookrun-pve-guest"],
        recommends: &[],
        readme: None,
    },
    Spec {
        name: "hookrun-libvirt",
        summary: "hookrun adapter for libvirt hook scripts",
        description: "hookrun-libvirt is the hook script for libvirt's daemon, qemu, lxc, \
network, libxl and bhyve drivers. Linked as /etc/libvirt/hooks/DRIVER, it runs the hooks \
in /etc/hookrun/libvirt-DRIVER.d that asked for the operation (prepare, start, stopped, \
migrate, ...), with the domain or network XML on stdin.\n\nWire it with `hookrun install \
libvirt`; installing the package does not touch /etc/libvirt/hooks.",
        bins: &["hookrun-libvirt"],
        recommends: &[],
        readme: None,
    },
    Spec {
        name: "hookrun-worker",
        summary: "hookrun adapter for container and cron workers",
        description: "hookrun-worker runs the hooks of phase pre-WORKER, then a command, \
then the hooks of phase post-WORKER with the command's exit code, under a lock, and exits \
with the command's code: hooks before and after a backup container, a cron job or any \
other worker. Hooks live in /hooks (the container convention) or \
/etc/hookrun/worker.d.",
        bins: &["hookrun-worker"],
        recommends: &[],
        readme: None,
    },
    Spec {
        name: "hookrun-contrib",
        summary: "contributed hooks and tools for hookrun",
        description: "Programs: hookrun-copy-encrypt-retain encrypts each new vzdump archive \
with gpg to a second storage, copies its log and notes and applies retention; \
hookrun-retain applies backup-like retention rules to a directory, a drop-in for the \
retentions command.\n\nHook files in /usr/share/hookrun/hooks.d, to be copied into a hooks \
directory and edited: copy-encrypt-retain, healthchecks-ping, webhook (curl) and \
require-mount.",
        bins: &["hookrun-copy-encrypt-retain", "hookrun-retain"],
        recommends: &["curl", "gnupg"],
        readme: Some("hooks-contrib/README.md"),
    },
];

impl Prepared {
    pub(super) fn new(root: &Path, target: &Path) -> anyhow::Result<Prepared> {
        let upstream = workspace_version(root)?;
        let changelog =
            fs::read_to_string(root.join("pkg/changelog")).context("cannot read pkg/changelog")?;
        let top = changelog_top(&changelog)?;
        let top_version = top.version;
        let changelog_revision = match top_version.split_once('-') {
            Some((up, rev)) if up == upstream => rev.to_owned(),
            _ => anyhow::bail!(
                "pkg/changelog's newest entry is {top_version}, but the workspace version is {upstream}: add an entry for {upstream}-1 to pkg/changelog"
            ),
        };
        let arch = output(Command::new("dpkg").arg("--print-architecture"))
            .context("dpkg --print-architecture")?
            .trim()
            .to_owned();
        let epoch = source_date_epoch(root)?;
        let bins = build_binaries(root, target)?;
        let generated = man::generate(root)?;
        let copyright = fs::read_to_string(root.join("pkg/copyright"))
            .context("cannot read pkg/copyright")?
            .replace("@CRATES@", &linked_crates(root)?);
        Ok(Prepared {
            root: root.to_owned(),
            target: target.to_owned(),
            upstream,
            arch,
            epoch,
            maintainer: top.maintainer,
            changelog_date: top.date,
            changelog,
            changelog_revision,
            bins,
            generated,
            copyright,
        })
    }

    pub(super) fn version(&self, revision: &str) -> String {
        format!("{}-{revision}", self.upstream)
    }

    /// The changelog for `revision`: pkg/changelog, with a rebuild entry on top when the
    /// revision is newer than its newest entry.
    pub(super) fn changelog_for(&self, revision: &str) -> anyhow::Result<String> {
        if revision == self.changelog_revision {
            return Ok(self.changelog.clone());
        }
        let newer = match (
            revision.parse::<u64>(),
            self.changelog_revision.parse::<u64>(),
        ) {
            (Ok(r), Ok(top)) => r > top,
            _ => false,
        };
        anyhow::ensure!(
            newer,
            "revision {revision} is not newer than pkg/changelog's {}",
            self.version(&self.changelog_revision)
        );
        Ok(format!(
            "{SOURCE} ({}) unstable; urgency=medium\n\n  * Rebuild of {} as revision {revision}\n    (cargo xtask package --revision {revision}).\n\n -- {}  {}\n\n{}",
            self.version(revision),
            self.version(&self.changelog_revision),
            self.maintainer,
            // A newer entry needs a newer date, even when SOURCE_DATE_EPOCH (the last
            // commit) is the moment the newest entry was written.
            rfc2822(self.epoch.max(self.changelog_date + 60)),
            self.changelog
        ))
    }

    /// Stages and builds every package of `variant` into `out` (emptied of .debs first).
    pub(super) fn build_set(
        &self,
        variant: &Variant,
        stage: &Path,
        out: &Path,
    ) -> anyhow::Result<Vec<PathBuf>> {
        remove_dir_all(stage)?;
        fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        for entry in fs::read_dir(out)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "deb") {
                fs::remove_file(&path)?;
            }
        }
        let changelog = self.changelog_for(&variant.revision)?;
        let mut debs = Vec::new();
        for spec in SPECS {
            let dir = stage.join(spec.name);
            let files = self.files(spec, variant, &changelog)?;
            stage_tree(&dir, &files, variant.reverse)?;
            let control = self.control(spec, variant, &dir)?;
            write_control(&dir, spec, &files, &control, &self.root)?;
            let deb = out.join(format!(
                "{}_{}_{}.deb",
                spec.name,
                self.version(&variant.revision),
                self.arch
            ));
            let mut cmd = Command::new("dpkg-deb");
            cmd.args([
                "--root-owner-group",
                "-Zxz",
                "-z6",
                "--threads-max=1",
                "--build",
            ])
            .arg(&dir)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string());
            output(&mut cmd).with_context(|| format!("dpkg-deb --build {}", spec.name))?;
            debs.push(deb);
        }
        remove_dir_all(stage)?;
        Ok(debs)
    }

    /// The files of one package.
    pub(super) fn files(
        &self,
        spec: &Spec,
        variant: &Variant,
        changelog: &str,
    ) -> anyhow::Result<Vec<Entry>> {
        let mut files = Vec::new();
        let doc = format!("usr/share/doc/{}", spec.name);
        for bin in spec.bins {
            let mut e = Entry::file(
                format!("usr/bin/{bin}"),
                0o755,
                Src::Path(self.bins.join(bin)),
            );
            e.elf = true;
            files.push(e);
        }
        for f in self
            .generated
            .iter()
            .filter(|f| spec.bins.contains(&f.binary))
        {
            let dest = match f.kind {
                man::Kind::Man => format!("usr/share/man/man1/{}", f.file_name()),
                man::Kind::Completion(clap_complete::Shell::Bash) => {
                    format!("usr/share/bash-completion/completions/{}", f.binary)
                }
                man::Kind::Completion(clap_complete::Shell::Zsh) => {
                    format!("usr/share/zsh/vendor-completions/_{}", f.binary)
                }
                man::Kind::Completion(clap_complete::Shell::Fish) => {
                    format!("usr/share/fish/vendor_completions.d/{}.fish", f.binary)
                }
                man::Kind::Completion(other) => anyhow::bail!("no place for {other} completions"),
            };
            let mut e = Entry::file(dest, 0o644, Src::Bytes(f.contents.clone()));
            e.gzip = f.kind == man::Kind::Man;
            files.push(e);
        }
        files.push(Entry::file(
            format!("{doc}/copyright"),
            0o644,
            Src::Bytes(self.copyright.clone().into_bytes()),
        ));
        let mut e = Entry::file(
            format!("{doc}/changelog.Debian"),
            0o644,
            Src::Bytes(changelog.as_bytes().to_vec()),
        );
        e.gzip = true;
        files.push(e);
        if let Some(readme) = spec.readme {
            let mut e = Entry::file(
                format!("{doc}/README.md"),
                0o644,
                Src::Path(self.root.join(readme)),
            );
            e.gzip = true;
            files.push(e);
        }
        match spec.name {
            "hookrun" => {
                let mut conf = fs::read(self.root.join("pkg/hookrun.toml"))
                    .context("cannot read pkg/hookrun.toml")?;
                if let Some(note) = variant.conffile_note {
                    conf.extend_from_slice(format!("\n{note}\n").as_bytes());
                }
                files.push(Entry::conffile(
                    "etc/hookrun/hookrun.toml",
                    Src::Bytes(conf),
                ));
                files.push(Entry::conffile(
                    "etc/logrotate.d/hookrun",
                    Src::Path(self.root.join("pkg/logrotate")),
                ));
                for d in HOOKS_DIRS {
                    files.push(Entry::dir(format!("etc/hookrun/{d}.d"), 0o755));
                }
            }
            "hookrun-contrib" => {
                let dir = self.root.join("hooks-contrib/hooks.d");
                let mut hooks: Vec<_> = fs::read_dir(&dir)
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()?;
                hooks.sort();
                for h in hooks {
                    let h = h.to_string_lossy();
                    files.push(Entry::file(
                        format!("usr/share/hookrun/hooks.d/{h}"),
                        0o755,
                        Src::Path(dir.join(&*h)),
                    ));
                }
            }
            _ => {}
        }
        Ok(files)
    }

    pub(super) fn control(
        &self,
        spec: &Spec,
        variant: &Variant,
        dir: &Path,
    ) -> anyhow::Result<String> {
        let version = self.version(&variant.revision);
        let mut depends = Vec::new();
        if spec.name != SOURCE {
            depends.push(format!("{SOURCE} (= {version})"));
        }
        depends.push(shlibdeps(
            &self.target,
            &spec
                .bins
                .iter()
                .map(|b| self.bins.join(b))
                .collect::<Vec<_>>(),
        )?);
        let mut c = String::new();
        let _ = writeln!(c, "Package: {}", spec.name);
        if spec.name != SOURCE {
            let _ = writeln!(c, "Source: {SOURCE}");
        }
        let _ = writeln!(c, "Version: {version}");
        let _ = writeln!(c, "Architecture: {}", self.arch);
        let _ = writeln!(c, "Maintainer: {}", self.maintainer);
        let _ = writeln!(c, "Installed-Size: {}", installed_size(dir)?);
        let _ = writeln!(c, "Depends: {}", depends.join(", "));
        if !spec.recommends.is_empty() {
            let _ = writeln!(c, "Recommends: {}", spec.recommends.join(", "));
        }
        let _ = writeln!(c, "Section: admin");
        let _ = writeln!(c, "Priority: optional");
        let _ = writeln!(c, "Homepage: {HOMEPAGE}");
        let _ = writeln!(c, "Description: {}", spec.summary);
        for (i, para) in spec.description.split("\n\n").enumerate() {
            if i > 0 {
                c.push_str(" .\n");
            }
            for line in wrap(para, 76) {
                let _ = writeln!(c, " {line}");
            }
        }
        Ok(c)
    }
}

/// Where a staged file's bytes come from.
pub(super) enum Src {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Dir,
}

pub(super) struct Entry {
    /// Relative to the package root; `.gz` is appended when `gzip` is set.
    pub(super) dest: String,
    pub(super) mode: u32,
    pub(super) src: Src,
    pub(super) gzip: bool,
    pub(super) conffile: bool,
    /// A binary: drop the sections dh_strip drops (`.comment`, `.note`); the symbols are
    /// already gone (`strip = "symbols"` in the release profile).
    pub(super) elf: bool,
}

impl Entry {
    pub(super) fn file(dest: String, mode: u32, src: Src) -> Entry {
        Entry {
            dest,
            mode,
            src,
            gzip: false,
            conffile: false,
            elf: false,
        }
    }

    pub(super) fn conffile(dest: &str, src: Src) -> Entry {
        Entry {
            conffile: true,
            ..Entry::file(dest.to_owned(), 0o644, src)
        }
    }

    pub(super) fn dir(dest: String, mode: u32) -> Entry {
        Entry::file(dest, mode, Src::Dir)
    }

    pub(super) fn installed_path(&self) -> String {
        if self.gzip {
            format!("{}.gz", self.dest)
        } else {
            self.dest.clone()
        }
    }
}

/// Creates `dir` with every entry, with explicit modes (the umask never matters) and
/// every parent directory 0755.
pub(super) fn stage_tree(dir: &Path, files: &[Entry], reverse: bool) -> anyhow::Result<()> {
    let mkdir = |path: &Path, mode: u32| -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_owned());
            p = p.parent().context("no parent")?;
        }
        for m in missing.iter().rev() {
            fs::create_dir(m).with_context(|| format!("cannot create {}", m.display()))?;
            fs::set_permissions(m, fs::Permissions::from_mode(0o755))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    mkdir(dir, 0o755)?;
    let order: Vec<&Entry> = if reverse {
        files.iter().rev().collect()
    } else {
        files.iter().collect()
    };
    for e in order {
        let path = dir.join(&e.dest);
        if let Src::Dir = e.src {
            mkdir(&path, e.mode)?;
            continue;
        }
        mkdir(path.parent().context("no parent")?, 0o755)?;
        match &e.src {
            Src::Path(p) => {
                fs::copy(p, &path).with_context(|| format!("cannot copy {}", p.display()))?;
            }
            Src::Bytes(b) => fs::write(&path, b)?,
            Src::Dir => unreachable!(),
        }
        if e.gzip {
            output(Command::new("gzip").arg("-9n").arg(&path))?;
        }
        if e.elf {
            output(
                Command::new("strip")
                    .args(["--remove-section=.comment", "--remove-section=.note"])
                    .arg(&path),
            )
            .context("cannot run strip (apt-get install binutils)")?;
        }
        fs::set_permissions(
            dir.join(e.installed_path()),
            fs::Permissions::from_mode(e.mode),
        )?;
    }
    // The parents of entries with a special mode were created 0755 before them.
    for e in files.iter().filter(|e| matches!(e.src, Src::Dir)) {
        fs::set_permissions(dir.join(&e.dest), fs::Permissions::from_mode(e.mode))?;
    }
    Ok(())
}

/// DEBIAN/{control,md5sums,conffiles} and the maintainer scripts.
pub(super) fn write_control(
    dir: &Path,
    spec: &Spec,
    files: &[Entry],
    control: &str,
    root: &Path,
) -> anyhow::Result<()> {
    let debian = dir.join("DEBIAN");
    fs::create_dir(&debian)?;
    fs::set_permissions(&debian, fs::Permissions::from_mode(0o755))?;
    let write = |name: &str, contents: &[u8], mode: u32| -> anyhow::Result<()> {
        let p = debian.join(name);
        fs::write(&p, contents)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    write("control", control.as_bytes(), 0o644)?;
    // Like dh_md5sums: every regular file except the conffiles (dpkg tracks those itself).
    let mut sums: Vec<String> = files
        .iter()
        .filter(|e| !e.conffile && !matches!(e.src, Src::Dir))
        .map(Entry::installed_path)
        .collect();
    sums.sort();
    let md5 = output(
        Command::new("md5sum")
            .arg("--")
            .args(&sums)
            .current_dir(dir),
    )?;
    write("md5sums", md5.as_bytes(), 0o644)?;
    let conffiles: String = files
        .iter()
        .filter(|e| e.conffile)
        .map(|e| format!("/{}\n", e.dest))
        .collect();
    if !conffiles.is_empty() {
        write("conffiles", conffiles.as_bytes(), 0o644)?;
    }
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        let src = root.join(format!("pkg/{}.{script}", spec.name));
        if src.exists() {
            write(script, &fs::read(&src)?, 0o755)?;
        }
    }
    Ok(())
}

/// dpkg-gencontrol's Installed-Size: KiB of every regular file (rounded up) plus 1 for
/// every other entry.
pub(super) fn installed_size(dir: &Path) -> anyhow::Result<u64> {
    pub(super) fn walk(p: &Path, total: &mut u64) -> std::io::Result<()> {
        for entry in fs::read_dir(p)? {
            let entry = entry?;
            if entry.file_name() == "DEBIAN" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                *total += meta.len().div_ceil(1024);
            } else {
                *total += 1;
                if meta.is_dir() {
                    walk(&entry.path(), total)?;
                }
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(dir, &mut total)?;
    Ok(total)
}

/// `shlibs:Depends` for `bins`, from dpkg-shlibdeps (which wants a `debian/control`).
pub(super) fn shlibdeps(target: &Path, bins: &[PathBuf]) -> anyhow::Result<String> {
    let scratch = target.join("package/shlibdeps");
    fs::create_dir_all(scratch.join("debian"))?;
    fs::write(
        scratch.join("debian/control"),
        format!("Source: {SOURCE}\n\nPackage: {SOURCE}\nArchitecture: any\n"),
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.arg("-O").current_dir(&scratch);
    for b in bins {
        cmd.arg(format!("-e{}", b.display()));
    }
    let out = output(&mut cmd).context(
        "dpkg-shlibdeps failed (it is in the dpkg-dev package: apt-get install dpkg-dev)",
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// `--remap-path-prefix` flags for the cargo home and the checkout, so that panic
/// locations in release binaries do not name the build machine's directories.
pub(crate) fn remap_flags(root: &Path) -> anyhow::Result<Vec<String>> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let mut flags = vec![
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/build/hookrun", root.display()),
    ];
    if let Ok(real) = cargo_home.canonicalize()
        && real != cargo_home
    {
        flags.push(format!("--remap-path-prefix={}=/cargo", real.display()));
    }
    Ok(flags)
}

/// The release build, into its own target directory with paths remapped.
pub(super) fn build_binaries(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let build_dir = target.join("package/cargo");
    let flags = remap_flags(root)?;
    let mut cmd = Command::new(crate::cargo());
    cmd.args(["build", "--release", "--locked", "--bins"])
        .arg("--target-dir")
        .arg(&build_dir)
        .current_dir(root)
        // Replaces RUSTFLAGS and build.rustflags: the packages never depend on the
        // developer's flags.
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    for c in CRATES {
        cmd.args(["-p", c]);
    }
    eprintln!(
        "==> xtask package: cargo build --release (into {})",
        build_dir.display()
    );
    let status = cmd.status().context("cannot run cargo build")?;
    anyhow::ensure!(status.success(), "cargo build --release failed ({status})");
    let bins = build_dir.join("release");
    for b in man::BINARIES {
        let path = bins.join(b);
        let what = output(Command::new("file").arg("-b").arg(&path))
            .context("cannot run `file` (apt-get install file)")?;
        anyhow::ensure!(
            what.contains("ELF") && what.contains(", stripped") && !what.contains("debug_info"),
            "{} is not a stripped ELF binary: {what}",
            path.display()
        );
    }
    Ok(bins)
}
