//! The static build in a system without libc: `cargo xtask package --static-only`
//! builds `target/dist/hookrun-<version>-x86_64-linux-static.tar.xz`; its binaries,
//! with Debian's `busybox-static` as `/bin/sh` and the usual applets and nothing else
//! (no dynamic loader, no libc, no NSS modules), make a chroot in which
//! `hookrun-worker run backup -- /bin/true` runs pre/post hooks (sync and async, a
//! lock, a timeout, `mk-job`, and a `# user: nobody` hook with `# nice:` whose user comes
//! from the chroot's own /etc/passwd), `hookrun-vzdump` goes through a job's phases, and
//! `hookrun list/lint/log` work. The chroot runs in private mount and PID namespaces
//! (`unshare`), so its `/proc` mount and every process in it end with the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hookrun_tests::{Run, mkdir, require, workspace_root, write_file};

const BUSYBOX: &str = "/bin/busybox";
const UNSHARE: &str = "/usr/bin/unshare";
const CHROOT: &str = "/usr/sbin/chroot";

/// Whether the ELF file at `path` asks for a dynamic loader (a `PT_INTERP` header).
fn has_interp(path: &Path) -> bool {
    let d = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        d.starts_with(b"\x7fELF\x02\x01"),
        "{} is not an ELF64 LE file",
        path.display()
    );
    let u = |at: usize, n: usize| -> u64 {
        d[at..at + n]
            .iter()
            .rev()
            .fold(0, |acc, &b| (acc << 8) | u64::from(b))
    };
    let (phoff, phentsize, phnum) = (u(0x20, 8) as usize, u(0x36, 2) as usize, u(0x38, 2));
    (0..phnum as usize).any(|i| u(phoff + i * phentsize, 4) == 3)
}

/// Whether the test can run here: root for chroot, mknod and unshare, a static busybox,
/// and the tools that unpack the tarball.
fn prerequisites() -> bool {
    if !require::root() || !require::command_from(BUSYBOX, "busybox-static") {
        return false;
    }
    if has_interp(Path::new(BUSYBOX)) {
        return require::missing(
            &format!("{BUSYBOX} linked statically (this one is dynamic: the busybox package)"),
            "apt-get install busybox-static, or cargo xtask test, which installs it",
        );
    }
    [
        (UNSHARE, "util-linux"),
        (CHROOT, "coreutils"),
        ("/usr/bin/xz", "xz-utils"),
        ("/bin/tar", "tar"),
    ]
    .iter()
    .all(|(tool, package)| require::command_from(tool, package))
}

/// `cargo xtask package --static-only`, once per test process: the tarball's path.
fn tarball() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // The toolchain's environment (RUSTUP_*, CARGO_HOME, PATH) is inherited, as
            // for the harness's own build.
            let out = Command::new(env!("CARGO"))
                .args(["xtask", "package", "--static-only"])
                .current_dir(workspace_root())
                .output()
                .expect("run cargo xtask package --static-only");
            assert!(
                out.status.success(),
                "cargo xtask package --static-only failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                name.starts_with("hookrun-")
                    && name.ends_with("-x86_64-linux-static.tar.xz")
                    && path.is_file(),
                "xtask did not print the tarball's path: {stdout:?}"
            );
            path
        })
        .clone()
}

const WORKER_HOOKS: &[(&str, &str)] = &[
    (
        "10-pre",
        "# mode: sync\n# phases: pre-backup\n# lock: backup-io\n# timeout: 10\n# mk-job\n\
         echo \"pre $HOOKRUN_JOB $(id -un)\" >> /out/trace\n",
    ),
    (
        "20-slow",
        "# mode: sync\n# phases: pre-backup\n# timeout: 1\n# on-error: warn\n\
         echo started >> /out/slow\nsleep 30\necho 'not killed' >> /out/slow\n",
    ),
    (
        "25-nobody",
        "# mode: sync\n# phases: pre-backup\n# user: nobody\n# nice: 5\n\
         set -- $(cat /proc/$$/stat)\necho \"$(id -u) $(id -g) $HOME nice ${19}\" > /out/nobody/who\n",
    ),
    (
        "30-post",
        "# mode: sync\n# phases: post-backup\necho \"post $1 $HOOKRUN_EXIT_CODE\" >> /out/trace\n",
    ),
    (
        "40-async",
        "# mode: async\n# phases: post-backup\n# lock: backup-io\n# mk-job\n\
         sleep 1\necho \"async $HOOKRUN_PHASE\" > /out/async\n",
    ),
];

