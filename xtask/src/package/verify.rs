//! `--check`: lintian, a byte-identical second build, and an install, upgrade and purge
//! cycle in a debootstrap chroot ([`install_cycle`]).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use super::*;

/// One step of the check, printed like `cargo xtask test`'s steps.
pub(super) fn step<T>(
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
pub(super) fn build_and_compare(
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

pub(super) const CONFFILE_NOTE: &str =
    "# A line added upstream (the install cycle's conffile change).";
pub(super) const LOCAL_NOTE: &str = "# A local change the upgrades must keep.\nkill_grace = 7\n";

pub(super) fn sha256(p: &Path) -> anyhow::Result<String> {
    let out = output(Command::new("sha256sum").arg(p))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// lintian on every package; any error or warning tag fails. `initial-upload-closes-no-bugs`
/// is expected for a package that is not uploaded to Debian.
pub(super) fn lintian(debs: &[PathBuf], tmp: &Path) -> anyhow::Result<()> {
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
        "lintian found {} error/warning tag(s) (exit {}); fix the packaging in xtask/src/package/ or pkg/",
        bad.len(),
        out.status
    );
    if stdout.trim().is_empty() {
        eprintln!("    lintian: no tags");
    }
    Ok(())
}

/// The debootstrap'ed base system, made once and kept in `target/package/`.
pub(super) fn base_system(work: &Path) -> anyhow::Result<PathBuf> {
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
pub(super) struct Chroot {
    pub(super) dir: PathBuf,
}

impl Chroot {
    /// Runs a command in the chroot; returns its stdout, fails with its output.
    pub(super) fn run(&self, args: &[&str]) -> anyhow::Result<String> {
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

    pub(super) fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    pub(super) fn mode(&self, p: &str) -> anyhow::Result<u32> {
        let meta = fs::symlink_metadata(self.path(p)).with_context(|| format!("{p} is missing"))?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    pub(super) fn expect_mode(&self, p: &str, mode: u32) -> anyhow::Result<()> {
        let m = self.mode(p)?;
        anyhow::ensure!(m == mode, "{p} has mode {m:o}, expected {mode:o}");
        Ok(())
    }

    pub(super) fn read(&self, p: &str) -> anyhow::Result<String> {
        fs::read_to_string(self.path(p)).with_context(|| format!("cannot read {p}"))
    }

    /// `NAME STATUS VERSION` for each of our packages (`NAME not-known` when dpkg has
    /// forgotten it).
    pub(super) fn status(&self) -> anyhow::Result<Vec<String>> {
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
    pub(super) fn expect_status(&self, what: &[&str]) -> anyhow::Result<()> {
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
pub(super) fn snapshot(dir: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
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
    pub(super) fn walk(
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
pub(super) fn install_cycle(
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
