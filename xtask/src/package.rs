//! `cargo xtask package`: one Debian package per platform, built from a staged tree with
//! `dpkg-deb` (Part B.1 route 2 of the packaging report: nothing from crates.io, every
//! byte under our control).
//!
//! - binaries: a `--release --locked` build into `target/package/cargo` with the
//!   workspace's release profile (`strip = "symbols"`; checked with `file`), and with
//!   `--remap-path-prefix` for the cargo home and the checkout, so that the panic
//!   locations in the binaries do not name the build machine's directories;
//! - `Depends`: `dpkg-shlibdeps` (dpkg-dev) on each package's binaries, from a scratch
//!   directory holding the `debian/control` it insists on, plus `hookrun (= VERSION)` for
//!   every package but `hookrun` itself;
//! - man pages and completions: generated in memory ([`crate::man`]), gzipped with
//!   `gzip -9n`; `pkg/` holds the conffile, the logrotate rule, the copyright, the
//!   changelog and the maintainer scripts (`hookrun.postinst`, `hookrun.postrm`);
//! - reproducible: `SOURCE_DATE_EPOCH` (default: the last commit's time) for the
//!   changelog dates and `dpkg-deb`'s mtime clamping; `dpkg-deb --root-owner-group -Zxz
//!   --threads-max=1`, so that the xz stream does not depend on the machine's core count.
//!
//! `--check` (run by `cargo xtask test`) then proves the result: lintian with no error
//! or warning tag, a second build that is byte-identical, and an install, upgrade and
//! purge cycle in a chroot made with debootstrap (see [`install_cycle`]).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use crate::man;

const HOMEPAGE: &str = "https://github.com/hookrun/hookrun";
/// The source package every binary package comes from (and the changelog's name).
const SOURCE: &str = "hookrun";
/// Where the chroot of the install cycle comes from.
const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The workspace crates whose binaries are packaged.
pub(crate) const CRATES: &[&str] = &[
    "hookrun",
    "hookrun-vzdump",
    "hookrun-pve-guest",
    "hookrun-libvirt",
    "hookrun-worker",
    "hookrun-contrib",
];
/// The hooks directories the `hookrun` package creates (DESIGN §6 defaults).
const HOOKS_DIRS: &[&str] = &[
    "vzdump",
    "pve-guest",
    "libvirt-qemu",
    "libvirt-lxc",
    "libvirt-network",
    "libvirt-daemon",
    "worker",
];

/// `cargo xtask package`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build Debian revision N instead of the changelog's (e.g. 2)
    #[arg(long, value_name = "N", value_parser = parse_revision)]
    revision: Option<String>,
    /// Then prove the result: lintian, reproducibility, install/upgrade/purge in a chroot
    #[arg(long)]
    check: bool,
    /// Build only the static tarball
    #[arg(long)]
    static_only: bool,
}

fn parse_revision(r: &str) -> Result<String, String> {
    if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) {
        Ok(r.to_owned())
    } else {
        Err("--revision takes a number (the Debian revision, e.g. 2)".to_owned())
    }
}

