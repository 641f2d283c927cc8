//! `hookrun demo`: a whole simulated vzdump job, run through the real `hookrun-vzdump`
//! binary against the example hooks, with the argv and cleared environment vzdump uses
//! (`PVE::VZDump::run_hook_script`). Nothing outside a temporary directory is touched.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::cli::DemoArgs;

/// The example hooks, compiled in so the demo works from any directory.
const EXAMPLES: &[(&str, &str, u32)] = &[
    (
        "10-announce",
        include_str!("../../../../../examples/hooks.d/10-announce"),
        0o755,
    ),
    (
        "20-require-dumpdir",
        include_str!("../../../../../examples/hooks.d/20-require-dumpdir"),
        0o755,
    ),
    (
        "30-quiesce-db",
        include_str!("../../../../../examples/hooks.d/30-quiesce-db"),
        0o755,
    ),
    (
        "50-archive-report",
        include_str!("../../../../../examples/hooks.d/50-archive-report"),
        0o755,
    ),
    (
        "60-offsite-copy",
        include_str!("../../../../../examples/hooks.d/60-offsite-copy"),
        0o755,
    ),
    (
        "90-summary",
        include_str!("../../../../../examples/hooks.d/90-summary"),
        0o755,
    ),
    (
        "README",
        include_str!("../../../../../examples/hooks.d/README"),
        0o644,
    ),
];

struct Guest {
    vmid: &'static str,
    vmtype: &'static str,
    hostname: &'static str,
    ext: &'static str,
}

const GUESTS: &[Guest] = &[
    Guest {
        vmid: "101",
        vmtype: "qemu",
        hostname: "web",
        ext: ".vma.zst",
    },
    Guest {
        vmid: "102",
        vmtype: "lxc",
        hostname: "db",
        ext: ".tar.zst",
    },
];

/// Guest phases of a snapshot-mode backup, in vzdump's order (reference §1.5).
const SNAPSHOT_PHASES: &[&str] = &[
    "backup-start",
    "pre-stop",
    "pre-restart",
    "post-restart",
    "backup-end",
    "log-end",
];

