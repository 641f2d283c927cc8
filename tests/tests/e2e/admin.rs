//! `hookrun doctor` and `hookrun install` against fake host trees: a temporary root with
//! `etc/vzdump.conf`, `etc/pve/...` (jobs, storages, guest configs), `etc/libvirt/hooks/`,
//! `etc/hookrun/`, `var/log/hookrun`, the Checkmk job directory and a fake `proc` for
//! the libvirt daemon, passed with the hidden `--root` (and `--bin-dir /usr/bin`, where
//! small stand-ins for the adapters live). Healthy setups must come out clean with exit
//! 0; each broken thing must be found with the command that fixes it; `install --apply`
//! must change exactly the expected files, keep backups, and change nothing the second
//! time.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hookrun_tests::{Outcome, Run, TestEnv, bin, mkdir, write_file};

const ADAPTERS: &[&str] = &[
    "hookrun-vzdump",
    "hookrun-pve-guest",
    "hookrun-libvirt",
    "hookrun-worker",
];

/// A fake host root (the test's temporary tree).
struct Host {
    env: TestEnv,
}

impl Host {
    /// An empty host with the adapters in `/usr/bin` (stand-ins: doctor and install
    /// only look at paths and modes).
    fn new() -> Host {
        let h = Host {
            env: TestEnv::new(),
        };
        for a in ADAPTERS {
            h.file(&format!("usr/bin/{a}"), "#!/bin/sh\nexit 0\n", 0o755);
        }
        h
    }

    fn root(&self) -> &Path {
        self.env.root()
    }

    /// The real path of a host path (`etc/vzdump.conf` → `<root>/etc/vzdump.conf`).
    fn p(&self, rel: &str) -> PathBuf {
        self.env.path(rel)
    }

    /// Shown in messages: the real path as a string.
    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }

    fn dir(&self, rel: &str, mode: u32) {
        mkdir(&self.p(rel), mode);
    }

    fn file(&self, rel: &str, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let p = self.p(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        write_file(&p, contents, mode);
        p
    }

    fn link(&self, rel: &str, target: &str) {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
    }

    fn hook(&self, dir: &str, name: &str, text: &str, mode: u32) -> PathBuf {
        self.file(&format!("{dir}/{name}"), text, mode)
    }

    /// A fake `proc` with one libvirt daemon whose start is `offset` seconds from now.
    fn daemon(&self, name: &str, pid: u32, offset: i64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.file(
            "proc/stat",
            format!("cpu  1 2 3 4\nbtime {}\nprocesses 9\n", now + offset),
            0o444,
        );
        // Field 22 (starttime in clock ticks after boot) is 0: it started at btime.
        self.file(
            &format!("proc/{pid}/stat"),
            format!("{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0\n"),
            0o444,
        );
    }

    fn run(&self, sub: &str) -> Run {
        Run::new(bin("hookrun"))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(sub)
            .arg("--root")
            .arg(self.root())
            .args(["--bin-dir", "/usr/bin"])
    }

    fn doctor(&self, args: &[&str]) -> Outcome {
        self.run("doctor").args(args).run()
    }

    fn install(&self, args: &[&str]) -> Outcome {
        self.run("install").args(args).run()
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
}

const HOOK_OK: &str = "#!/bin/sh\n# mode: sync\n# phases: backup-start\n# timeout: 30s\nexit 0\n";

/// Everything wired and in order: vzdump, guests 101 (VM) and 200 (container), libvirt
/// qemu (the daemon started after the link), a cron worker, Checkmk and gpg for the
/// contrib hook, records and an empty lock directory.
fn healthy() -> Host {
    let h = Host::new();
    h.file(
        "etc/vzdump.conf",
        "# vzdump default settings\n\n#tmpdir: DIR\nscript: /usr/bin/hookrun-vzdump\nbwlimit: 0\n",
        0o644,
    );
    h.file(
        "etc/pve/jobs.cfg",
        "vzdump: backup-nightly\n\tschedule 21:00\n\tall 1\n\tstorage local\n",
        0o640,
    );
    h.file(
        "etc/pve/storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,snippets\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n",
        0o640,
    );
    h.file(
        "etc/pve/qemu-server/101.conf",
        "boot: order=scsi0\nhookscript: local:snippets/hookrun\nmemory: 2048\n\n[snap1]\nhookscript: local:snippets/old\n",
        0o640,
    );
    h.file("etc/pve/qemu-server/102.conf", "memory: 1024\n", 0o640);
    h.file(
        "etc/pve/lxc/200.conf",
        "arch: amd64\nhookscript: local:snippets/hookrun\n",
        0o640,
    );
    h.link("var/lib/vz/snippets/hookrun", "/usr/bin/hookrun-pve-guest");
    h.link("etc/libvirt/hooks/qemu", "/usr/bin/hookrun-libvirt");
    h.daemon("libvirtd", 4242, 3600);
    h.file(
        "etc/cron.d/backup",
        "0 3 * * * root /usr/bin/hookrun-worker run --no-wait backup -- /bin/true\n",
        0o644,
    );
    for d in [
        "etc/hookrun/vzdump.d",
        "etc/hookrun/pve-guest.d",
        "etc/hookrun/libvirt-qemu.d",
        "etc/hookrun/worker.d",
    ] {
        h.dir(d, 0o755);
    }
    h.hook("etc/hookrun/vzdump.d", "10-check", HOOK_OK, 0o755);
    h.hook(
        "etc/hookrun/vzdump.d",
        "60-copy",
        "#!/bin/sh\n# mode: async\n# phases: log-end\n# mk-job\n# lock: copy\nexec /usr/bin/hookrun-copy-encrypt-retain --dest /mnt/b --recipient a@b \"$@\"\n",
        0o755,
    );
    h.hook("etc/hookrun/vzdump.d", "README.disabled", "notes\n", 0o644);
    h.hook(
        "etc/hookrun/pve-guest.d",
        "10-mount",
        "#!/bin/sh\n# mode: sync\n# phases: pre-start post-stop\n# objects: 101\nexit 0\n",
        0o755,
    );
    h.hook(
        "etc/hookrun/libvirt-qemu.d",
        "20-pin",
        "#!/bin/sh\n# mode: sync\n# phases: prepare release\ncat >/dev/null\n",
        0o755,
    );
    h.hook(
        "etc/hookrun/worker.d",
        "pre-backup.sh",
        "#!/bin/sh\necho pre\n",
        0o755,
    );
    for tool in ["gpg", "hookrun-copy-encrypt-retain", "check_mk_agent"] {
        h.file(&format!("usr/bin/{tool}"), "#!/bin/sh\n", 0o755);
    }
    h.dir("var/lib/check_mk_agent/job/root", 0o755);
    h.file(
        "var/lib/check_mk_agent/job/root/vzdump-60-copy-101",
        "start_time 1\nexit_code 0\n",
        0o644,
    );
    h.dir("var/log/hookrun", 0o750);
    h.file(
        "var/log/hookrun/runs.jsonl",
        "{\"time\":\"2026-11-21T03:00:12.345Z\",\"run_id\":\"r1\",\"platform\":\"vzdump\",\"phase\":\"backup-start\",\"object\":\"101\",\"hook\":\"10-check\",\"mode\":\"sync\",\"outcome\":\"ok\",\"exit_code\":0,\"signal\":null,\"duration_ms\":5,\"job\":\"vzdump-10-check-101\"}\n",
        0o640,
    );
    h.dir("run/lock/hookrun", 0o700);
    h
}

/// The stdout line of a finding with `severity` that contains every one of `parts`, and
/// the fix printed below it.
fn finding(out: &Outcome, severity: &str, parts: &[&str]) -> (String, Option<String>) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with(&format!("{severity} ")) && parts.iter().all(|p| l.contains(p)) {
            let fix = lines
                .get(i + 1)
                .and_then(|n| n.trim_start().strip_prefix("fix: "))
                .map(str::to_owned);
            return (l.to_string(), fix);
        }
    }
    out.check(
        false,
        &format!("expected a '{severity}' finding containing {parts:?}"),
    );
    unreachable!()
}

