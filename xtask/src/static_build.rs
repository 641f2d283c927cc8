//! The static build: `target/dist/hookrun-<version>-x86_64-linux-static.tar.xz`, every
//! binary linked statically (no dynamic loader, no libc needed at run time), for
//! container images built on Alpine/musl or distroless and anything else without a
//! matching glibc.
//!
//! - With this toolchain that is the gnu target with `-C target-feature=+crt-static`
//!   (glibc's `libc.a` from libc6-dev). `--target` is given explicitly so the flag
//!   reaches only the binaries, not build scripts and proc macros, and the build goes to
//!   `target/static/cargo` so it never invalidates the debug or release builds.
//! - A static glibc can answer user and group lookups only by loading NSS modules of a
//!   shared glibc at run time; hookrun reads `/etc/passwd` itself
//!   (`hookrun_core::privilege`). The check below refuses binaries that contain
//!   glibc's NSS machinery (its `nsswitch.conf` reader), so a new `getpwnam` caller
//!   cannot slip in.
//! - Each binary is checked to have no `PT_INTERP` program header (no dynamic loader)
//!   and no `DT_NEEDED` shared library.
//! - The tarball holds `bin/`, the man pages, the completions, the example and contrib
//!   hooks, the default config and a README; it is reproducible like the .debs
//!   (`SOURCE_DATE_EPOCH`, sorted, root-owned, single-threaded xz).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::man;
use crate::package::{CRATES, remap_flags, remove_dir_all, source_date_epoch, workspace_version};

/// The only target this toolchain builds statically (glibc's `libc.a`).
pub const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The tarball's name without `.tar.xz`; also its top directory.
pub fn dist_name(version: &str) -> String {
    format!("hookrun-{version}-x86_64-linux-static")
}

/// Builds the static binaries and the tarball; returns the tarball's path.
pub fn build(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let version = workspace_version(root)?;
    let bins = build_binaries(root, target)?;
    let name = dist_name(&version);
    let stage = target.join("static/stage");
    remove_dir_all(&stage)?;
    let top = stage.join(&name);
    stage_tree(root, &bins, &top, &version)?;
    let dist = target.join("dist");
    fs::create_dir_all(&dist).with_context(|| format!("cannot create {}", dist.display()))?;
    let tarball = dist.join(format!("{name}.tar.xz"));
    let epoch = source_date_epoch(root)?;
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
        ])
        .arg(format!("--mtime=@{epoch}"))
        .arg("--use-compress-program=xz -9 -T1")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .arg(&name)
        .status()
        .context("cannot run tar (and xz: apt-get install tar xz-utils)")?;
    anyhow::ensure!(tar.success(), "tar of {} failed ({tar})", top.display());
    eprintln!("xtask package: static binaries (bytes):");
    for b in man::BINARIES {
        let size = fs::metadata(bins.join(b))?.len();
        eprintln!("  {b:<28} {size:>10}");
    }
    Ok(tarball)
}

fn build_binaries(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let build_dir = target.join("static/cargo");
    let mut flags = remap_flags(root)?;
    flags.push("-Ctarget-feature=+crt-static".to_owned());
    let mut cmd = Command::new(crate::cargo());
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--bins",
        "--target",
        TRIPLE,
    ])
    .arg("--target-dir")
    .arg(&build_dir)
    .current_dir(root)
    // Replaces RUSTFLAGS and build.rustflags: the tarball never depends on the
    // developer's flags.
    .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    for c in CRATES {
        cmd.args(["-p", c]);
    }
    eprintln!(
        "==> xtask package: static build, cargo build --release --target {TRIPLE} (into {})",
        build_dir.display()
    );
    let status = cmd.status().context("cannot run cargo build")?;
    anyhow::ensure!(
        status.success(),
        "the static cargo build failed ({status}); it needs glibc's static libraries (apt-get install libc6-dev)"
    );
    let bins = build_dir.join(TRIPLE).join("release");
    for b in man::BINARIES {
        check_static(&bins.join(b))?;
    }
    Ok(bins)
}