pub fn main(args: &DemoArgs) -> anyhow::Result<i32> {
    let vzdump_bin = find_vzdump_binary()?;
    let tmp = tempfile::Builder::new()
        .prefix("hookrun-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let root = tmp.path().to_owned();
    let demo = Demo::set_up(&root, &vzdump_bin)?;

    println!(
        "hookrun demo: a vzdump backup job of guests 101 (qemu, web) and 102 (lxc, db), snapshot mode"
    );
    println!(
        "  entry point  {} -> {}",
        demo.entry.display(),
        vzdump_bin.display()
    );
    println!("  hooks        {}", demo.hooks.display());
    println!(
        "  config       {}  (log_dir and lock_dir inside the demo directory)",
        demo.config.display()
    );
    println!();
    println!("What `hookrun list --phase pre-stop --object 102` says about this directory:");
    let settings = hookrun_core::Config::load_file(&demo.config, true)?.settings_for("vzdump");
    let entries = hookrun_core::discover::scan(&demo.hooks)?;
    let plan = crate::list::plan(
        &settings,
        &demo.hooks,
        &entries,
        "pre-stop",
        Some("102"),
        hookrun_core::OnError::Fail,
    );
    for line in plan.lines() {
        println!("  {line}");
    }
    println!();

    let mut unexpected = 0;
    unexpected += demo.call(&["job-init"], &[])?;
    unexpected += demo.call(
        &["job-start"],
        &[("DUMPDIR", demo.dump.as_os_str().to_owned())],
    )?;
    let stamp = "2026_11_21-03_00_00";
    for g in GUESTS {
        let base = demo
            .dump
            .join(format!("vzdump-{}-{}-{stamp}", g.vmtype, g.vmid));
        let target = PathBuf::from(format!("{}{}", base.display(), g.ext));
        let logfile = PathBuf::from(format!("{}.log", base.display()));
        let env = [
            ("DUMPDIR", demo.dump.as_os_str().to_owned()),
            ("VMTYPE", g.vmtype.into()),
            ("HOSTNAME", g.hostname.into()),
            ("TARGET", target.as_os_str().to_owned()),
            ("LOGFILE", logfile.as_os_str().to_owned()),
        ];
        for phase in SNAPSHOT_PHASES {
            // vzdump renames the finished archive into place before backup-end and
            // copies the guest's log next to it before log-end.
            if *phase == "backup-end" {
                std::fs::write(&target, vec![0u8; 4096 * (1 + g.vmid.len())])
                    .context("writing the demo archive")?;
            }
            if *phase == "log-end" {
                std::fs::write(
                    &logfile,
                    format!("INFO: Finished Backup of VM {}\n", g.vmid),
                )?;
            }
            unexpected += demo.call(&[phase, "snapshot", g.vmid], &env)?;
        }
    }
    unexpected += demo.call(
        &["job-end"],
        &[("DUMPDIR", demo.dump.as_os_str().to_owned())],
    )?;

    demo.wait_for_async()?;
    println!(
        "Run records ({}):",
        demo.log_dir
            .join(hookrun_core::record::RECORDS_FILE)
            .display()
    );
    print!("{}", records_table(&demo.log_dir)?);
    println!();
    let async_log =
        hookrun_core::supervise::async_log_path(&demo.log_dir, "vzdump-60-offsite-copy-102");
    println!(
        "Async log of the offsite copy of guest 102 ({}):",
        async_log.display()
    );
    for line in std::fs::read_to_string(&async_log)
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
    println!();
    let user = hookrun_core::privilege::user_by_uid(nix::unistd::geteuid().as_raw())
        .map_or_else(|| "root".to_owned(), |u| u.name);
    let job_file = demo
        .mk_job_dir
        .join(user)
        .join("vzdump-60-offsite-copy-102");
    println!("Checkmk job file {}:", job_file.display());
    for line in std::fs::read_to_string(&job_file)
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
    println!();
    if args.keep {
        let kept = tmp.keep();
        println!("The demo directory is kept: {}", kept.display());
        println!(
            "Try: HOOKRUN_CONFIG={0}/hookrun.toml hookrun list --hooks-dir {0}/snippets/vzdump/hooks.d --phase log-end",
            kept.display()
        );
    } else {
        println!(
            "(The demo directory has been removed; run `hookrun demo --keep` to look around in it.)"
        );
    }
    if unexpected > 0 {
        println!("{unexpected} call(s) did not end as expected");
        return Ok(1);
    }
    println!(
        "Every phase ended as vzdump expects. Next: `hookrun lint` your own hooks, then wire hookrun-vzdump into /etc/vzdump.conf."
    );
    Ok(0)
}

struct Demo {
    entry: PathBuf,
    hooks: PathBuf,
    config: PathBuf,
    dump: PathBuf,
    log_dir: PathBuf,
    mk_job_dir: PathBuf,
}

impl Demo {
    fn set_up(root: &Path, vzdump_bin: &Path) -> anyhow::Result<Demo> {
        let mkdir = |p: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(p)
                .with_context(|| format!("creating {}", p.display()))
        };
        // The seed's layout: a dispatcher on (shared) storage with hooks.d beside it.
        let snippets = root.join("snippets/vzdump");
        let hooks = snippets.join("hooks.d");
        mkdir(&hooks)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
        let entry = snippets.join("hook-dispatcher");
        std::os::unix::fs::symlink(vzdump_bin, &entry).context("linking the entry point")?;
        for (name, body, mode) in EXAMPLES {
            let p = hooks.join(name);
            std::fs::write(&p, body)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
        }
        let dump = root.join("dump");
        mkdir(&dump)?;
        let log_dir = root.join("log");
        let config = root.join("hookrun.toml");
        let mut text = String::from("# hookrun demo configuration\n");
        let _ = writeln!(text, "log_dir = {:?}", log_dir.display().to_string());
        let _ = writeln!(
            text,
            "lock_dir = {:?}",
            root.join("lock").display().to_string()
        );
        let mk_job_dir = root.join("check_mk_agent/job");
        let _ = writeln!(text, "mk_job_dir = {:?}", mk_job_dir.display().to_string());
        std::fs::write(&config, text)?;
        Ok(Demo {
            entry,
            hooks,
            config,
            dump,
            log_dir,
            mk_job_dir,
        })
    }

    /// Async hooks outlive the dispatcher; wait for them so their records show.
    fn wait_for_async(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut said = false;
        loop {
            let running = hookrun_core::supervise::running_entries(&self.log_dir);
            if running.iter().all(|(_, alive)| !alive) {
                if said {
                    println!();
                }
                return Ok(());
            }
            if !said {
                println!(
                    "vzdump is done; {} async hook(s) still running in the background, waiting for them ...",
                    running.len()
                );
                said = true;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "async hooks did not finish within 60s; see {}",
                    self.log_dir.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Calls the entry point like vzdump: argv, a cleared environment with only the
    /// phase's variables, stdin at EOF, both output pipes read to EOF. Returns 1 when the
    /// exit code is not what vzdump would accept.
    fn call(&self, argv: &[&str], env: &[(&str, OsString)]) -> anyhow::Result<usize> {
        println!("==> vzdump calls: hook-dispatcher {}", argv.join(" "));
        let mut cmd = Command::new(&self.entry);
        cmd.args(argv)
            .env_clear()
            .env("STOREID", "local")
            .env("LC_ALL", "C")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .env("HOOKRUN_CONFIG", &self.config)
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.entry.display()))?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("    {line}");
        }
        let code = out.status.code().unwrap_or(-1);
        let verdict = match (code, argv[0]) {
            (0, _) => "vzdump carries on",
            (_, "job-init" | "job-start") => "vzdump would fail the whole job",
            (_, "job-end") => "vzdump would run job-abort and report the job as failed",
            (_, "log-end" | "backup-abort" | "job-abort") => "vzdump would log a warning",
            _ => "vzdump would fail this guest's backup",
        };
        println!("    exit {code}: {verdict}");
        println!();
        Ok(usize::from(code != 0))
    }
}