fn no_finding(out: &Outcome, severity: &str, parts: &[&str]) {
    let found = out.stdout.lines().any(|l| {
        l.trim_start().starts_with(&format!("{severity} ")) && parts.iter().all(|p| l.contains(p))
    });
    out.check(
        !found,
        &format!("expected no '{severity}' finding containing {parts:?}"),
    );
}

fn summary(out: &Outcome) -> String {
    out.stdout
        .lines()
        .rev()
        .find(|l| l.contains("error(s),"))
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// A snapshot of a tree, to see exactly what `install` changed.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let item = item.unwrap();
            let path = item.path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Node::Link(std::fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir(mode));
                walk(root, &path, out);
            } else {
                out.insert(rel, Node::File(mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `(added, removed, changed)` paths from `a` to `b`.
fn diff(
    a: &BTreeMap<PathBuf, Node>,
    b: &BTreeMap<PathBuf, Node>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let s = |p: &PathBuf| p.display().to_string();
    let added = b.keys().filter(|k| !a.contains_key(*k)).map(s).collect();
    let removed = a.keys().filter(|k| !b.contains_key(*k)).map(s).collect();
    let changed = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| s(k))
        .collect();
    (added, removed, changed)
}

// ---------------------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------------------

#[test]
fn doctor_reports_a_healthy_host_with_exit_0() {
    let h = healthy();
    let out = h.doctor(&[]);
    out.assert_success();
    assert_eq!(
        summary(&out),
        "0 error(s), 0 warning(s): all good",
        "{}",
        out.stdout
    );
    finding(
        &out,
        "ok",
        &[
            "wiring:",
            &format!(
                "{}:4: script /usr/bin/hookrun-vzdump",
                h.s("etc/vzdump.conf")
            ),
            "the installed hookrun-vzdump",
        ],
    );
    finding(
        &out,
        "note",
        &["jobs without a script of their own", "backup-nightly"],
    );
    finding(
        &out,
        "ok",
        &[
            "local:snippets/hookrun",
            "used by VM 101, container 200",
            "the installed hookrun-pve-guest",
        ],
    );
    finding(
        &out,
        "ok",
        &[
            &h.s("etc/libvirt/hooks/qemu"),
            "the installed hookrun-libvirt",
        ],
    );
    finding(
        &out,
        "ok",
        &["daemon:", "libvirtd (pid 4242)", "after the hook appeared"],
    );
    finding(&out, "ok", &["cron", "hookrun-worker run --no-wait backup"]);
    finding(
        &out,
        "ok",
        &[
            "hook 10-check:",
            "runs in backup-start: sync, on-error fail (platform default), timeout 30s",
        ],
    );
    finding(
        &out,
        "ok",
        &[
            "hook 10-mount:",
            "on-error pre-start fail, post-stop warn (platform defaults)",
            "objects 101",
        ],
    );
    finding(
        &out,
        "ok",
        &["hook pre-backup.sh:", "runs in pre-backup: sync"],
    );
    finding(
        &out,
        "note",
        &["hook README.disabled:", "ignored (disabled"],
    );
    finding(
        &out,
        "ok",
        &[
            "hooks dir:",
            &h.s("etc/hookrun/vzdump.d"),
            "mode 0755, owner root",
        ],
    );
    finding(&out, "ok", &["records:", "1 run record(s)", "10-check ok"]);
    finding(&out, "ok", &["lock dir:", "mode 0700"]);
    finding(&out, "ok", &["checkmk:", "agent installed"]);
    finding(
        &out,
        "ok",
        &[
            "checkmk:",
            "owned by root, 1 job file(s) the agent reads (hooks: 60-copy)",
        ],
    );
    finding(&out, "ok", &["gpg:", &h.s("usr/bin/gpg")]);
    // Platforms nobody uses are listed briefly at the end.
    let tail = out.stdout.split("not in use").nth(1).unwrap_or_default();
    assert!(
        tail.contains("libvirt-lxc") && tail.contains("libvirt-network"),
        "{}",
        out.stdout
    );
    assert!(
        !tail.contains("vzdump ") && !tail.contains("worker "),
        "{}",
        out.stdout
    );

    // The same as JSON.
    let out = h.doctor(&["--json"]);
    out.assert_success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON: {e}\n{}", out.stdout));
    assert_eq!(doc["errors"], 0, "{doc:#}");
    assert_eq!(doc["warnings"], 0, "{doc:#}");
    assert_eq!(doc["root"], h.root().display().to_string());
    assert_eq!(doc["platforms"]["vzdump"]["in_use"], true);
    assert_eq!(doc["platforms"]["libvirt-qemu"]["in_use"], true);
    assert_eq!(doc["platforms"]["libvirt-lxc"]["in_use"], false);
    let hooks: Vec<&str> = doc["platforms"]["vzdump"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["subject"].as_str())
        .filter(|s| s.starts_with("hook "))
        .collect();
    assert_eq!(
        hooks,
        ["hook 10-check", "hook 60-copy", "hook README.disabled"]
    );
}

#[test]
fn doctor_finds_a_wrong_vzdump_script_path_with_its_fix() {
    let h = healthy();
    h.file(
        "etc/vzdump.conf",
        "# vzdump default settings\nscript: /usr/local/bin/hookrun-vzdump\n",
        0o644,
    );
    // A scheduled job with a script of its own that is not hookrun.
    h.file("usr/local/sbin/old-hook.pl", "#!/usr/bin/perl\n", 0o755);
    h.file(
        "etc/pve/jobs.cfg",
        "vzdump: backup-weekly\n\tschedule sun\n\tscript /usr/local/sbin/old-hook.pl\n",
        0o640,
    );
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "script /usr/local/bin/hookrun-vzdump does not exist",
            "vzdump fails every backup",
        ],
    );
    assert_eq!(
        fix.as_deref(),
        Some(
            format!(
                "hookrun install vzdump --apply --root {}",
                h.root().display()
            )
            .as_str()
        )
    );
    let (_, fix) = finding(
        &out,
        "warning",
        &[
            "backup job backup-weekly",
            "old-hook.pl, which is not hookrun",
        ],
    );
    assert_eq!(
        fix.as_deref(),
        Some("pvesh set /cluster/backup/backup-weekly --script /usr/bin/hookrun-vzdump")
    );
    // --platform limits the report.
    assert!(!out.stdout.contains("\npve-guest\n"), "{}", out.stdout);

    // A script line that is right, but the hooks directory is gone: every backup fails.
    h.file(
        "etc/vzdump.conf",
        "script: /usr/bin/hookrun-vzdump\n",
        0o644,
    );
    h.file("etc/pve/jobs.cfg", "", 0o640);
    std::fs::remove_dir_all(h.p("etc/hookrun/vzdump.d")).unwrap();
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "hooks dir:",
            "does not exist",
            "fails at job-init (exit 78)",
        ],
    );
    assert_eq!(
        fix,
        Some(format!(
            "install -d -m 0755 {}",
            h.s("etc/hookrun/vzdump.d")
        ))
    );
}