/// Fails unless `path` is an ELF executable that needs no dynamic loader, no shared
/// library and no NSS module.
pub fn check_static(path: &Path) -> anyhow::Result<()> {
    let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let elf =
        Elf::parse(&data).with_context(|| format!("{} is not an ELF64 file", path.display()))?;
    anyhow::ensure!(
        !elf.has_interp(),
        "{} has a dynamic loader (PT_INTERP): it is not statically linked",
        path.display()
    );
    anyhow::ensure!(
        !elf.needs_libraries(),
        "{} needs shared libraries (DT_NEEDED): it is not statically linked",
        path.display()
    );
    anyhow::ensure!(
        !contains(&data, b"/etc/nsswitch.conf"),
        "{} contains glibc's NSS code (getpwnam, getgrnam, getaddrinfo, ... were linked in): a static glibc would need the shared NSS modules at run time; read /etc/passwd and /etc/group with hookrun_core::privilege instead",
        path.display()
    );
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Just enough of ELF64 (little endian) to read the program headers.
struct Elf<'a> {
    data: &'a [u8],
    phoff: usize,
    phentsize: usize,
    phnum: usize,
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(..5)? != b"\x7fELF\x02" || *data.get(5)? != 1 {
            return None;
        }
        Some(Elf {
            data,
            phoff: usize::try_from(u64_at(data, 0x20)?).ok()?,
            phentsize: usize::from(u16_at(data, 0x36)?),
            phnum: usize::from(u16_at(data, 0x38)?),
        })
    }

    /// `(p_type, p_offset, p_filesz)` of each program header.
    fn segments(&self) -> impl Iterator<Item = (u32, usize, usize)> + '_ {
        (0..self.phnum).filter_map(|i| {
            let at = self.phoff + i * self.phentsize;
            Some((
                u32_at(self.data, at)?,
                usize::try_from(u64_at(self.data, at + 8)?).ok()?,
                usize::try_from(u64_at(self.data, at + 32)?).ok()?,
            ))
        })
    }

    fn has_interp(&self) -> bool {
        self.segments().any(|(t, _, _)| t == PT_INTERP)
    }

    /// Whether the dynamic section (a static-pie has one, for its relocations) names a
    /// shared library.
    fn needs_libraries(&self) -> bool {
        self.segments()
            .filter(|(t, _, _)| *t == PT_DYNAMIC)
            .any(|(_, off, size)| {
                (0..size / 16)
                    .map_while(|i| u64_at(self.data, off + i * 16))
                    .take_while(|&tag| tag != DT_NULL)
                    .any(|tag| tag == DT_NEEDED)
            })
    }
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Copies the regular files of `from` (not recursive) to `to`, keeping the exec bit.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for e in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let e = e?;
        let meta = e.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        write(&to.join(e.file_name()), &fs::read(e.path())?, mode)?;
    }
    Ok(())
}

fn stage_tree(root: &Path, bins: &Path, top: &Path, version: &str) -> anyhow::Result<()> {
    for b in man::BINARIES {
        write(&top.join("bin").join(b), &fs::read(bins.join(b))?, 0o755)?;
    }
    for f in man::generate(root)? {
        let dest = match f.kind {
            man::Kind::Man => {
                let section = f
                    .path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "1".to_owned());
                top.join(format!("share/man/man{section}"))
                    .join(f.file_name())
            }
            // completions/<shell>/<file>, as in the source tree.
            man::Kind::Completion(_) => top.join("share").join(&f.path),
        };
        write(&dest, &f.contents, 0o644)?;
    }
    copy_dir(
        &root.join("examples/hooks.d"),
        &top.join("share/examples/hooks.d"),
    )?;
    copy_dir(
        &root.join("hooks-contrib/hooks.d"),
        &top.join("share/contrib/hooks.d"),
    )?;
    write(
        &top.join("share/hookrun.toml"),
        &fs::read(root.join("pkg/hookrun.toml")).context("cannot read pkg/hookrun.toml")?,
        0o644,
    )?;
    write(&top.join("README"), readme(version).as_bytes(), 0o644)?;
    Ok(())
}

fn readme(version: &str) -> String {
    let name = dist_name(version);
    format!(
        "hookrun {version}, static build for x86_64 Linux\n\
         \n\
         Every program in bin/ is statically linked: no dynamic loader, no libc and no\n\
         NSS modules are needed at run time, so they run on Alpine (musl), distroless\n\
         and any other x86_64 Linux. Users and groups are read from /etc/passwd and\n\
         /etc/group directly.\n\
         \n\
         bin/                 hookrun, hookrun-vzdump, hookrun-pve-guest, hookrun-libvirt,\n\
         \x20                    hookrun-worker, hookrun-retain, hookrun-copy-encrypt-retain\n\
         share/man/           man pages (MANPATH=$PWD/share/man man hookrun)\n\
         share/completions/   bash, zsh and fish completions\n\
         share/examples/      example hooks\n\
         share/contrib/       the contributed hooks (they need sh, and some need curl or gpg)\n\
         share/hookrun.toml   the default configuration (/etc/hookrun/hookrun.toml)\n\
         \n\
         Install: copy the programs you need to a directory on PATH, e.g.\n\
         \x20 install -m 0755 {name}/bin/hookrun-worker /usr/local/bin/\n\
         \n\
         In a container image (Dockerfile):\n\
         \x20 FROM scratch AS hookrun\n\
         \x20 ADD {name}.tar.xz /opt/\n\
         \x20 FROM alpine:3\n\
         \x20 COPY --from=hookrun /opt/{name}/bin/hookrun-worker /usr/local/bin/\n\
         \n\
         Documentation: the README of the source tree, and man hookrun.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_toolchains_dynamic_binaries_are_told_apart() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().expect("current_exe");
        let err = check_static(&me).expect_err("a dynamic binary passed the static check");
        assert!(err.to_string().contains("PT_INTERP"), "{err}");
        assert!(Elf::parse(b"#!/bin/sh\n").is_none());
    }

    #[test]
    fn the_readme_names_the_tarball() {
        let text = readme("1.2.3");
        assert!(text.contains("hookrun-1.2.3-x86_64-linux-static/bin/hookrun-worker"));
    }
}
