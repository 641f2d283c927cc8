//! A simulated Proxmox VE node that starts and stops guests and calls their hookscript
//! exactly as `PVE::GuestHelpers::exec_hookscript` does, and interprets the exit status
//! per phase the way qemu-server and pve-container do (`../shared/reference/proxmox.md`
//! §2):
//!
//! - `check_hookscript` first: the snippet must be a regular, executable file, or the
//!   call dies with "script '<volid>' does not exist" / "... is not executable" (this is
//!   what a snippet on an unmounted storage runs into);
//! - argv `[path, vmid, phase]` (vmid first, the opposite of vzdump), no shell, no
//!   timeout; stdin at EOF; stdout and stderr read until EOF on both, then `waitpid`;
//! - the environment is **not** cleared: it is the calling process's own (see
//!   [`task_environment`]) plus `LC_ALL=C` and `LVM_SUPPRESS_FD_WARNINGS=1` from
//!   `run_command` — and the test's own `HOOKRUN_CONFIG`, the one variable the harness
//!   adds (see [`crate::TestEnv`]);
//! - QEMU's `vm_start_nolock` sets `PVE_MIGRATED_FROM` before `pre-start`: the source
//!   node on an incoming migration, else an empty string (Perl exports `undef` as `""`).
//!   It stays in the process's environment, so `post-start`, called at the end of the
//!   same function, sees it too (inferred from the code path, see the reference);
//! - LXC `post-stop` runs inside LXC's post-stop hook under `pve-container@<vmid>`, so it
//!   sees that unit's environment and LXC's hook variables (the exact list depends on
//!   LXC; [`lxc_post_stop_environment`] has the usual ones);
//! - `pre-start` is called with `stop_on_error`: a non-zero exit dies with
//!   "hookscript error for <vmid> on pre-start: command '<path> <vmid> pre-start' failed:
//!   exit code N" and the guest does not start; in every other phase the same message
//!   is only a Perl `warn` and the start or stop goes on.
//!
//! Not modelled (no hook sees a difference): cloud-init, hibernation resume, the
//! live-migration source (which calls no stop hooks), container reboots (which skip
//! `post-stop`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Outcome, Run, TestEnv};

/// The four phases Proxmox calls a guest hookscript with, in lifecycle order.
pub const PHASES: &[&str] = &["pre-start", "post-start", "pre-stop", "post-stop"];

/// `PATH` of a Proxmox task (pvedaemon sets it for the API workers).
pub const TASK_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// systemd's default `PATH` for services (pve-container@.service runs LXC's hooks).
pub const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// A VM (qemu-server: `qm`).
    Qemu,
    /// A container (pve-container: `pct`).
    Lxc,
}

/// One guest with a `hookscript:` in its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guest {
    pub vmid: u32,
    pub kind: GuestKind,
}

impl Guest {
    pub fn qemu(vmid: u32) -> Guest {
        Guest {
            vmid,
            kind: GuestKind::Qemu,
        }
    }

    pub fn lxc(vmid: u32) -> Guest {
        Guest {
            vmid,
            kind: GuestKind::Lxc,
        }
    }
}

