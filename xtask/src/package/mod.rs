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
//! purge cycle in a chroot made with debootstrap (see [`verify::install_cycle`]).

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use crate::man;

mod changelog;
mod licences;
mod stage;
mod verify;

use changelog::*;
pub(crate) use changelog::{changelog_top, source_date_epoch, workspace_version};
use licences::*;
pub(crate) use stage::remap_flags;
use stage::*;
pub use verify::check;

pub(super) const HOMEPAGE: &str = "https://github.com/hookrun/hookrun";
/// The source package every binary package comes from (and the changelog's name).
pub(super) const SOURCE: &str = "hookrun";
/// Where the chroot of the install cycle comes from.
pub(super) const SUITE: &str = "bookworm";
pub(super) const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
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
pub(super) const HOOKS_DIRS: &[&str] = &[
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

pub(super) fn parse_revision(r: &str) -> Result<String, String> {
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

/// Greedy word wrap.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