const VZDUMP_HOOKS: &[(&str, &str)] = &[
    (
        "10-trace",
        "# mode: sync\n# phases: *\necho \"vzdump $*\" >> /out/vzdump\n",
    ),
    (
        "20-async",
        "# mode: async\n# phases: backup-end\necho \"async $HOOKRUN_OBJECT\" > /out/vzdump-async\n",
    ),
];

/// Runs in the chroot with busybox's sh; every result goes to a file under /out.
const SCRIPT: &str = r#"cd /
hookrun-worker run backup -- /bin/true >/out/worker.out 2>&1; echo $? >/out/worker.rc
for args in job-start "backup-start snapshot 100" "backup-end snapshot 100" \
            "log-end snapshot 100" job-end; do
    # shellcheck disable=SC2086
    hookrun-vzdump $args >>/out/vzdump.out 2>&1; echo $? >>/out/vzdump.rc
done
# The async hooks end after their dispatchers: wait for both records (the PID namespace
# would end them with this script).
i=0
while [ $i -lt 300 ]; do
    n=$(grep -c -e 40-async -e 20-async /var/log/hookrun/runs.jsonl 2>/dev/null)
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.1
    i=$((i + 1))
done
hookrun list -p worker --phase pre-backup >/out/list.out 2>&1; echo $? >/out/list.rc
hookrun lint -p worker /hooks >/out/lint.out 2>&1; echo $? >/out/lint.rc
hookrun log -n 50 >/out/log.out 2>&1; echo $? >/out/log.rc
for b in hookrun-retain hookrun-copy-encrypt-retain hookrun-pve-guest hookrun-libvirt; do
    $b --version >>/out/versions.out 2>&1; echo $? >>/out/versions.rc