/// The environment of a start/stop task forked by pvedaemon (a systemd service without
/// `User=`, so no `HOME`): the variables systemd gives a service, pvedaemon's `PATH`,
/// and the locale of the node.
pub fn task_environment() -> BTreeMap<String, String> {
    [
        ("PATH", TASK_PATH),
        ("LANG", "en_US.UTF-8"),
        ("INVOCATION_ID", "5f0e4c1f2b8a4d6e9c3b7a1d2e4f6a8b"),
        ("JOURNAL_STREAM", "8:24117"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The environment of LXC's post-stop hook for container `vmid` under
/// `pve-container@<vmid>.service`: systemd's service variables and LXC's hook
/// variables.
pub fn lxc_post_stop_environment(vmid: u32) -> BTreeMap<String, String> {
    let base = format!("/var/lib/lxc/{vmid}");
    [
        ("PATH", SYSTEMD_PATH.to_owned()),
        (
            "INVOCATION_ID",
            "0c9a8b7d6e5f4a3b2c1d0e9f8a7b6c5d".to_owned(),
        ),
        ("LXC_NAME", vmid.to_string()),
        ("LXC_CONFIG_FILE", format!("{base}/config")),
        ("LXC_ROOTFS_PATH", format!("{base}/rootfs")),
        (
            "LXC_ROOTFS_MOUNT",
            "/usr/lib/x86_64-linux-gnu/lxc/rootfs".to_owned(),
        ),
        ("LXC_HOOK_TYPE", "post-stop".to_owned()),
        ("LXC_HOOK_SECTION", "lxc".to_owned()),
        ("LXC_HOOK_VERSION", "1".to_owned()),
        ("LXC_TARGET", "stop".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One `exec_hookscript` call that got as far as running the script.
#[derive(Debug, Clone)]
pub struct HookscriptCall {
    pub vmid: u32,
    pub phase: String,
    /// The script path Proxmox ran (the snippet, as `check_hookscript` resolved it).
    pub script: PathBuf,
    /// The complete environment the script was given.
    pub env: BTreeMap<String, String>,
    pub stop_on_error: bool,
    pub outcome: Outcome,
}

impl HookscriptCall {
    /// The arguments after the script path: `[vmid, phase]`.
    pub fn argv(&self) -> Vec<String> {
        vec![self.vmid.to_string(), self.phase.clone()]
    }

    pub fn failed(&self) -> bool {
        !self.outcome.success()
    }

    /// What `PVE::Tools::run_command` dies with when the script failed.
    pub fn run_command_error(&self) -> Option<String> {
        if !self.failed() {
            return None;
        }
        let cmd = format!("{} {} {}", self.script.display(), self.vmid, self.phase);
        Some(
            match (
                self.outcome.status.code(),
                std::os::unix::process::ExitStatusExt::signal(&self.outcome.status),
            ) {
                (Some(c), _) => format!("command '{cmd}' failed: exit code {c}"),
                (None, Some(s)) => format!("command '{cmd}' failed: got signal {s}"),
                _ => format!("command '{cmd}' failed"),
            },
        )
    }

    /// `vmid phase`, for traces.
    pub fn line(&self) -> String {
        format!("{} {}", self.vmid, self.phase)
    }
}

/// How a start or stop task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskResult {
    /// `TASK OK`: the guest was started / stopped (warnings may have been printed).
    Ok,
    /// `TASK ERROR: <message>`: the start was aborted; the guest is not running.
    Error(String),
}

impl fmt::Display for TaskResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskResult::Ok => f.write_str("TASK OK"),
            TaskResult::Error(e) => write!(f, "TASK ERROR: {e}"),
        }
    }
}

/// Everything one start or stop did.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub guest: Guest,
    pub calls: Vec<HookscriptCall>,
    /// Plain Perl warnings (`hookscript error for ...`): printed, not counted, the task
    /// stays `TASK OK`.
    pub warnings: Vec<String>,
    pub result: TaskResult,
    /// Whether the guest is running at the end.
    pub running: bool,
}

impl Lifecycle {
    /// `vmid phase` of every script run, in order.
    pub fn trace(&self) -> Vec<String> {
        self.calls.iter().map(HookscriptCall::line).collect()
    }

    /// The call of `phase`.
    pub fn call(&self, phase: &str) -> &HookscriptCall {
        self.calls
            .iter()
            .find(|c| c.phase == phase)
            .unwrap_or_else(|| panic!("no call of {phase}; {self}"))
    }

    /// Panics with the whole lifecycle unless the task ended `TASK OK`.
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.result, TaskResult::Ok, "{self}");
        self
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "guest {} ({:?}): {} (running: {})",
            self.guest.vmid, self.guest.kind, self.result, self.running
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for c in &self.calls {
            writeln!(f, "call {}: {:#?}", c.line(), c.outcome)?;
        }
        Ok(())
    }
}

/// The Proxmox side: a node whose guests have `hookscript: <volid>`, the snippet being
/// `script` on a storage.
pub struct Node<'a> {
    env: &'a TestEnv,
    script: PathBuf,
    volid: String,
    extra_env: BTreeMap<String, String>,
}

impl<'a> Node<'a> {
    /// A node whose guests use `script` as `local:snippets/<file name>`.
    pub fn new(env: &'a TestEnv, script: PathBuf) -> Node<'a> {
        let name = script
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Node {
            env,
            script,
            volid: format!("local:snippets/{name}"),
            extra_env: BTreeMap::new(),
        }
    }

    /// Adds a variable to the environment every task inherits (e.g. `HOOKRUN_LOG`).
    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.insert(k.to_owned(), v.to_owned());
        self
    }

    /// The snippet's path.
    pub fn script(&self) -> &Path {
        &self.script
    }

    /// `check_hookscript`: the snippet must exist as a file and be executable.
    pub fn check_hookscript(&self) -> Result<PathBuf, String> {
        let meta = std::fs::metadata(&self.script)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .ok_or_else(|| format!("script '{}' does not exist", self.volid))?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0 {
            return Err(format!("script '{}' is not executable", self.volid));
        }
        Ok(self.script.clone())
    }