#[test]
fn doctor_finds_missing_and_non_executable_snippets() {
    let h = healthy();
    std::fs::remove_file(h.p("var/lib/vz/snippets/hookrun")).unwrap();
    // Guest 300 uses a snippet on an NFS storage that is not mounted.
    h.file(
        "etc/pve/storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\tcontent snippets\n\nnfs: nas\n\texport /e\n\tpath /mnt/pve/nas\n\tserver 10.0.0.1\n\tcontent snippets,backup\n",
        0o640,
    );
    h.file(
        "etc/pve/qemu-server/300.conf",
        "hookscript: nas:snippets/hookrun\n",
        0o640,
    );
    h.file(
        "etc/pve/qemu-server/301.conf",
        "hookscript: nope:snippets/x\n",
        0o640,
    );
    let out = h.doctor(&["--platform", "pve-guest"]);
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "local:snippets/hookrun",
            "the snippet does not exist",
            "refuses to start VM 101, container 200",
        ],
    );
    assert_eq!(
        fix,
        Some(format!(
            "ln -sfn /usr/bin/hookrun-pve-guest {}",
            h.s("var/lib/vz/snippets/hookrun")
        ))
    );
    finding(
        &out,
        "error",
        &[
            "nas:snippets/hookrun",
            "refuses to start VM 300",
            "nas is a nfs storage: is it mounted?",
        ],
    );
    let (_, fix) = finding(&out, "error", &["VM 301", "storage 'nope' does not exist"]);
    assert_eq!(fix.as_deref(), Some("qm set 301 --delete hookscript"));

    // A copy that is not executable.
    h.file("etc/pve/qemu-server/300.conf", "memory: 1\n", 0o640);
    h.file("etc/pve/qemu-server/301.conf", "memory: 1\n", 0o640);
    let snippet = h.file(
        "var/lib/vz/snippets/hookrun",
        std::fs::read(h.p("usr/bin/hookrun-pve-guest")).unwrap(),
        0o644,
    );
    let out = h.doctor(&["--platform", "pve-guest"]);
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &["the snippet is not executable", "VM 101, container 200"],
    );
    assert_eq!(fix, Some(format!("chmod 0755 {}", snippet.display())));

    // Executable again: a copy works (a note says to prefer a symlink).
    std::fs::set_permissions(&snippet, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = h.doctor(&["--platform", "pve-guest"]);
    out.assert_success();
    finding(
        &out,
        "note",
        &[
            "a copy of the installed hookrun-pve-guest",
            "a symlink follows it",
        ],
    );
}