done
"#;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn static_binaries_run_in_a_chroot_without_libc() {
    if !prerequisites() {
        return;
    }
    let tarball = tarball();
    let tmp = tempfile::Builder::new()
        .prefix("hookrun-static-")
        .tempdir()
        .expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonicalize");
    let unpacked = root.join("unpacked");
    mkdir(&unpacked, 0o755);
    let untar = Command::new("/bin/tar")
        .arg("-xJf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("run tar");
    assert!(untar.success(), "tar -xJf {} failed", tarball.display());
    let top = std::fs::read_dir(&unpacked)
        .expect("list the unpacked tarball")
        .next()
        .expect("the tarball has a top directory")
        .expect("dir entry")
        .path();
    for f in ["README", "share/man/man1/hookrun.1", "share/hookrun.toml"] {
        assert!(top.join(f).is_file(), "the tarball lacks {f}");
    }
    for f in ["share/examples/hooks.d", "share/contrib/hooks.d"] {
        assert!(top.join(f).is_dir(), "the tarball lacks {f}/");
    }

    // The chroot: busybox, the static binaries, users, an empty /dev but for null.
    let jail = root.join("jail");
    for d in [
        "bin",
        "usr/bin",
        "etc/hookrun/vzdump.d",
        "hooks",
        "out",
        "proc",
        "dev",
        "tmp",
        "var/log",
        "var/lib",
        "run/lock",
        "root",
    ] {
        mkdir(&jail.join(d), 0o755);
    }
    hookrun_tests::chmod(&jail.join("tmp"), 0o1777);
    std::fs::copy(BUSYBOX, jail.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = jail.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).expect("applet symlink");
        }
    }
    for entry in std::fs::read_dir(top.join("bin")).expect("bin/ in the tarball") {
        let entry = entry.expect("dir entry");
        assert!(
            !has_interp(&entry.path()),
            "{} in the tarball asks for a dynamic loader",
            entry.path().display()
        );
        std::fs::copy(entry.path(), jail.join("usr/bin").join(entry.file_name()))
            .expect("copy a static binary");
    }
    let mknod = Command::new("mknod")
        .args(["-m", "666"])
        .arg(jail.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(mknod.success());
    write_file(
        &jail.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    write_file(
        &jail.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\n",
        0o644,
    );
    mkdir(&jail.join("out/nobody"), 0o777);
    for (dir, hooks) in [
        ("hooks", WORKER_HOOKS),
        ("etc/hookrun/vzdump.d", VZDUMP_HOOKS),
    ] {
        for (name, body) in hooks {
            write_file(
                &jail.join(dir).join(name),
                format!("#!/bin/sh\n{body}"),
                0o755,
            );
        }
    }
    write_file(&jail.join("run-test.sh"), SCRIPT, 0o755);
    // Nothing of a C library or a dynamic loader is in the tree.
    let libc_files = Command::new("find")
        .arg(&jail)
        .args([
            "(",
            "-name",
            "libc.so*",
            "-o",
            "-name",
            "ld-linux*",
            "-o",
            "-name",
            "libnss*",
            ")",
        ])
        .output()
        .expect("find");
    assert!(
        libc_files.stdout.is_empty(),
        "the chroot has libc files: {}",
        String::from_utf8_lossy(&libc_files.stdout)
    );

    let proc_dir = jail.join("proc");
    let out = Run::new(UNSHARE)
        .args(["--mount", "--pid", "--fork"])
        .arg(format!("--mount-proc={}", proc_dir.display()))
        .arg(CHROOT)
        .arg(&jail)
        .args(["/bin/sh", "/run-test.sh"])
        .env("PATH", "/usr/bin:/bin")
        .deadline(Duration::from_secs(180))
        .run();
    out.assert_success();

    let o = |f: &str| read(&jail.join("out").join(f));
    let worker_out = o("worker.out");
    assert_eq!(o("worker.rc").trim(), "0", "{worker_out}");
    assert_eq!(
        o("trace"),
        "pre worker-10-pre-backup root\npost 0 0\n",
        "{worker_out}"
    );
    assert_eq!(o("slow"), "started\n", "the timed-out hook was not killed");
    // `# user:` and `# nice:` without NSS: the user came from the chroot's /etc/passwd.
    assert_eq!(o("nobody/who"), "65534 65534 /nonexistent nice 5\n");
    assert_eq!(o("async"), "async post-backup\n");
    assert_eq!(o("vzdump.rc"), "0\n0\n0\n0\n0\n", "{}", o("vzdump.out"));
    assert_eq!(
        o("vzdump"),
        "vzdump job-start\nvzdump backup-start snapshot 100\nvzdump backup-end snapshot 100\n\
         vzdump log-end snapshot 100\nvzdump job-end\n"
    );
    assert_eq!(o("vzdump-async"), "async 100\n");

    let records = read(&jail.join("var/log/hookrun/runs.jsonl"));
    let outcome = |hook: &str| -> Vec<String> {
        records
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record"))
            .filter(|r| r["hook"] == hook)
            .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(outcome("10-pre"), ["ok"], "{records}");
    assert_eq!(outcome("20-slow"), ["timeout"], "{records}");
    assert_eq!(outcome("25-nobody"), ["ok"], "{records}");
    assert_eq!(outcome("30-post"), ["ok"], "{records}");
    assert_eq!(outcome("40-async"), ["ok"], "{records}");
    assert_eq!(outcome("10-trace"), ["ok"; 5], "{records}");
    assert_eq!(outcome("20-async"), ["ok"], "{records}");

    // Checkmk job files in root's job directory: the user name came from /etc/passwd.
    for job in ["worker-10-pre-backup", "worker-40-async-backup"] {
        let f = jail.join("var/lib/check_mk_agent/job/root").join(job);
        let text = read(&f);
        assert!(text.contains("exit_code 0"), "{}: {text}", f.display());
    }

    assert_eq!(o("list.rc").trim(), "0", "{}", o("list.out"));
    let list = o("list.out");
    assert!(
        list.contains("10-pre") && list.contains("20-slow") && !list.contains("30-post\tRUN"),
        "{list}"
    );
    assert_eq!(o("lint.rc").trim(), "0", "{}", o("lint.out"));
    assert_eq!(o("log.rc").trim(), "0", "{}", o("log.out"));
    let log = o("log.out");
    assert!(
        log.contains("20-slow") && log.contains("timeout") && log.contains("40-async"),
        "{log}"
    );
    assert_eq!(o("versions.rc"), "0\n0\n0\n0\n", "{}", o("versions.out"));
}
