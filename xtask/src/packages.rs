//! The Debian packages the test suite drives for real (gpg, restic, libvirtd, shellcheck,
//! ...). `cargo xtask test` installs the missing ones itself, so the README's test
//! command works on a fresh Debian 12 machine as root, not only through `.ci/run`.

use std::process::{Command, Stdio};

use anyhow::Context as _;

/// Package, and what needs it.
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("procps", "ps/pgrep for the process tests"),
    ("psmisc", "fuser/killall for the process tests"),
    (
        "util-linux",
        "setsid, unshare, mount, script for the process and container tests",
    ),
    ("gnupg", "copy-encrypt-retain and its tests (real gpg)"),
    ("time", "/usr/bin/time for mk-job compatibility"),
    (
        "strace",
        "fsync delayed by fault injection in the Checkmk job directory test",
    ),
    (
        "restic",
        "the real worker command of the hookrun-worker end-to-end test",
    ),
    ("curl", "the contrib notification hooks"),
    ("shellcheck", "the contrib shell hooks' check"),
    (
        "libvirt-daemon-system",
        "the real libvirtd of the libvirt end-to-end suite",
    ),
    (
        "libvirt-daemon",
        "the real libvirtd of the libvirt end-to-end suite",
    ),
    (
        "libvirt-daemon-driver-qemu",
        "the real libvirtd of the libvirt end-to-end suite",
    ),
    ("libvirt-clients", "virsh for the libvirt end-to-end suite"),
    (
        "iproute2",
        "the test bridge of the libvirt end-to-end suite",
    ),
    (
        "qemu-system-x86",
        "the TCG guest of the libvirt end-to-end suite",
    ),
    (
        "dpkg-dev",
        "dpkg-shlibdeps for the Depends of the .deb packages (cargo xtask package)",
    ),
    ("lintian", "the lintian check of the .deb packages"),
    (
        "systemd",
        "the real systemd-journald of the journal-fields test (monitoring)",
    ),
    (
        "prometheus-node-exporter",
        "the real node_exporter whose textfile collector the metrics test scrapes",
    ),
    (
        "prometheus",
        "promtool: checks the metrics textfile and the README's alert rules",
    ),
    (
        "debootstrap",
        "the chroot of the packages' install, upgrade and purge cycle",
    ),
    (
        "borgmatic",
        "the real borgmatic of the borgmatic end-to-end suite",
    ),
    (
        "borgbackup",
        "borg and its local repository for the borgmatic end-to-end suite",
    ),
    (
        "busybox-static",
        "the only userland of the libc-less chroot that runs the static build",
    ),
    (
        "xz-utils",
        "the static build's .tar.xz (cargo xtask package)",
    ),
];

fn installed(package: &str) -> Option<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(out.status.success() && out.stdout == b"installed")
}

/// Installs whatever of [`TEST_PACKAGES`] is missing (root only; apt output is shown
/// only when apt fails).
pub fn ensure() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for (p, _) in TEST_PACKAGES {
        match installed(p) {
            Some(true) => {}
            Some(false) => missing.push(*p),
            None => {
                eprintln!(
                    "xtask: dpkg-query is not available; not checking the test suite's system packages"
                );
                return Ok(());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "the test suite needs these Debian packages: {0}; install them as root: apt-get install --no-install-recommends {0}",
            missing.join(" ")
        );
    }
    eprintln!(
        "==> xtask: installing the test suite's Debian packages: {}",
        missing.join(" ")
    );
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "-q", "-y"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
        if !out.status.success() {
            anyhow::bail!(
                "apt-get {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    apt(&["update"])?;
    let mut install = vec!["install", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)
}