#[test]
fn doctor_finds_hook_and_directory_problems_with_their_fixes() {
    let h = healthy();
    let dir = "etc/hookrun/vzdump.d";
    let noexec = h.hook(dir, "20-noexec", HOOK_OK, 0o644);
    let typo = h.hook(
        dir,
        "30-typo",
        "#!/bin/sh\n# mode: asnyc\n# phases: job-start\n",
        0o755,
    );
    let near = h.hook(dir, "40-near", "#!/bin/sh\n# phase: job-end\n", 0o755);
    let unknown = h.hook(
        dir,
        "50-unknown",
        "#!/bin/sh\n# mode: sync\n# phases: backup-stat\n",
        0o755,
    );
    let ww = h.hook(dir, "70-ww", HOOK_OK, 0o757);
    h.link(&format!("{dir}/80-dangling"), "/nonexistent");
    h.hook(dir, "90-nophases", "#!/bin/sh\necho hi\n", 0o755);
    std::fs::set_permissions(h.p(dir), std::fs::Permissions::from_mode(0o775)).unwrap();

    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    let (msg, fix) = finding(
        &out,
        "error",
        &[
            "hooks dir:",
            "is writable by its group",
            "every hook in it is refused",
        ],
    );
    assert!(msg.contains(&h.s(dir)), "{msg}");
    assert_eq!(fix, Some(format!("chmod go-w {}", h.s(dir))));
    // Hooks that are fine otherwise say they are refused with the directory.
    finding(
        &out,
        "note",
        &["hook 10-check:", "refused with its directory"],
    );

    std::fs::set_permissions(h.p(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    no_finding(&out, "error", &["hooks dir:"]);
    let (_, fix) = finding(
        &out,
        "warning",
        &[
            "hook 20-noexec:",
            "asks for backup-start but is not executable",
        ],
    );
    assert_eq!(fix, Some(format!("chmod +x {}", noexec.display())));
    let (msg, fix) = finding(
        &out,
        "error",
        &[
            "hook 30-typo:",
            "invalid value \"asnyc\" for 'mode'",
            "refused",
        ],
    );
    assert!(msg.contains(&format!("{}:2:", typo.display())), "{msg}");
    assert_eq!(fix, Some(format!("editor +2 {}", typo.display())));
    let (_, fix) = finding(
        &out,
        "warning",
        &["hook 40-near:", "did you mean 'phases'?"],
    );
    assert_eq!(fix, Some(format!("editor +2 {}", near.display())));
    let (_, fix) = finding(
        &out,
        "warning",
        &["hook 50-unknown:", "'backup-stat' is not a vzdump phase"],
    );
    assert_eq!(fix, Some(format!("editor +3 {}", unknown.display())));
    let (_, fix) = finding(
        &out,
        "error",
        &["hook 70-ww:", "refused", "writable by others"],
    );
    assert_eq!(fix, Some(format!("chmod go-w {}", ww.display())));
    let (_, fix) = finding(&out, "warning", &["hook 80-dangling:", "dangling symlink"]);
    let dangling = h.s(&format!("{dir}/80-dangling"));
    assert_eq!(fix, Some(format!("mv {dangling} {dangling}.disabled")));
    finding(
        &out,
        "note",
        &["hook 90-nophases:", "never runs: no '# phases:' line"],
    );
    finding(&out, "ok", &["hook 10-check:", "runs in backup-start"]);

    // Warnings alone do not make the exit code non-zero.
    for p in [&typo, &ww] {
        std::fs::remove_file(p).unwrap();
    }
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_success();
    assert!(
        summary(&out).starts_with("0 error(s), 4 warning(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn doctor_reports_foreign_libvirt_scripts_libvirts_own_d_files_and_stale_daemons() {
    let h = healthy();
    // The daemon started an hour ago, before the qemu link was made.
    h.daemon("libvirtd", 4242, -3600);
    // network: hookrun's directory exists, but the hook script is someone else's.
    h.dir("etc/hookrun/libvirt-network.d", 0o755);
    h.file(
        "etc/libvirt/hooks/network",
        "#!/bin/sh\nlogger net \"$@\"\n",
        0o755,
    );
    // libvirt runs qemu.d/* itself.
    h.file("etc/libvirt/hooks/qemu.d/00-own", "#!/bin/sh\n", 0o755);
    h.hook(
        "etc/hookrun/libvirt-qemu.d",
        "30-virsh",
        "#!/bin/sh\n# mode: sync\n# phases: started\nvirsh domstate \"$1\"\n",
        0o755,
    );
    let out = h.doctor(&["--platform", "libvirt"]);
    out.assert_success(); // warnings only
    let (_, fix) = finding(
        &out,
        "warning",
        &[
            "daemon:",
            "libvirtd (pid 4242)",
            "before the hook appeared",
            "restarted or gets SIGHUP",
        ],
    );
    assert_eq!(fix.as_deref(), Some("systemctl restart libvirtd"));
    let (msg, fix) = finding(
        &out,
        "warning",
        &[
            &h.s("etc/libvirt/hooks/network"),
            "is a script of its own",
            "never run",
        ],
    );
    assert!(
        msg.contains("50-legacy") && msg.contains("# phases: *"),
        "{msg}"
    );
    assert_eq!(
        fix,
        Some(format!(
            "hookrun install libvirt --driver network --apply --force --root {}",
            h.root().display()
        ))
    );
    finding(
        &out,
        "note",
        &["libvirt itself runs these files", "qemu.d", "00-own"],
    );
    let (_, fix) = finding(
        &out,
        "warning",
        &["hook 30-virsh:", "calls back into libvirt (virsh)"],
    );
    assert!(
        fix.is_some_and(|f| f.starts_with("editor +4 ")),
        "{}",
        out.stdout
    );

    // Modular daemons: virtqemud owns qemu.
    h.daemon("virtqemud", 4242, -3600);
    let out = h.doctor(&["--platform", "libvirt-qemu"]);
    let (_, fix) = finding(&out, "warning", &["daemon:", "virtqemud (pid 4242)"]);
    assert_eq!(fix.as_deref(), Some("systemctl restart virtqemud"));

    // No process information: say what to do instead of guessing.
    std::fs::remove_dir_all(h.p("proc")).unwrap();
    let out = h.doctor(&["--platform", "libvirt-qemu"]);
    finding(
        &out,
        "note",
        &[
            "daemon:",
            "process detection is skipped",
            "restart the daemon that owns qemu (libvirtd or virtqemud) if you added the link since it started",
        ],
    );

    // hookrun twice: the main script and one in libvirt's own qemu.d.
    h.link(
        "etc/libvirt/hooks/qemu.d/hookrun",
        "/usr/bin/hookrun-libvirt",
    );
    let out = h.doctor(&["--platform", "libvirt-qemu"]);
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &["qemu.d/hookrun is hookrun too", "every hook runs twice"],
    );
    assert_eq!(
        fix,
        Some(format!("rm {}", h.s("etc/libvirt/hooks/qemu.d/hookrun")))
    );

    // A dangling link, and a wired driver without its hooks directory.
    std::fs::remove_file(h.p("etc/libvirt/hooks/qemu.d/hookrun")).unwrap();
    std::fs::remove_file(h.p("usr/bin/hookrun-libvirt")).unwrap();
    std::fs::remove_dir_all(h.p("etc/hookrun/libvirt-qemu.d")).unwrap();
    let out = h.doctor(&["--platform", "libvirt-qemu"]);
    out.assert_code(1);
    finding(
        &out,
        "error",
        &["wiring:", "does not exist: libvirt ignores it"],
    );
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "hooks dir:",
            "libvirt-qemu.d does not exist",
            "fail with exit 78",
        ],
    );
    assert_eq!(
        fix,
        Some(format!(
            "install -d -m 0755 {}",
            h.s("etc/hookrun/libvirt-qemu.d")
        ))
    );
}

#[test]
fn doctor_checks_the_checkmk_job_dir_the_agent_reads() {
    let h = healthy();
    let job_dir = h.p("var/lib/check_mk_agent/job/root");
    let job = h.p("var/lib/check_mk_agent/job/root/vzdump-60-copy-101");
    std::os::unix::fs::chown(&job_dir, Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(&job, Some(1000), None).unwrap();
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_success(); // warnings: the monitoring is affected, no backup fails
    let (_, fix) = finding(
        &out,
        "warning",
        &[
            "checkmk:",
            &job_dir.display().to_string(),
            "not by root, the user it is named after",
        ],
    );
    assert_eq!(fix, Some(format!("chown root:root {}", job_dir.display())));
    let (_, fix) = finding(
        &out,
        "warning",
        &[
            "checkmk:",
            "the agent reads only files owned by root",
            "so it ignores",
        ],
    );
    assert_eq!(fix, Some(format!("chown root {}", job.display())));

    // No agent at all.
    std::fs::remove_file(h.p("usr/bin/check_mk_agent")).unwrap();
    let out = h.doctor(&["--platform", "vzdump"]);
    finding(
        &out,
        "warning",
        &["checkmk:", "no Checkmk agent", "60-copy"],
    );

    // mk_job = "external" without mk-job: the hook fails.
    h.file("etc/hookrun/hookrun.toml", "mk_job = \"external\"\n", 0o644);
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    finding(
        &out,
        "error",
        &[
            "checkmk:",
            "mk-job (Checkmk's agent) is not installed",
            "60-copy",
        ],
    );
}

#[test]
fn doctor_checks_gpg_and_the_contrib_tool_for_the_encrypting_hook() {
    let h = healthy();
    std::fs::remove_file(h.p("usr/bin/gpg")).unwrap();
    std::fs::remove_file(h.p("usr/bin/hookrun-copy-encrypt-retain")).unwrap();
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    let (_, fix) = finding(&out, "error", &["gpg:", "gpg is not installed", "60-copy"]);
    assert_eq!(fix.as_deref(), Some("apt install gpg"));
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "contrib:",
            "/usr/bin/hookrun-copy-encrypt-retain, which is not installed",
        ],
    );
    assert_eq!(fix.as_deref(), Some("apt install ./hookrun-contrib_*.deb"));
    // Without encryption, gpg is not needed.
    h.file("usr/bin/hookrun-copy-encrypt-retain", "#!/bin/sh\n", 0o755);
    h.hook(
        "etc/hookrun/vzdump.d",
        "60-copy",
        "#!/bin/sh\n# phases: log-end\n# mk-job\nexec /usr/bin/hookrun-copy-encrypt-retain --no-encrypt --dest /mnt/b \"$@\"\n",
        0o755,
    );
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_success();
    no_finding(&out, "error", &["gpg"]);
}