    /// The environment `exec_hookscript` gives the script: `inherited`, plus
    /// `run_command`'s two variables and the test's `HOOKRUN_CONFIG`.
    pub fn environment(&self, inherited: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = inherited.clone();
        env.extend(self.extra_env.clone());
        env.insert("LC_ALL".to_owned(), "C".to_owned());
        env.insert("LVM_SUPPRESS_FD_WARNINGS".to_owned(), "1".to_owned());
        let (k, v) = self.env.config_var();
        env.insert(k, v);
        env
    }

    /// `exec_hookscript($conf, $vmid, $phase, $stop_on_error)` in a process whose
    /// environment is `inherited`. `Err` is what the task dies with (only with
    /// `stop_on_error`); without it a failure becomes a warning in `life`.
    pub fn exec_hookscript(
        &self,
        life: &mut Lifecycle,
        phase: &str,
        stop_on_error: bool,
        inherited: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let vmid = life.guest.vmid;
        let result = self.check_hookscript().and_then(|script| {
            let env = self.environment(inherited);
            let outcome = Run::new(&script)
                .arg(vmid.to_string())
                .arg(phase)
                .envs(&env)
                .run();
            let call = HookscriptCall {
                vmid,
                phase: phase.to_owned(),
                script,
                env,
                stop_on_error,
                outcome,
            };
            let err = call.run_command_error();
            life.calls.push(call);
            err.map_or(Ok(()), Err)
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = format!("hookscript error for {vmid} on {phase}: {e}");
                if stop_on_error {
                    Err(msg)
                } else {
                    life.warnings.push(msg);
                    Ok(())
                }
            }
        }
    }

    fn lifecycle(guest: Guest, running: bool) -> Lifecycle {
        Lifecycle {
            guest,
            calls: Vec::new(),
            warnings: Vec::new(),
            result: TaskResult::Ok,
            running,
        }
    }

    /// `qm start <vmid>` / `pct start <vmid>`: `pre-start` (may abort), the start,
    /// `post-start` (warning only).
    pub fn start(&self, guest: Guest) -> Lifecycle {
        self.start_impl(guest, None)
    }

    /// The incoming side of `qm migrate <vmid> <this node>` from `source`: a QEMU start
    /// with `PVE_MIGRATED_FROM=<source>`. (Containers migrate in restart mode: the
    /// target does a normal start.)
    pub fn start_migration_target(&self, guest: Guest, source: &str) -> Lifecycle {
        assert_eq!(
            guest.kind,
            GuestKind::Qemu,
            "only QEMU sets PVE_MIGRATED_FROM"
        );
        self.start_impl(guest, Some(source))
    }

    fn start_impl(&self, guest: Guest, migrated_from: Option<&str>) -> Lifecycle {
        let mut life = Self::lifecycle(guest, false);
        let mut env = task_environment();
        if guest.kind == GuestKind::Qemu {
            // `$ENV{PVE_MIGRATED_FROM} = $migratedfrom;` — undef is exported as "".
            env.insert(
                "PVE_MIGRATED_FROM".to_owned(),
                migrated_from.unwrap_or_default().to_owned(),
            );
        }
        if let Err(e) = self.exec_hookscript(&mut life, "pre-start", true, &env) {
            life.result = TaskResult::Error(e);
            return life;
        }
        // QEMU is started / `systemctl start pve-container@<vmid>` succeeded.
        life.running = true;
        let _ = self.exec_hookscript(&mut life, "post-start", false, &env);
        life
    }

    /// `qm shutdown|stop <vmid>` / `pct shutdown|stop <vmid>` through the API:
    /// `pre-stop` (warning only), the stop, `post-stop` (warning only; for containers
    /// from LXC's post-stop hook, with its environment).
    pub fn stop(&self, guest: Guest) -> Lifecycle {
        let mut life = Self::lifecycle(guest, true);
        let env = task_environment();
        let _ = self.exec_hookscript(&mut life, "pre-stop", false, &env);
        life.running = false;
        let post_env = match guest.kind {
            GuestKind::Qemu => env,
            GuestKind::Lxc => lxc_post_stop_environment(guest.vmid),
        };
        let _ = self.exec_hookscript(&mut life, "post-stop", false, &post_env);
        life
    }
}

/// Symlinks the built `hookrun-pve-guest` as `<entry dir>/<name>` — the snippet, e.g.
/// `/var/lib/vz/snippets/hookrun` — so that the test tree's `hooks.d` is beside it.
pub fn snippet_symlink(env: &TestEnv, name: &str) -> PathBuf {
    let path = env.entry_dir().join(name);
    std::os::unix::fs::symlink(crate::bin("hookrun-pve-guest"), &path)
        .unwrap_or_else(|e| panic!("symlink the snippet {}: {e}", path.display()));
    path
}