fn records_table(log_dir: &Path) -> anyhow::Result<String> {
    let (records, bad) =
        hookrun_core::record::read_records(&log_dir.join(hookrun_core::record::RECORDS_FILE))
            .context("reading the run records")?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<8} {:<13} {:<6} {:<20} {:<5} {:<8} {:>4} {:>6}",
        "time", "phase", "object", "hook", "mode", "outcome", "exit", "ms"
    );
    for r in &records {
        let time = r.time.get(11..19).unwrap_or("?");
        let exit = r.exit_code.map_or_else(|| "-".into(), |c| c.to_string());
        let _ = writeln!(
            out,
            "  {:<8} {:<13} {:<6} {:<20} {:<5} {:<8} {:>4} {:>6}",
            time,
            r.phase,
            r.object.as_deref().unwrap_or("-"),
            r.hook,
            r.mode,
            r.outcome.as_str(),
            exit,
            r.duration_ms
        );
    }
    let _ = writeln!(
        out,
        "  {} record(s){}",
        records.len(),
        if bad > 0 {
            format!(", {bad} unreadable line(s)")
        } else {
            String::new()
        }
    );
    Ok(out)
}

/// `hookrun-vzdump` beside this binary (installed packages, `cargo build`); when run by
/// `cargo run` from a checkout, it is built first with the same profile.
fn find_vzdump_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the hookrun binary itself")?;
    let beside = exe.with_file_name("hookrun-vzdump");
    let checkout = checkout();
    let stale = checkout
        .as_ref()
        .is_some_and(|(workspace, _)| source_is_newer(workspace, &beside));
    if beside.is_file() && !stale {
        return Ok(beside);
    }
    let Some((workspace, cargo)) = checkout else {
        anyhow::bail!(
            "{} is missing; install the hookrun-vzdump package",
            beside.display()
        );
    };
    let release = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "release");
    eprintln!("hookrun: building hookrun-vzdump for the demo ...");
    let mut build = Command::new(cargo);
    build.current_dir(&workspace).args([
        "build",
        "--quiet",
        "--package",
        "hookrun-vzdump",
        "--bin",
        "hookrun-vzdump",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build
        .status()
        .context("running cargo to build hookrun-vzdump")?;
    if !status.success() || !beside.is_file() {
        anyhow::bail!(
            "building hookrun-vzdump failed ({status}); try: cargo build --release --bins"
        );
    }
    Ok(beside)
}

/// The workspace and the cargo of a checkout this binary runs from under `cargo run`,
/// which sets `CARGO_MANIFEST_DIR` and `CARGO` for the program. Read at run time, so no
/// path of the build machine is compiled into the binary (packages stay reproducible).
fn checkout() -> Option<(PathBuf, std::ffi::OsString)> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let cargo = std::env::var_os("CARGO")?;
    let workspace = Path::new(&manifest).join("../..");
    workspace
        .join("adapters/vzdump/Cargo.toml")
        .is_file()
        .then_some((workspace, cargo))
}

/// When run from a checkout, a stale adapter binary would make the demo show old code.
fn source_is_newer(workspace: &Path, bin: &Path) -> bool {
    let Ok(bin_time) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let newest = |dir: &Path| -> Option<std::time::SystemTime> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .max()
    };
    [
        workspace.join("adapters/vzdump/src"),
        workspace.join("core/src"),
    ]
    .iter()
    .filter_map(|d| newest(d))
    .any(|t| t > bin_time)
}