#[test]
fn doctor_names_file_and_line_of_a_bad_config() {
    let h = healthy();
    let config = h.file(
        "etc/hookrun/hookrun.toml",
        "log_dir = \"/var/log/hookrun\"\n\nlog_dri = \"/tmp\"\n",
        0o644,
    );
    // HOOKRUN_CONFIG does not reach hookrun from vzdump: doctor checks the real file.
    let out = h
        .run("doctor")
        .env("HOOKRUN_CONFIG", "/nonexistent.toml")
        .run();
    out.assert_code(1);
    let (_, fix) = finding(
        &out,
        "error",
        &[
            "config:",
            &format!("{}:3: unknown key 'log_dri'", config.display()),
            "runs no hooks",
        ],
    );
    assert_eq!(fix, Some(format!("editor +3 {}", config.display())));
    finding(
        &out,
        "note",
        &[
            "environment:",
            "HOOKRUN_CONFIG=/nonexistent.toml is set here",
        ],
    );
    finding(
        &out,
        "note",
        &[
            "the configuration file does not parse",
            "defaults are assumed",
        ],
    );

    // A valid file with a platform table that moves the hooks directory.
    h.file(
        "etc/hookrun/hookrun.toml",
        "[vzdump]\nhooks_dir = \"/srv/hooks/vzdump\"\n",
        0o644,
    );
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_code(1);
    finding(&out, "ok", &["config:", "parses"]);
    finding(
        &out,
        "error",
        &["hooks dir:", &h.s("srv/hooks/vzdump"), "does not exist"],
    );
}

#[test]
fn doctor_reports_lost_async_runs_with_the_marker_to_remove() {
    let h = healthy();
    let marker = h.file(
        "var/log/hookrun/async/running/r9.vzdump-60-copy-101.json",
        "{\"record\":{\"time\":\"2026-11-21T03:00:00.000Z\",\"run_id\":\"r9\",\"platform\":\"vzdump\",\"phase\":\"log-end\",\"object\":\"101\",\"hook\":\"60-copy\",\"mode\":\"async\",\"outcome\":\"running\",\"exit_code\":null,\"signal\":null,\"duration_ms\":0,\"job\":\"vzdump-60-copy-101\"},\"supervisor_pid\":999999999}",
        0o640,
    );
    h.file("var/log/hookrun/runs.jsonl", "not json\n", 0o640);
    let out = h.doctor(&["--platform", "vzdump"]);
    out.assert_success();
    let (msg, fix) = finding(
        &out,
        "warning",
        &[
            "async:",
            "lost: 60-copy (vzdump log-end 101)",
            "supervisor (pid 999999999) died",
        ],
    );
    assert!(msg.contains("async/vzdump-60-copy-101.log"), "{msg}");
    assert_eq!(fix, Some(format!("rm {}", marker.display())));
    finding(&out, "note", &["records:", "1 line(s)", "do not parse"]);
}