/// `cargo xtask package [--revision N] [--check] [--static-only]`.
pub fn main(root: &Path, target: &Path, args: &Args) -> anyhow::Result<ExitCode> {
    let Args {
        revision,
        check,
        static_only,
    } = args;
    let (revision, check, static_only) = (revision.clone(), *check, *static_only);
    if check {
        anyhow::ensure!(
            revision.is_none(),
            "--check builds the changelog's revision and its successors itself; drop --revision"
        );
        return self::check(root, target);
    }
    let started = Instant::now();
    if static_only {
        let tarball = crate::static_build::build(root, target)?;
        println!("{}", tarball.display());
        return Ok(ExitCode::SUCCESS);
    }
    let prepared = Prepared::new(root, target)?;
    let revision = revision.unwrap_or_else(|| prepared.changelog_revision.clone());
    let out = target.join("debian");
    let debs = prepared.build_set(
        &Variant::new(&revision),
        &target.join("package/stage"),
        &out,
    )?;
    for deb in &debs {
        println!("{}", deb.display());
    }
    let tarball = crate::static_build::build(root, target)?;
    println!("{}", tarball.display());
    eprintln!(
        "xtask package: {} packages in {} ({})",
        debs.len(),
        out.display(),
        crate::elapsed(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// What one set of packages is built with.
struct Variant {
    revision: String,
    /// Stage the files in reverse order (the reproducibility check: the order in which
    /// files are created must not matter).
    reverse: bool,
    /// A line appended to the shipped hookrun.toml (the install cycle's "new upstream
    /// conffile").
    conffile_note: Option<&'static str>,
}

impl Variant {
    fn new(revision: &str) -> Variant {
        Variant {
            revision: revision.to_owned(),
            reverse: false,
            conffile_note: None,
        }
    }
}

/// Everything that does not depend on the revision: binaries, generated files, metadata.
struct Prepared {
    root: PathBuf,
    target: PathBuf,
    upstream: String,
    arch: String,
    epoch: u64,
    maintainer: String,
    changelog: String,
    /// The date of pkg/changelog's newest entry.
    changelog_date: u64,
    changelog_revision: String,
    bins: PathBuf,
    generated: Vec<man::File>,
    copyright: String,
}

/// One binary package.
struct Spec {
    name: &'static str,
    summary: &'static str,
    description: &'static str,
    bins: &'static [&'static str],
    recommends: &'static [&'static str],
    readme: Option<&'static str>,
}

const SPECS: &[Spec] = &[
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
    fn new(root: &Path, target: &Path) -> anyhow::Result<Prepared> {
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

    fn version(&self, revision: &str) -> String {
        format!("{}-{revision}", self.upstream)
    }

    /// The changelog for `revision`: pkg/changelog, with a rebuild entry on top when the
    /// revision is newer than its newest entry.
    fn changelog_for(&self, revision: &str) -> anyhow::Result<String> {
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
    fn build_set(
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
    fn files(&self, spec: &Spec, variant: &Variant, changelog: &str) -> anyhow::Result<Vec<Entry>> {
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

    fn control(&self, spec: &Spec, variant: &Variant, dir: &Path) -> anyhow::Result<String> {
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
enum Src {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Dir,
}

struct Entry {
    /// Relative to the package root; `.gz` is appended when `gzip` is set.
    dest: String,
    mode: u32,
    src: Src,
    gzip: bool,
    conffile: bool,
    /// A binary: drop the sections dh_strip drops (`.comment`, `.note`); the symbols are
    /// already gone (`strip = "symbols"` in the release profile).
    elf: bool,
}

impl Entry {
    fn file(dest: String, mode: u32, src: Src) -> Entry {
        Entry {
            dest,
            mode,
            src,
            gzip: false,
            conffile: false,
            elf: false,
        }
    }

    fn conffile(dest: &str, src: Src) -> Entry {
        Entry {
            conffile: true,
            ..Entry::file(dest.to_owned(), 0o644, src)
        }
    }

    fn dir(dest: String, mode: u32) -> Entry {
        Entry::file(dest, mode, Src::Dir)
    }

    fn installed_path(&self) -> String {
        if self.gzip {
            format!("{}.gz", self.dest)
        } else {
            self.dest.clone()
        }
    }
}

/// Creates `dir` with every entry, with explicit modes (the umask never matters) and
/// every parent directory 0755.
fn stage_tree(dir: &Path, files: &[Entry], reverse: bool) -> anyhow::Result<()> {
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
fn write_control(
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
fn installed_size(dir: &Path) -> anyhow::Result<u64> {
    fn walk(p: &Path, total: &mut u64) -> std::io::Result<()> {
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
fn shlibdeps(target: &Path, bins: &[PathBuf]) -> anyhow::Result<String> {
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
fn build_binaries(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
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

/// The crates.io crates linked into the packaged binaries (normal dependencies of the
/// packaged crates, proc macros excluded), one ` name version (license)` line each.
fn linked_crates(root: &Path) -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "rustc".into());
    let host = output(Command::new(rustc).arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")?;
    let json = output(
        Command::new(crate::cargo())
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .current_dir(root),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&json)?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let by_id = |id: &str| packages.iter().find(|p| p["id"] == id);
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata: no resolve")?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut queue: Vec<String> = members
        .iter()
        .filter(|id| by_id(id).is_some_and(|p| CRATES.iter().any(|c| p["name"] == *c)))
        .map(|id| (*id).to_owned())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == *id.as_str());
        for dep in node
            .and_then(|n| n["deps"].as_array())
            .into_iter()
            .flatten()
        {
            let normal = dep["dep_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()));
            let proc_macro = by_id(dep["pkg"].as_str().unwrap_or_default()).is_some_and(|p| {
                p["targets"].as_array().into_iter().flatten().any(|t| {
                    t["kind"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k == "proc-macro")
                })
            });
            if normal
                && !proc_macro
                && let Some(pkg) = dep["pkg"].as_str()
            {
                queue.push(pkg.to_owned());
            }
        }
    }
    let mut lines: Vec<String> = seen
        .iter()
        .filter(|id| !members.contains(&id.as_str()))
        .filter_map(|id| by_id(id))
        .map(|p| {
            format!(
                " {} {} ({})",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["license"].as_str().unwrap_or("license not declared")
            )
        })
        .collect();
    lines.sort();
    lines.dedup();
    Ok(lines.join("\n"))
}

/// `[workspace.package] version` from the root manifest.
pub(crate) fn workspace_version(root: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(root.join("Cargo.toml"))?;
    let doc: toml::Table = text.parse().context("Cargo.toml does not parse")?;
    doc.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("no [workspace.package] version in Cargo.toml")
}

/// The newest entry of a Debian changelog.
pub struct ChangelogTop {
    pub version: String,
    /// `Name <email>`.
    pub maintainer: String,
    /// Seconds since the epoch.
    pub date: u64,
}

/// Reads the newest entry's first line (`hookrun (VERSION) ...`) and its trailer line
/// (` -- NAME <EMAIL>  Sat, 21 Nov 2026 16:20:40 +0000`).
pub fn changelog_top(changelog: &str) -> anyhow::Result<ChangelogTop> {
    let first = changelog.lines().next().unwrap_or_default();
    let version = first
        .strip_prefix(&format!("{SOURCE} ("))
        .and_then(|r| r.split_once(')'))
        .map(|(v, _)| v.to_owned())
        .with_context(|| format!("pkg/changelog does not start with '{SOURCE} (VERSION)'"))?;
    let (maintainer, date) = changelog
        .lines()
        .find_map(|l| l.strip_prefix(" -- "))
        .and_then(|l| l.split_once(">  "))
        .context("pkg/changelog's newest entry has no ' -- NAME <EMAIL>  DATE' line")?;
    let parsed = parse_rfc2822(date)
        .with_context(|| format!("pkg/changelog: cannot read the date '{date}'"))?;
    Ok(ChangelogTop {
        version,
        maintainer: format!("{maintainer}>"),
        date: parsed,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The inverse of [`rfc2822`], for any `+HHMM`/`-HHMM` offset.
fn parse_rfc2822(date: &str) -> Option<u64> {
    let fields: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, offset] = fields.as_slice() else {
        return None;
    };
    let month = u32::try_from(MONTHS.iter().position(|m| m == month)? + 1).ok()?;
    let days = hookrun_core::time::days_from_civil(year.parse().ok()?, month, day.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    let (sign, hhmm) = offset.split_at_checked(1)?;
    let hhmm: i64 = hhmm.parse().ok()?;
    let offset = (hhmm / 100 * 3600 + hhmm % 100 * 60) * if sign == "-" { -1 } else { 1 };
    u64::try_from(days * 86400 + h * 3600 + m * 60 + sec - offset).ok()
}

/// `SOURCE_DATE_EPOCH`, else the last commit's time.
pub(crate) fn source_date_epoch(root: &Path) -> anyhow::Result<u64> {
    let value = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v,
        _ => output(Command::new("git").args(["log", "-1", "--pretty=%ct"]).current_dir(root))
            .context("SOURCE_DATE_EPOCH is not set and `git log` cannot provide it (not a git checkout?): set SOURCE_DATE_EPOCH")?,
    };
    value.trim().parse().with_context(|| {
        format!(
            "SOURCE_DATE_EPOCH '{}' is not a number of seconds",
            value.trim()
        )
    })
}

/// `Sat, 21 Nov 2026 16:20:40 +0000`, the date format of Debian changelogs.
fn rfc2822(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let days = epoch / 86400;
    let secs = epoch % 86400;
    let (y, m, d) = hookrun_core::time::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Greedy word wrap.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Runs `cmd` and returns its stdout; a failure shows its output.
pub(crate) fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
}

pub(crate) fn remove_dir_all(p: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

// ---------------------------------------------------------------------------------------
// --check

/// One step of the check, printed like `cargo xtask test`'s steps.
fn step<T>(
    n: usize,
    total: usize,
    name: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    eprintln!("\n==> xtask package --check [{n}/{total}] {name}");
    let started = Instant::now();
    let r = f().with_context(|| format!("package check '{name}' failed"));
    if r.is_ok() {
        eprintln!("    {name}: ok ({})", crate::elapsed(started.elapsed()));
    }
    r
}

/// Build, lintian, reproducibility, install/upgrade/purge.
pub fn check(root: &Path, target: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let total = 4;
    let work = target.join("package");
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "the install cycle of the check runs dpkg in a chroot and needs root"
    );
    // The chroot's base system is made (once) while the release build runs; it is
    // waited for even when an earlier step fails, so that no debootstrap outlives us.
    let base = {
        let work = work.clone();
        std::thread::spawn(move || base_system(&work))
    };
    let built = build_and_compare(root, target, &work, total);
    let base = base
        .join()
        .map_err(|_| anyhow::format_err!("the debootstrap thread panicked"))?;
    let (prepared, debs) = built?;
    step(4, total, "install, upgrade and purge in a chroot", || {
        let base = base?;
        let revision = |plus: u64| -> anyhow::Result<String> {
            Ok((prepared.changelog_revision.parse::<u64>()? + plus).to_string())
        };
        let upgrade = prepared.build_set(
            &Variant::new(&revision(1)?),
            &work.join("stage-upgrade"),
            &work.join("upgrade"),
        )?;
        // A rebuild's changelog gets an entry of its own: lintian must like it too.
        lintian(&upgrade[..1], &work.join("lintian-tmp"))?;
        let v = Variant {
            conffile_note: Some(CONFFILE_NOTE),
            ..Variant::new(&revision(2)?)
        };
        let conffile_change =
            prepared.build_set(&v, &work.join("stage-conffile"), &work.join("conffile"))?;
        let sets = [debs.as_slice(), &upgrade, &conffile_change];
        install_cycle(&prepared, &work, &base, &sets)
    })?;
    eprintln!(
        "\nxtask package --check: packages built, lintian-clean, reproducible, and installed, \
         upgraded and purged cleanly in {}",
        crate::elapsed(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// Steps 1 to 3 of the check: build, lintian, and a second build compared byte by byte.
fn build_and_compare(
    root: &Path,
    target: &Path,
    work: &Path,
    total: usize,
) -> anyhow::Result<(Prepared, Vec<PathBuf>)> {
    let (prepared, debs) = step(1, total, "build the packages", || {
        let p = Prepared::new(root, target)?;
        let v = Variant::new(&p.changelog_revision);
        let debs = p.build_set(&v, &work.join("stage"), &target.join("debian"))?;
        for d in &debs {
            eprintln!("    {}", d.display());
        }
        Ok((p, debs))
    })?;
    step(2, total, "lintian", || {
        lintian(&debs, &work.join("lintian-tmp"))
    })?;
    step(
        3,
        total,
        "reproducible: a second build is byte-identical",
        || {
            // Staged in reverse order, in another directory, at another time.
            let v = Variant {
                reverse: true,
                ..Variant::new(&prepared.changelog_revision)
            };
            let again = prepared.build_set(&v, &work.join("stage-again"), &work.join("again"))?;
            for (a, b) in debs.iter().zip(&again) {
                anyhow::ensure!(
                    fs::read(a)? == fs::read(b)?,
                    "{} and {} differ: the build is not reproducible (compare them with diffoscope)",
                    a.display(),
                    b.display()
                );
                let name = a.file_name().unwrap_or_default().to_string_lossy();
                eprintln!("    {}  {name}", sha256(a)?);
            }
            remove_dir_all(&work.join("again"))
        },
    )?;
    Ok((prepared, debs))
}

const CONFFILE_NOTE: &str = "# A line added upstream (the install cycle's conffile change).";
const LOCAL_NOTE: &str = "# A local change the upgrades must keep.\nkill_grace = 7\n";

fn sha256(p: &Path) -> anyhow::Result<String> {
    let out = output(Command::new("sha256sum").arg(p))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// lintian on every package; any error or warning tag fails. `initial-upload-closes-no-bugs`
/// is expected for a package that is not uploaded to Debian.
fn lintian(debs: &[PathBuf], tmp: &Path) -> anyhow::Result<()> {
    // lintian leaves mldbm-elf-* files in $TMPDIR; give it its own.
    remove_dir_all(tmp)?;
    fs::create_dir_all(tmp)?;
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--display-info",
            "--suppress-tags",
            "initial-upload-closes-no-bugs",
            "--tag-display-limit",
            "0",
        ])
        .args(debs)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .output()
        .context("cannot run lintian (apt-get install lintian)")?;
    remove_dir_all(tmp)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if !line.contains("running with root privileges is not recommended") {
            eprintln!("    lintian: {line}");
        }
    }
    for line in stdout.lines() {
        eprintln!("    {line}");
    }
    let bad: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    anyhow::ensure!(
        out.status.success() && bad.is_empty(),
        "lintian found {} error/warning tag(s) (exit {}); fix the packaging in xtask/src/package.rs or pkg/",
        bad.len(),
        out.status
    );
    if stdout.trim().is_empty() {
        eprintln!("    lintian: no tags");
    }
    Ok(())
}

/// The debootstrap'ed base system, made once and kept in `target/package/`.
fn base_system(work: &Path) -> anyhow::Result<PathBuf> {
    let base = work.join(format!("debootstrap-{SUITE}-minbase"));
    let done = work.join(format!("debootstrap-{SUITE}-minbase.ok"));
    if done.exists() && base.is_dir() {
        return Ok(base);
    }
    let tmp = work.join(format!("debootstrap-{SUITE}-minbase.tmp"));
    remove_dir_all(&tmp)?;
    remove_dir_all(&base)?;
    let mirror = std::env::var("HOOKRUN_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
    eprintln!(
        "    debootstrap --variant=minbase --include=logrotate {SUITE} (once; kept in {}) from {mirror}",
        base.display()
    );
    output(
        Command::new("debootstrap")
            .args(["--variant=minbase", "--include=logrotate", SUITE])
            .arg(&tmp)
            .arg(&mirror),
    )
    .context("debootstrap failed (apt-get install debootstrap; HOOKRUN_DEBIAN_MIRROR selects another mirror)")?;
    fs::rename(&tmp, &base)?;
    fs::write(&done, "")?;
    Ok(base)
}

/// A chroot: a fresh copy of the base system, removed when the cycle passed.
struct Chroot {
    dir: PathBuf,
}

impl Chroot {
    /// Runs a command in the chroot; returns its stdout, fails with its output.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        output(
            Command::new("chroot")
                .arg(&self.dir)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LC_ALL", "C")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("in the chroot {}: {}", self.dir.display(), args.join(" ")))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    fn mode(&self, p: &str) -> anyhow::Result<u32> {
        let meta = fs::symlink_metadata(self.path(p)).with_context(|| format!("{p} is missing"))?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    fn expect_mode(&self, p: &str, mode: u32) -> anyhow::Result<()> {
        let m = self.mode(p)?;
        anyhow::ensure!(m == mode, "{p} has mode {m:o}, expected {mode:o}");
        Ok(())
    }

    fn read(&self, p: &str) -> anyhow::Result<String> {
        fs::read_to_string(self.path(p)).with_context(|| format!("cannot read {p}"))
    }

    /// `NAME STATUS VERSION` for each of our packages (`NAME not-known` when dpkg has
    /// forgotten it).
    fn status(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for s in SPECS {
            let line = output(
                Command::new("dpkg-query")
                    .arg(format!(
                        "--admindir={}",
                        self.path("var/lib/dpkg").display()
                    ))
                    .args(["-W", "-f=${db:Status-Status} ${Version}", s.name]),
            )
            .unwrap_or_else(|_| "not-known".to_owned());
            out.push(format!("{} {line}", s.name));
        }
        Ok(out)
    }

    /// Every package's `status version` starts with one of `what`.
    fn expect_status(&self, what: &[&str]) -> anyhow::Result<()> {
        for line in self.status()? {
            let (_, state) = line.split_once(' ').unwrap_or_default();
            anyhow::ensure!(
                what.iter().any(|w| state.starts_with(w)),
                "expected {what:?} for every package, got: {line}"
            );
        }
        Ok(())
    }
}

/// Every path in the chroot with its type and mode, except the package manager's own
/// state and scratch places.
fn snapshot(dir: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    const SKIP: &[&str] = &[
        "var/lib/dpkg",
        "var/cache",
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "tmp",
        "proc",
        "sys",
        "dev",
        "etc/ld.so.cache",
    ];
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut std::collections::BTreeSet<String>,
    ) -> anyhow::Result<()> {
        for entry in fs::read_dir(root.join(rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let key = rel.to_string_lossy().into_owned();
            if SKIP.contains(&key.as_str()) {
                continue;
            }
            let meta = entry.metadata()?;
            let kind = if meta.is_dir() {
                'd'
            } else if meta.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            out.insert(format!(
                "{key} {kind}{:o}",
                meta.permissions().mode() & 0o7777
            ));
            if meta.is_dir() {
                walk(root, &rel, out)?;
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeSet::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}

/// The install cycle, in a fresh copy of the debootstrap'ed system:
///
/// 1. install revision N (`sets[0]`), check files, modes, conffiles and that every
///    binary runs; run a real dispatch (a run record, a lock); change the conffile;
/// 2. upgrade to N+1 (same conffile): dpkg must keep the local file without asking —
///    stdin is /dev/null and no `--force-conf*` option is given, so a prompt would fail;
/// 3. upgrade to N+2, whose conffile changed upstream: without an option dpkg stops at
///    its prompt (which proves that step 2 would have noticed one); with
///    `--force-confold` the local file stays and the new one lands beside it as
///    `.dpkg-dist`;
/// 4. remove: the binaries go, the conffiles and the run records stay;
/// 5. purge: nothing of ours stays, only the hook the admin put into /etc/hookrun.
fn install_cycle(
    prepared: &Prepared,
    work: &Path,
    base: &Path,
    sets: &[&[PathBuf]; 3],
) -> anyhow::Result<()> {
    let dir = work.join("chroot");
    remove_dir_all(&dir)?;
    output(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base)
            .arg(&dir),
    )?;
    let c = Chroot { dir };
    let before = snapshot(&c.dir)?;
    for (i, set) in sets.iter().enumerate() {
        let to = c.path(&format!("tmp/debs-{i}"));
        fs::create_dir_all(&to)?;
        for deb in set.iter() {
            fs::copy(deb, to.join(deb.file_name().context("no file name")?))?;
        }
    }
    let debs = |i: usize, only: Option<&str>| -> Vec<String> {
        sets[i]
            .iter()
            .filter_map(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| only.is_none_or(|o| n.starts_with(&format!("{o}_"))))
            .map(|n| format!("/tmp/debs-{i}/{n}"))
            .collect()
    };
    let dpkg = |opts: &[&str], debs: &[String]| -> anyhow::Result<String> {
        let mut args = vec!["dpkg"];
        args.extend(opts);
        args.extend(debs.iter().map(String::as_str));
        c.run(&args)
    };
    let v = |i: u64| -> anyhow::Result<String> {
        Ok(prepared.version(&(prepared.changelog_revision.parse::<u64>()? + i).to_string()))
    };

    // 1. Install.
    dpkg(&["--install"], &debs(0, None))?;
    c.expect_status(&[&format!("installed {}", v(0)?)])?;
    for b in man::BINARIES {
        c.expect_mode(&format!("/usr/bin/{b}"), 0o755)?;
        c.expect_mode(&format!("/usr/share/man/man1/{b}.1.gz"), 0o644)?;
        let version = c.run(&[b, "--version"])?;
        anyhow::ensure!(
            version.trim() == format!("{b} {}", prepared.upstream),
            "{b} --version: {version}"
        );
    }
    for f in [
        "/usr/share/man/man1/hookrun-list.1.gz",
        "/usr/share/bash-completion/completions/hookrun",
        "/usr/share/zsh/vendor-completions/_hookrun",
        "/usr/share/fish/vendor_completions.d/hookrun.fish",
        "/usr/share/bash-completion/completions/hookrun-worker",
        "/usr/share/doc/hookrun/copyright",
        "/usr/share/doc/hookrun/changelog.Debian.gz",
        "/usr/share/doc/hookrun/README.md.gz",
        "/usr/share/doc/hookrun-contrib/README.md.gz",
        "/etc/hookrun/hookrun.toml",
        "/etc/logrotate.d/hookrun",
    ] {
        c.expect_mode(f, 0o644)?;
    }
    for d in HOOKS_DIRS {
        c.expect_mode(&format!("/etc/hookrun/{d}.d"), 0o755)?;
    }
    c.expect_mode("/var/log/hookrun", 0o750)?;
    c.expect_mode("/usr/share/hookrun/hooks.d/copy-encrypt-retain", 0o755)?;
    let shipped = fs::read_to_string(prepared.root.join("pkg/hookrun.toml"))?;
    anyhow::ensure!(
        c.read("/etc/hookrun/hookrun.toml")? == shipped,
        "/etc/hookrun/hookrun.toml is not pkg/hookrun.toml"
    );
    let conffiles = c.run(&["dpkg-query", "-W", "-f=${Conffiles}", "hookrun"])?;
    for f in ["/etc/hookrun/hookrun.toml", "/etc/logrotate.d/hookrun"] {
        anyhow::ensure!(
            conffiles.contains(f),
            "{f} is not a conffile of hookrun: {conffiles}"
        );
    }
    c.run(&["logrotate", "--debug", "/etc/logrotate.d/hookrun"])
        .context("logrotate does not accept /etc/logrotate.d/hookrun")?;
    // The shipped configuration (all comments) is valid, and a real dispatch works: it
    // writes a run record and takes a lock, which purge must clean up.
    let hooks = c.path("etc/hookrun/cycle.d");
    fs::create_dir_all(&hooks)?;
    let hook = hooks.join("10-hello");
    fs::write(
        &hook,
        "#!/bin/sh\n# mode: sync\n# phases: test\n# lock: cycle\necho hello from the chroot\n",
    )?;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))?;
    let out = c.run(&["hookrun", "run", "--platform", "cycle", "--phase", "test"])?;
    anyhow::ensure!(
        out.contains("hello from the chroot"),
        "the dispatch did not run the hook: {out}"
    );
    let records = c.read("/var/log/hookrun/runs.jsonl")?;
    anyhow::ensure!(
        records.contains("\"outcome\":\"ok\""),
        "no ok record in runs.jsonl: {records}"
    );
    anyhow::ensure!(
        c.path("run/lock/hookrun").is_dir(),
        "the dispatch created no /run/lock/hookrun"
    );
    // A local change to the conffile.
    let local = format!("{shipped}\n{LOCAL_NOTE}");
    fs::write(c.path("etc/hookrun/hookrun.toml"), &local)?;

    // 2. Upgrade to the next revision: no prompt, no option, local change kept.
    dpkg(&["--install"], &debs(1, None))?;
    c.expect_status(&[&format!("installed {}", v(1)?)])?;
    anyhow::ensure!(
        c.read("/etc/hookrun/hookrun.toml")? == local,
        "the upgrade changed the locally modified hookrun.toml"
    );
    for suffix in ["dpkg-dist", "dpkg-new", "dpkg-old"] {
        anyhow::ensure!(
            !c.path(&format!("etc/hookrun/hookrun.toml.{suffix}"))
                .exists(),
            "the upgrade left hookrun.toml.{suffix}"
        );
    }
    anyhow::ensure!(
        c.read("/var/log/hookrun/runs.jsonl")? == records,
        "the upgrade touched runs.jsonl"
    );

    // 3. An upgrade whose conffile changed upstream. Without an option dpkg asks, and
    // with stdin at EOF that fails: the proof that step 2 would have noticed a prompt.
    // With --force-confold it keeps the local file.
    let asked = dpkg(&["--install"], &debs(2, None));
    anyhow::ensure!(
        asked
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("end of file on stdin at conffile prompt")),
        "dpkg did not stop at the conffile prompt of a changed hookrun.toml: {asked:?}"
    );
    dpkg(&["--force-confold", "--install"], &debs(2, None))?;
    c.expect_status(&[&format!("installed {}", v(2)?)])?;
    anyhow::ensure!(
        c.read("/etc/hookrun/hookrun.toml")? == local,
        "--force-confold did not keep the local hookrun.toml"
    );
    let dist = c.read("/etc/hookrun/hookrun.toml.dpkg-dist")?;
    anyhow::ensure!(
        dist.contains(CONFFILE_NOTE),
        "hookrun.toml.dpkg-dist is not the new upstream file"
    );

    // 4. Remove: the binaries go, the conffiles and the logs stay.
    let names: Vec<String> = SPECS.iter().rev().map(|s| s.name.to_owned()).collect();
    dpkg(&["--remove"], &names)?;
    // hookrun keeps its conffiles; the others have none and are gone.
    c.expect_status(&["config-files", "not-installed ", "not-known"])
        .context("after dpkg --remove")?;
    anyhow::ensure!(
        c.status()?[0] == format!("{SOURCE} config-files {}", v(2)?),
        "after dpkg --remove, hookrun is not in state config-files"
    );
    anyhow::ensure!(
        !c.path("usr/bin/hookrun").exists(),
        "dpkg --remove left /usr/bin/hookrun"
    );
    anyhow::ensure!(
        c.path("etc/hookrun/hookrun.toml").exists(),
        "dpkg --remove removed the conffile"
    );
    anyhow::ensure!(
        c.path("var/log/hookrun/runs.jsonl").exists(),
        "dpkg --remove removed the run records"
    );

    // 5. Purge: nothing of ours is left; the admin's own hook is.
    dpkg(&["--purge"], &names)?;
    c.expect_status(&["not-installed ", "not-known"])
        .context("after dpkg --purge")?;
    let after = snapshot(&c.dir)?;
    let left: Vec<&String> = after.difference(&before).collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    let expected_left = [
        "etc/hookrun d755",
        "etc/hookrun/cycle.d d755",
        "etc/hookrun/cycle.d/10-hello f755",
    ];
    anyhow::ensure!(
        gone.is_empty() && left.iter().map(|s| s.as_str()).eq(expected_left),
        "purge did not restore the system: left behind {left:?} (expected only the admin's hook {expected_left:?}), removed {gone:?}"
    );
    eprintln!(
        "    installed {}, upgraded to {} (local conffile kept, no prompt) and {} (--force-confold, .dpkg-dist), removed, purged: only the admin's own hook is left",
        v(0)?,
        v(1)?,
        v(2)?
    );
    remove_dir_all(&c.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_dates() {
        assert_eq!(rfc2822(1_795_278_040), "Sat, 21 Nov 2026 16:20:40 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        for t in [0, 1_795_278_040, 951_782_400] {
            assert_eq!(parse_rfc2822(&rfc2822(t)), Some(t));
        }
        assert_eq!(
            parse_rfc2822("Sat, 21 Nov 2026 18:20:40 +0200"),
            Some(1_795_278_040)
        );
        assert_eq!(parse_rfc2822("21 Nov 2026"), None);
    }

    #[test]
    fn the_changelog_matches_the_workspace_version() {
        let root = crate::project_root();
        let changelog = fs::read_to_string(root.join("pkg/changelog")).unwrap();
        let top = changelog_top(&changelog).unwrap();
        let version = top.version;
        assert!(
            version.starts_with(&format!("{}-", workspace_version(&root).unwrap())),
            "pkg/changelog's newest entry {version} is not for the workspace version: add one"
        );
        let maintainer = top.maintainer;
        assert!(
            maintainer.contains('<') && maintainer.ends_with('>'),
            "{maintainer}"
        );
    }

    #[test]
    fn descriptions_wrap() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        for s in SPECS {
            assert!(
                s.summary.len() < 80 && !s.summary.ends_with('.'),
                "{}",
                s.name
            );
        }
    }

    /// The shipped configuration file is all comments, and its commented-out settings
    /// are the real defaults: uncommenting every `#key = value` and `#[table]` line gives
    /// exactly the built-in settings and each platform's default hooks directory.
    #[test]
    fn the_conffile_documents_the_defaults() {
        use hookrun_core::Config;
        let root = crate::project_root();
        let text = fs::read_to_string(root.join("pkg/hookrun.toml")).unwrap();
        let path = Path::new("/etc/hookrun/hookrun.toml");
        let as_shipped = Config::parse(&text, path).unwrap();
        assert_eq!(as_shipped.platform_names().count(), 0);
        assert_eq!(
            as_shipped.settings_for("vzdump"),
            hookrun_core::Settings::default()
        );

        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let config = Config::parse(&uncommented, path).unwrap();
        let top = config.settings_for("no-such-platform");
        assert_eq!(top, hookrun_core::Settings::default(), "{uncommented}");
        let mut keys = 0;
        for line in uncommented.lines() {
            if let Some((k, _)) = line.split_once(" = ")
                && !k.starts_with('#')
                && k != "hooks_dir"
            {
                keys += 1;
            }
        }
        // Every key but default_timeout (which has no default) is shown.
        assert_eq!(keys, 7, "{uncommented}");
        assert!(text.contains("default_timeout"));
        let mut dirs = vec![
            (
                hookrun_vzdump::PLATFORM.to_owned(),
                hookrun_vzdump::DEFAULT_HOOKS_DIR.to_owned(),
            ),
            (
                hookrun_pve_guest::PLATFORM.to_owned(),
                hookrun_pve_guest::DEFAULT_HOOKS_DIR.to_owned(),
            ),
            (
                hookrun_worker::PLATFORM.to_owned(),
                hookrun_worker::DEFAULT_HOOKS_DIR.to_owned(),
            ),
        ];
        for d in ["qemu", "lxc", "network", "daemon"] {
            let p = hookrun_libvirt::platform(d);
            dirs.push((p.clone(), format!("/etc/hookrun/{p}.d")));
        }
        let names: Vec<&str> = config.platform_names().collect();
        assert_eq!(names.len(), dirs.len(), "{names:?}");
        for (platform, dir) in dirs {
            assert_eq!(
                config.settings_for(&platform).hooks_dir,
                Some(PathBuf::from(&dir)),
                "[{platform}]"
            );
            assert!(
                HOOKS_DIRS
                    .iter()
                    .any(|d| format!("/etc/hookrun/{d}.d") == dir),
                "{dir} is not created by the package"
            );
        }
    }
}