#[test]
fn doctor_json_has_platforms_and_findings_with_a_fix_for_every_problem() {
    let h = healthy();
    h.file(
        "etc/vzdump.conf",
        "script: /nonexistent/hookrun-vzdump\n",
        0o644,
    );
    h.hook("etc/hookrun/vzdump.d", "20-noexec", HOOK_OK, 0o644);
    h.file("etc/libvirt/hooks/network", "#!/bin/sh\n", 0o755);
    h.dir("etc/hookrun/libvirt-network.d", 0o755);
    let out = h.doctor(&["--json"]);
    out.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", out.stdout));
    let platforms = doc["platforms"]
        .as_object()
        .expect("platforms is an object");
    for name in [
        "hookrun",
        "vzdump",
        "pve-guest",
        "libvirt-qemu",
        "libvirt-network",
        "libvirt-lxc",
        "libvirt-daemon",
        "libvirt-libxl",
        "libvirt-bhyve",
        "worker",
    ] {
        assert!(platforms.contains_key(name), "no {name}: {doc:#}");
    }
    let (mut errors, mut warnings) = (0, 0);
    for (name, p) in platforms {
        assert!(p["in_use"].is_boolean(), "{name}");
        for f in p["findings"].as_array().expect("findings") {
            let sev = f["severity"].as_str().expect("severity");
            assert!(["ok", "note", "warning", "error"].contains(&sev), "{f}");
            assert!(f["subject"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
            assert!(f["message"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
            if sev == "warning" || sev == "error" {
                assert!(
                    f["fix"].as_str().is_some_and(|s| !s.is_empty()),
                    "a {sev} without a fix: {f}"
                );
            } else {
                assert!(f["fix"].is_null() || f["fix"].is_string(), "{f}");
            }
            errors += usize::from(sev == "error");
            warnings += usize::from(sev == "warning");
        }
    }
    assert_eq!(doc["errors"], errors);
    assert_eq!(doc["warnings"], warnings);
    let vz = doc["platforms"]["vzdump"]["findings"].as_array().unwrap();
    assert!(
        vz.iter().any(|f| f["severity"] == "error"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/hookrun-vzdump does not exist")),
        "{doc:#}"
    );
    assert!(
        vz.iter().any(|f| f["subject"] == "hook 20-noexec"
            && f["fix"] == format!("chmod +x {}", h.s("etc/hookrun/vzdump.d/20-noexec"))),
        "{doc:#}"
    );
    assert_eq!(doc["platforms"]["libvirt-network"]["in_use"], true);
}

#[test]
fn doctor_platform_selection() {
    let h = healthy();
    h.dir("etc/hookrun/borgmatic.d", 0o755);
    h.hook(
        "etc/hookrun/borgmatic.d",
        "10-x",
        "#!/bin/sh\n# phases: before-backup\n",
        0o755,
    );
    // Other tools' directories are found and checked too.
    let out = h.doctor(&[]);
    out.assert_success();
    finding(
        &out,
        "note",
        &["wiring:", "hookrun run --platform borgmatic"],
    );
    finding(&out, "ok", &["hook 10-x:", "runs in before-backup"]);
    let out = h.doctor(&["--platform", "borgmatic"]);
    out.assert_success();
    assert!(
        out.stdout.contains("\nborgmatic\n") && !out.stdout.contains("\nvzdump\n"),
        "{}",
        out.stdout
    );
    // An unknown libvirt driver or a bad name is a usage error.
    h.doctor(&["--platform", "libvirt-foo"])
        .assert_code(2)
        .assert_stderr_contains("unknown libvirt driver 'foo'");
    h.doctor(&["--platform", "Bad/Name"]).assert_code(2);
    // --root and --bin-dir are not in --help.
    let help = Run::new(bin("hookrun")).args(["doctor", "--help"]).run();
    help.assert_success().assert_stdout_contains("--platform");
    assert!(
        !help.stdout.contains("--root") && !help.stdout.contains("--bin-dir"),
        "{}",
        help.stdout
    );
}

// ---------------------------------------------------------------------------------------
// install
// ---------------------------------------------------------------------------------------

/// A Proxmox node before hookrun: the stock vzdump.conf, guests, storages, libvirt.
fn fresh() -> Host {
    let h = Host::new();
    h.file(
        "etc/vzdump.conf",
        "# vzdump default settings\r\n\r\n#tmpdir: DIR\n#dumpdir: DIR\n#script: FILENAME\nbwlimit: 0\n# end without newline",
        0o640,
    );
    h.file(
        "etc/pve/storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n",
        0o640,
    );
    h.file("etc/pve/qemu-server/101.conf", "memory: 2048\n", 0o640);
    h.file(
        "etc/pve/lxc/200.conf",
        "hookscript: local:snippets/other.pl\n",
        0o640,
    );
    h.dir("var/lib/vz", 0o755);
    h.dir("etc/libvirt", 0o755);
    h
}

#[test]
fn install_prints_the_exact_steps_and_changes_nothing() {
    let h = fresh();
    let before = snapshot(h.root());
    let root = h.root().display().to_string();

    let out = h.install(&["vzdump"]);
    out.assert_success()
        .assert_stdout_contains(&format!("install -d -m 0755 {root}/etc/hookrun/vzdump.d\n"))
        .assert_stdout_contains("add the line:\n     script: /usr/bin/hookrun-vzdump\n")
        .assert_stdout_contains("none sets one")
        .assert_stdout_contains("Nothing was changed.");

    let out = h.install(&["pve-guest", "--vmid", "101", "200", "999"]);
    out.assert_success()
        .assert_stdout_contains(&format!(
            "ln -s /usr/bin/hookrun-pve-guest {root}/var/lib/vz/snippets/hookrun\n"
        ))
        .assert_stdout_contains("pvesm set local --content iso,vztmpl,backup,snippets\n")
        .assert_stdout_contains("     qm set 101 --hookscript local:snippets/hookrun\n")
        .assert_stdout_contains("     pct set 200 --hookscript local:snippets/hookrun\n")
        .assert_stdout_contains("(replaces its hookscript local:snippets/other.pl")
        .assert_stdout_contains("guest 999 is not on this node")
        .assert_stdout_contains("hookrun never edits guest configs");

    let out = h.install(&["libvirt", "--driver", "qemu", "network"]);
    out.assert_success()
        .assert_stdout_contains(&format!(
            "install -d -m 0755 {root}/etc/hookrun/libvirt-qemu.d\n"
        ))
        .assert_stdout_contains(&format!(
            "install -d -m 0755 {root}/etc/hookrun/libvirt-network.d\n"
        ))
        .assert_stdout_contains(&format!(
            "ln -s /usr/bin/hookrun-libvirt {root}/etc/libvirt/hooks/qemu\n"
        ))
        .assert_stdout_contains(&format!(
            "ln -s /usr/bin/hookrun-libvirt {root}/etc/libvirt/hooks/network\n"
        ))
        .assert_stdout_contains("systemctl restart libvirtd");

    let out = h.install(&["worker"]);
    out.assert_success()
        .assert_stdout_contains("0 3 * * * root /usr/bin/hookrun-worker run --no-wait backup -- /usr/local/bin/backup.sh")
        .assert_stdout_contains("-v ./hooks:/hooks:ro")
        .assert_stdout_contains("defaultMode: 0755")
        .assert_stdout_contains("strict_permissions = false");

    assert_eq!(
        snapshot(h.root()),
        before,
        "install without --apply changed the tree"
    );

    // Options that do not belong to the platform are usage errors.
    h.install(&["vzdump", "--vmid", "101"]).assert_code(2);
    h.install(&["pve-guest", "--driver", "qemu"]).assert_code(2);
    h.install(&["vzdump", "--force"]).assert_code(2);
    h.install(&["libvirt", "--driver", "xen"]).assert_code(2);
    h.install(&["pve-guest", "--storage", "nope"])
        .assert_code(2)
        .assert_stderr_contains("storage 'nope' is not in");
}

#[test]
fn install_apply_vzdump_changes_only_the_script_line_keeps_a_backup_and_is_idempotent() {
    let h = fresh();
    let original = h.read("etc/vzdump.conf");
    let before = snapshot(h.root());
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_success()
        .assert_stdout_contains("applied: 2 change(s)");
    let after = snapshot(h.root());
    let (added, removed, changed) = diff(&before, &after);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(changed, ["etc/vzdump.conf"]);
    assert_eq!(added.len(), 3, "{added:?}");
    assert_eq!(&added[..2], ["etc/hookrun", "etc/hookrun/vzdump.d"]);
    assert!(
        added[2].starts_with("etc/vzdump.conf.hookrun-bak.2"),
        "{added:?}"
    );
    assert_eq!(after[Path::new("etc/hookrun/vzdump.d")], Node::Dir(0o755));
    // The backup is the old file; the new one is the old one plus the line, same mode.
    assert_eq!(h.read(&added[2]), original);
    let mut want = original.clone();
    want.extend_from_slice(b"\nscript: /usr/bin/hookrun-vzdump\n");
    assert_eq!(h.read("etc/vzdump.conf"), want);
    assert_eq!(
        std::fs::metadata(h.p("etc/vzdump.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );

    // Again: nothing changes, and it says so.
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_success()
        .assert_stdout_contains("nothing to change: everything was already in place");
    assert_eq!(snapshot(h.root()), after);

    // An old script line pointing at a path that does not exist is replaced in place;
    // the other lines (CRLF included) stay byte for byte.
    let old =
        b"# vzdump default settings\r\nscript: /usr/local/bin/hookrun-vzdump\r\nbwlimit: 0\r\n";
    h.file("etc/vzdump.conf", old, 0o644);
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_success()
        .assert_stdout_contains("replace line 2 ('script: /usr/local/bin/hookrun-vzdump')");
    assert_eq!(
        h.read("etc/vzdump.conf"),
        b"# vzdump default settings\r\nscript: /usr/bin/hookrun-vzdump\r\nbwlimit: 0\r\n"
    );

    // The result is what doctor wants to see.
    h.hook("etc/hookrun/vzdump.d", "10-check", HOOK_OK, 0o755);
    let doc = h.doctor(&["--platform", "vzdump"]);
    doc.assert_success();
    finding(
        &doc,
        "ok",
        &[
            "script /usr/bin/hookrun-vzdump",
            "the installed hookrun-vzdump",
        ],
    );
}

#[test]
fn install_apply_vzdump_replaces_a_foreign_script_only_with_force() {
    let h = fresh();
    h.file("usr/local/sbin/hook.pl", "#!/usr/bin/perl\n", 0o755);
    h.file(
        "etc/vzdump.conf",
        "tmpdir: /t\nscript: /usr/local/sbin/hook.pl\n",
        0o644,
    );
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_code(1)
        .assert_stdout_contains("refused:")
        .assert_stdout_contains("names another hook script (/usr/local/sbin/hook.pl); --force");
    assert_eq!(
        h.read("etc/vzdump.conf"),
        b"tmpdir: /t\nscript: /usr/local/sbin/hook.pl\n"
    );

    let out = h.install(&["vzdump", "--apply", "--force"]);
    out.assert_success();
    assert_eq!(
        h.read("etc/vzdump.conf"),
        b"tmpdir: /t\nscript: /usr/bin/hookrun-vzdump\n"
    );
    let backups: Vec<_> = std::fs::read_dir(h.p("etc"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("vzdump.conf.hookrun-bak.")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read(backups[0].path()).unwrap(),
        b"tmpdir: /t\nscript: /usr/local/sbin/hook.pl\n"
    );

    // A script that already leads to the installed adapter (the shared-storage
    // symlink with hooks.d beside it) is kept, and that hooks.d is the directory.
    h.link(
        "mnt/pve/shared/snippets/vzdump/hookrun-vzdump",
        "/usr/bin/hookrun-vzdump",
    );
    h.dir("mnt/pve/shared/snippets/vzdump/hooks.d", 0o755);
    h.file(
        "etc/vzdump.conf",
        "script: /mnt/pve/shared/snippets/vzdump/hookrun-vzdump\n",
        0o644,
    );
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_success()
        .assert_stdout_contains("leads to the installed hookrun-vzdump")
        .assert_stdout_contains(&format!(
            "unchanged: {} exists",
            h.s("mnt/pve/shared/snippets/vzdump/hooks.d")
        ))
        .assert_stdout_contains("nothing to change");
}

#[test]
fn install_apply_pve_guest_creates_the_snippet_and_never_edits_guest_configs() {
    let h = fresh();
    let before = snapshot(h.root());
    let out = h.install(&["pve-guest", "--apply", "--vmid", "101"]);
    out.assert_success()
        .assert_stdout_contains("     qm set 101 --hookscript local:snippets/hookrun\n")
        .assert_stdout_contains("applied: 3 change(s)");
    let after = snapshot(h.root());
    let (added, removed, changed) = diff(&before, &after);
    assert!(
        removed.is_empty() && changed.is_empty(),
        "{removed:?} {changed:?}"
    );
    assert_eq!(
        added,
        [
            "etc/hookrun",
            "etc/hookrun/pve-guest.d",
            "var/lib/vz/snippets",
            "var/lib/vz/snippets/hookrun",
        ]
    );
    assert_eq!(
        after[Path::new("var/lib/vz/snippets/hookrun")],
        Node::Link("/usr/bin/hookrun-pve-guest".into())
    );
    assert_eq!(after[Path::new("var/lib/vz/snippets")], Node::Dir(0o755));

    let out = h.install(&["pve-guest", "--apply", "--vmid", "101"]);
    out.assert_success()
        .assert_stdout_contains("nothing to change");
    assert_eq!(snapshot(h.root()), after);

    // Doctor: the snippet is there, nobody uses it yet (200 has a script of its own).
    h.file("var/lib/vz/snippets/other.pl", "#!/usr/bin/perl\n", 0o755);
    let doc = h.doctor(&["--platform", "pve-guest"]);
    doc.assert_success();
    finding(
        &doc,
        "ok",
        &["local:snippets/hookrun", "no guest uses it yet"],
    );
    let (_, fix) = finding(
        &doc,
        "warning",
        &["no guest's hookscript is a hookrun snippet"],
    );
    assert_eq!(
        fix.as_deref(),
        Some("qm set <vmid> --hookscript local:snippets/hookrun")
    );
    finding(&doc, "note", &["container 200 (local:snippets/other.pl)"]);

    // A snippet of someone else's under that name is replaced only with --force.
    std::fs::remove_file(h.p("var/lib/vz/snippets/hookrun")).unwrap();
    h.file(
        "var/lib/vz/snippets/hookrun",
        "#!/bin/sh\necho mine\n",
        0o755,
    );
    h.install(&["pve-guest", "--apply"])
        .assert_code(1)
        .assert_stdout_contains("refused:");
    assert_eq!(
        h.read("var/lib/vz/snippets/hookrun"),
        b"#!/bin/sh\necho mine\n"
    );

    // An NFS storage that is not mounted: nothing is written onto the mount point.
    h.file(
        "etc/pve/storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\nnfs: nas\n\tpath /mnt/pve/nas\n\tcontent snippets\n",
        0o640,
    );
    let out = h.install(&["pve-guest", "--apply", "--storage", "nas"]);
    out.assert_code(1)
        .assert_stdout_contains("storage nas is not mounted")
        .assert_stdout_contains("nas is a nfs storage");
    assert!(!h.p("mnt/pve/nas").exists());
}

#[test]
fn install_apply_libvirt_refuses_a_foreign_script_without_force_and_backs_it_up_with_force() {
    let h = fresh();
    let legacy = b"#!/bin/sh\n# my old qemu hook\nlogger qemu \"$@\"\n";
    h.file("etc/libvirt/hooks/qemu", legacy, 0o750);
    h.daemon("libvirtd", 77, -3600);
    let before = snapshot(h.root());

    let out = h.install(&["libvirt", "--apply"]);
    out.assert_code(1)
        .assert_stdout_contains("refused:")
        .assert_stdout_contains("is another script, not hookrun")
        .assert_stdout_contains("50-legacy");
    let mid = snapshot(h.root());
    let (added, _, changed) = diff(&before, &mid);
    assert!(changed.is_empty(), "{changed:?}");
    // The hooks directory is a step of its own and was made; the script is untouched.
    assert_eq!(added, ["etc/hookrun", "etc/hookrun/libvirt-qemu.d"]);
    assert_eq!(h.read("etc/libvirt/hooks/qemu"), legacy);

    let out = h.install(&["libvirt", "--apply", "--force"]);
    out.assert_success()
        .assert_stdout_contains("systemctl restart libvirtd")
        .assert_stdout_contains(
            "not done: run 'systemctl restart libvirtd' yourself, or add --restart-daemon",
        );
    let after = snapshot(h.root());
    let (added, removed, changed) = diff(&mid, &after);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(changed, ["etc/libvirt/hooks/qemu"]);
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        added[0].starts_with("etc/libvirt/hooks/qemu.hookrun-bak."),
        "{added:?}"
    );
    assert_eq!(
        after[Path::new(&added[0])],
        Node::File(0o750, legacy.to_vec())
    );
    assert_eq!(
        after[Path::new("etc/libvirt/hooks/qemu")],
        Node::Link("/usr/bin/hookrun-libvirt".into())
    );

    let out = h.install(&["libvirt", "--apply"]);
    out.assert_success()
        .assert_stdout_contains("nothing to change");
    assert_eq!(snapshot(h.root()), after);

    // --restart-daemon cannot touch another root's daemons.
    h.install(&["libvirt", "--apply", "--restart-daemon"])
        .assert_code(2);
}

#[test]
fn install_apply_refuses_when_the_adapter_is_missing() {
    let h = fresh();
    std::fs::remove_file(h.p("usr/bin/hookrun-vzdump")).unwrap();
    let before = snapshot(h.root());
    let out = h.install(&["vzdump", "--apply"]);
    out.assert_code(1)
        .assert_stderr_contains(&format!("{} does not exist", h.s("usr/bin/hookrun-vzdump")))
        .assert_stderr_contains("nothing was changed");
    assert_eq!(snapshot(h.root()), before);
    // Without --apply it still prints the steps, with a warning.
    h.install(&["vzdump"])
        .assert_success()
        .assert_stdout_contains("warning:")
        .assert_stdout_contains("script: /usr/bin/hookrun-vzdump");
}

#[test]
fn install_then_doctor_takes_a_fresh_node_to_a_verified_setup() {
    let h = fresh();
    h.file(
        "etc/pve/storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\tcontent snippets\n",
        0o640,
    );
    h.file("etc/pve/lxc/200.conf", "arch: amd64\n", 0o640);
    for p in ["vzdump", "pve-guest", "libvirt", "worker"] {
        h.install(&[p, "--apply"]).assert_success();
    }
    // What the operator does by hand: qm set / pct set, and writing hooks.
    h.file(
        "etc/pve/qemu-server/101.conf",
        "memory: 2048\nhookscript: local:snippets/hookrun\n",
        0o640,
    );
    h.hook("etc/hookrun/vzdump.d", "10-check", HOOK_OK, 0o755);
    h.hook(
        "etc/hookrun/pve-guest.d",
        "10-check",
        "#!/bin/sh\n# mode: sync\n# phases: pre-start\nexit 0\n",
        0o755,
    );
    let out = h.doctor(&[]);
    out.assert_success();
    assert!(
        summary(&out).starts_with("0 error(s), 0 warning(s)"),
        "{}",
        out.stdout
    );
    finding(&out, "ok", &["local:snippets/hookrun", "used by VM 101"]);
    finding(
        &out,
        "ok",
        &[
            &h.s("etc/libvirt/hooks/qemu"),
            "the installed hookrun-libvirt",
        ],
    );
    // No proc in this root: doctor says what it cannot know.
    finding(&out, "note", &["daemon:", "process detection is skipped"]);
    assert_eq!(
        std::fs::metadata(h.p("etc/hookrun/worker.d"))
            .unwrap()
            .mode()
            & 0o7777,
        0o755
    );
}
