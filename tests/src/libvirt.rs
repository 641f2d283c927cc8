//! libvirt calling `hookrun-libvirt`, two ways (`../shared/reference/libvirt.md`):
//!
//! - [`LibvirtHost`]: the adapter called exactly as `virHookCall` calls a hook script —
//!   through a symlink named after the driver (`<tree>/hooks/qemu`, or a file in
//!   `<tree>/hooks/qemu.d/`), argv `object op subop extra`, the XML written to a pipe on
//!   stdin ([`RunStdin::run_with_stdin`]; libvirt ignores EPIPE, so does the writer),
//!   and only the environment libvirt passes ([`libvirt_env`]: `LC_ALL=C` plus `PATH`,
//!   `HOME`, `USER`, `LOGNAME`) — plus the test's `HOOKRUN_CONFIG`, the one variable the
//!   harness adds, whose `[libvirt-<driver>]` tables point every driver at the test's
//!   hooks directory;
//! - [`Libvirtd`]: Debian's real `libvirtd` ([`ensure_installed`]), started as root in
//!   its own mount and network namespace by a launcher script that mounts private state
//!   over every path it writes to and the test's hook tree over `/etc/libvirt/hooks`
//!   ([`NsLayout`]), driven with `virsh` run inside the same namespaces, and cleaned up
//!   by pid — the daemon, QEMU, hooks, anything in its namespaces — even when the test
//!   fails.
//!
//! Hooks written by [`capture_hook_text`] log each call like
//! [`crate::log_call_snippet`] and also keep the exact stdin bytes they got; read the
//! calls back with [`calls_in`] as [`LvCall`]s.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{
    DEFAULT_PATH, HookCall, Outcome, Run, TestEnv, bin, chmod, kill_all, log_call_snippet, mkdir,
    process_alive, shell_quote, toml_string, wait_dead, write_file,
};

/// The drivers libvirt has hook scripts for (`virHookDriver`).
pub const DRIVERS: &[&str] = &["daemon", "qemu", "lxc", "network", "libxl", "bhyve"];

/// `PATH` of libvirtd under systemd (and of the daemon the real suite starts).
pub const DAEMON_PATH: &str = DEFAULT_PATH;

/// The environment libvirt gives every hook (`virCommandAddEnvPassCommon`): `LC_ALL=C`
/// and the daemon's `PATH`, `HOME`, `USER`, `LOGNAME` (and `TMPDIR` when the daemon has
/// it; add it with [`Run::env`]). Nothing else — no `HOOKRUN_*`, no `RUST_LOG`.
pub fn libvirt_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LC_ALL", "C"),
        ("PATH", DAEMON_PATH),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
    ]
}

// ---------------------------------------------------------------------------------------
// Running a program with bytes on stdin
// ---------------------------------------------------------------------------------------

/// Runs a [`Run`] with `input` written to its stdin through a pipe, the way libvirt's
/// `virCommandSetInputBuffer` does: written while stdout and stderr are read, and an
/// early close by the program (EPIPE) is ignored.
pub trait RunStdin {
    fn run_with_stdin(self, input: impl Into<Vec<u8>>) -> Outcome;
}

impl RunStdin for Run {
    fn run_with_stdin(self, input: impl Into<Vec<u8>>) -> Outcome {
        feed(self, input.into())
    }
}

fn feed(run: Run, input: Vec<u8>) -> Outcome {
    let mut cmd = Command::new(&run.program);
    cmd.args(&run.args)
        .env_clear()
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &run.cwd {
        cmd.current_dir(dir);
    }
    let spawned = {
        let _guard = crate::spawn_guard();
        cmd.spawn()
    };
    let mut child = spawned.unwrap_or_else(|e| panic!("cannot start {}: {e}", run.describe()));
    let started = Instant::now();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        // EPIPE (the program did not read it all) is fine, as for libvirt.
        let _ = stdin.write_all(&input);
    });
    let (tx, rx) = mpsc::channel();
    let pipes: [(usize, Box<dyn Read + Send>); 2] = [
        (0, Box::new(child.stdout.take().expect("piped stdout"))),
        (1, Box::new(child.stderr.take().expect("piped stderr"))),
    ];
    for (which, mut pipe) in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((which, buf));
        });
    }
    let limit = started + run.deadline;
    let mut streams: [Option<Vec<u8>>; 2] = [None, None];
    while streams.iter().any(Option::is_none) {
        match rx.recv_timeout(limit.saturating_duration_since(Instant::now())) {
            Ok((which, data)) => streams[which] = Some(data),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not close stdout and stderr within {:?}; killed",
                    run.describe(),
                    run.deadline
                );
            }
        }
    }
    let elapsed = started.elapsed();
    let status = child.wait().expect("waitpid");
    let _ = writer.join();
    let [stdout, stderr] =
        streams.map(|s| String::from_utf8_lossy(&s.unwrap_or_default()).into_owned());
    Outcome {
        command: run.describe(),
        status,
        stdout,
        stderr,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------
// Hooks that keep their stdin
// ---------------------------------------------------------------------------------------

/// The text of a `#!/bin/sh` hook: `header` lines (`"mode: sync"` → `# mode: sync`),
/// then code that saves its stdin to a new file under `stdin_dir` (exported as
/// `HOOK_STDIN_FILE`, so the body can read it again), then one [`log_call_snippet`] line
/// appended to `log`, then `body`.
pub fn capture_hook_text(log: &Path, stdin_dir: &Path, header: &[&str], body: &str) -> String {
    let mut text = String::from("#!/bin/sh\n");
    for line in header {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    let template = shell_quote(&stdin_dir.join("XXXXXXXX").to_string_lossy());
    text.push_str(&format!(
        "HOOK_STDIN_FILE=$(mktemp {template}) || exit 99\ncat > \"$HOOK_STDIN_FILE\" || exit 99\nexport HOOK_STDIN_FILE\n"
    ));
    text.push_str(&log_call_snippet(log));
    text.push_str(body);
    if !body.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// One call of a hook written by [`capture_hook_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvCall {
    pub hook: String,
    pub argv: Vec<String>,
    /// Without the shell's own variables and without `HOOK_STDIN_FILE`.
    pub env: BTreeMap<String, String>,
    /// Exactly the bytes the hook read from stdin.
    pub stdin: Vec<u8>,
}

impl LvCall {
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    /// argv as `[a|b|c|d]`, for messages.
    pub fn argv_text(&self) -> String {
        format!("[{}]", self.argv.join("|"))
    }
}

/// Every call logged to `log` by [`capture_hook_text`] hooks, in order.
pub fn calls_in(log: &Path) -> Vec<LvCall> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", log.display()),
    };
    text.lines()
        .map(|line| {
            let HookCall {
                hook,
                argv,
                mut env,
            } = HookCall::parse(line);
            let file = env
                .remove("HOOK_STDIN_FILE")
                .unwrap_or_else(|| panic!("{hook} logged no HOOK_STDIN_FILE: {line:?}"));
            let stdin = std::fs::read(&file).unwrap_or_else(|e| panic!("read {file}: {e}"));
            LvCall {
                hook,
                argv,
                env,
                stdin,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The adapter called like libvirt calls it
// ---------------------------------------------------------------------------------------

/// A test tree with hookrun-libvirt installed the way libvirt finds it:
///
/// ```text
/// <root>/hooks/{daemon,qemu,lxc,network,libxl,bhyve}   symlinks to hookrun-libvirt
/// <root>/hooks/qemu.d/hookrun                          one more, in libvirt's qemu.d
/// <root>/entry/hooks.d/                                the hooks ([`TestEnv::hooks_dir`]),
///                                                      hooks_dir of every [libvirt-<driver>]
/// <root>/stdin/                                        what capturing hooks read
/// ```
pub struct LibvirtHost {
    pub env: TestEnv,
}

impl Default for LibvirtHost {
    fn default() -> Self {
        LibvirtHost::new()
    }
}

impl LibvirtHost {
    pub fn new() -> LibvirtHost {
        let env = TestEnv::new();
        let binary = bin("hookrun-libvirt");
        let hooks = env.path("hooks");
        mkdir(&hooks, 0o755);
        mkdir(&hooks.join("qemu.d"), 0o755);
        for d in DRIVERS {
            std::os::unix::fs::symlink(&binary, hooks.join(d)).expect("symlink a driver hook");
        }
        std::os::unix::fs::symlink(&binary, hooks.join("qemu.d/hookrun"))
            .expect("symlink qemu.d/hookrun");
        mkdir(&env.path("stdin"), 0o755);
        let mut config = std::fs::read_to_string(env.config_path()).expect("read the config");
        for d in DRIVERS {
            config.push_str(&format!(
                "\n[libvirt-{d}]\nhooks_dir = {}\n",
                toml_string(&env.hooks_dir().to_string_lossy())
            ));
        }
        write_file(&env.config_path(), config, 0o644);
        LibvirtHost { env }
    }

    /// `<root>/hooks/<driver>`: what libvirt runs for `driver`.
    pub fn script(&self, driver: &str) -> PathBuf {
        self.env.path("hooks").join(driver)
    }

    /// A call of `program` (a driver script) with `args` and libvirt's environment plus
    /// `HOOKRUN_CONFIG`.
    pub fn call_path(&self, program: &Path, args: &[&str]) -> Run {
        let (k, v) = self.env.config_var();
        Run::new(program).args(args).envs(libvirt_env()).env(k, v)
    }

    /// libvirt calling the `driver` hook with `object op subop extra`.
    pub fn call(&self, driver: &str, args: [&str; 4]) -> Run {
        self.call_path(&self.script(driver), &args)
    }

    /// Writes a sync or async hook `name` into the hooks directory that logs its calls
    /// (and stdin) to [`TestEnv::calls_log`]; see [`capture_hook_text`].
    pub fn capture_hook(&self, name: &str, header: &[&str], body: &str) -> PathBuf {
        let text = capture_hook_text(&self.env.calls_log(), &self.env.path("stdin"), header, body);
        self.env.write_hook(name, text, 0o755)
    }

    /// The calls the capturing hooks logged.
    pub fn calls(&self) -> Vec<LvCall> {
        calls_in(&self.env.calls_log())
    }
}

// ---------------------------------------------------------------------------------------
// A real libvirtd
// ---------------------------------------------------------------------------------------

/// The Debian 12 packages a real libvirtd with QEMU/TCG needs (reference B3), and
/// `iproute2` for the test bridge.
pub const PACKAGES: &[&str] = &[
    "libvirt-daemon",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "libvirt-daemon-system",
    "qemu-system-x86",
    "iproute2",
];

/// Programs the real-daemon suite runs.
pub const PROGRAMS: &[&str] = &[
    "/usr/sbin/libvirtd",
    "/usr/bin/virsh",
    "/usr/bin/qemu-system-x86_64",
    "/usr/bin/unshare",
    "/usr/bin/nsenter",
    "/usr/bin/timeout",
];

/// Whether the real-daemon suite can run here: root with CAP_SYS_ADMIN (the daemon runs
/// in private mount and network namespaces), [`PACKAGES`] installed and [`PROGRAMS`]
/// there. `cargo xtask test` installs the packages (xtask/src/packages.rs); a test body
/// never does. See [`crate::require`] for what happens when something is missing.
pub fn daemon_prerequisites() -> bool {
    crate::require::cap_sys_admin()
        && crate::require::packages(PACKAGES)
        && PROGRAMS.iter().all(|p| crate::require::command(p))
}

/// Only one real libvirtd at a time in this test process.
pub static DAEMON_LOCK: Mutex<()> = Mutex::new(());

/// The files the launcher mounts into the daemon's namespace, all inside the test tree:
///
/// ```text
/// <root>/ns/launch.sh          the launcher (below)
/// <root>/ns/hookrun.toml       bound over /etc/hookrun/hookrun.toml (libvirt passes
///                              hooks no HOOKRUN_CONFIG: the default path must be used)
/// <root>/ns/libvirt-hooks/     bound over /etc/libvirt/hooks
/// <root>/ns/qemu.conf          the host's qemu.conf + stdio_handler, user, group, cgroups
/// <root>/ns/etc-qemu/          bound over /etc/libvirt/qemu (domain and network configs)
/// <root>/ns/var-{lib,cache,log}/  bound over /var/{lib,cache,log}/libvirt
/// <root>/ns/libvirtd.log       the daemon's stdout and stderr
/// ```
pub struct NsLayout {
    pub root: PathBuf,
}

impl NsLayout {
    /// Creates the directories and writes `qemu.conf`, `hookrun.toml` (from
    /// `hookrun_toml`) and the launcher. The hook scripts in [`NsLayout::libvirt_hooks`]
    /// are the caller's.
    pub fn new(tree: &Path, hookrun_toml: &str) -> NsLayout {
        let root = tree.join("ns");
        let layout = NsLayout { root };
        for d in [
            "",
            "libvirt-hooks",
            "etc-qemu",
            "etc-qemu/networks",
            "var-lib",
            "var-cache",
            "var-log",
        ] {
            mkdir(&layout.root.join(d), 0o755);
        }
        chmod(&layout.root.join("var-cache"), 0o711);
        let host_conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
        write_file(
            &layout.root.join("qemu.conf"),
            format!(
                "{host_conf}\n# hookrun e2e (reference B4): no virtlogd, QEMU as root (no re-probing), no host cgroups\nstdio_handler = \"file\"\nuser = \"root\"\ngroup = \"root\"\ncgroup_controllers = [ ]\n"
            ),
            0o644,
        );
        write_file(&layout.root.join("hookrun.toml"), hookrun_toml, 0o644);
        write_file(&layout.launcher(), layout.launcher_text(), 0o755);
        layout
    }

    /// Bound over `/etc/libvirt/hooks` in the daemon's namespace.
    pub fn libvirt_hooks(&self) -> PathBuf {
        self.root.join("libvirt-hooks")
    }

    pub fn launcher(&self) -> PathBuf {
        self.root.join("launch.sh")
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("libvirtd.log")
    }

    /// Makes the launcher leave a holder process (`sleep infinity`, in the daemon's
    /// namespaces) that keeps them alive when the daemon exits, for
    /// [`Libvirtd::restart`]. The holder is one of [`Libvirtd::namespace_pids`] and is
    /// killed with the rest.
    pub fn hold_namespaces(&self) {
        write_file(&self.root.join("hold"), "", 0o644);
    }

    fn launcher_text(&self) -> String {
        let q = |rel: &str| shell_quote(&self.root.join(rel).to_string_lossy());
        format!(
            r#"#!/bin/bash
# Runs as `unshare --mount --net --propagation private launch.sh`: in a private mount
# namespace (nothing mounted here is seen outside) and a new network namespace (the test
# bridge and QEMU's tap device vanish with it). Mounts private state over every path
# libvirtd writes to, then becomes libvirtd, in the foreground.
set -euo pipefail
fail() {{ echo "HARNESS: $*" >&2; exit 99; }}
for d in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
    [[ -d $d ]] || fail "$d does not exist: is libvirt-daemon-system installed?"
done
# /run: the sockets, /run/libvirtd.pid, QEMU's pid files; also holds the /etc overlay's
# upper layer (a tmpfs works as one on any host filesystem).
mount -t tmpfs -o mode=0755 hookrun-e2e-run /run || fail "cannot mount a tmpfs on /run (needs root with CAP_SYS_ADMIN)"
mkdir /run/.etc-upper /run/.etc-work
# /etc copy-on-write, so /etc/hookrun can be created without touching the host's /etc.
mount -t overlay hookrun-e2e-etc -o lowerdir=/etc,upperdir=/run/.etc-upper,workdir=/run/.etc-work /etc || fail "cannot mount an overlay on /etc"
mkdir -p /etc/hookrun /etc/libvirt/hooks /etc/libvirt/qemu
mount -t tmpfs -o mode=0755 hookrun-e2e-etc-hookrun /etc/hookrun
: > /etc/hookrun/hookrun.toml
mount --bind {toml} /etc/hookrun/hookrun.toml
mount --bind {hooks} /etc/libvirt/hooks
mount --bind {qemu_conf} /etc/libvirt/qemu.conf
mount --bind {etc_qemu} /etc/libvirt/qemu
mount --bind {var_lib} /var/lib/libvirt
mount --bind {var_cache} /var/cache/libvirt
mount --bind {var_log} /var/log/libvirt
ip link set lo up
ip link add lvrbr0 type bridge || fail "cannot create the test bridge lvrbr0"
ip link set lvrbr0 up
if [[ -e {hold} ]]; then
    # Keeps these namespaces -- and /run, where libvirt remembers its running guests --
    # alive while the daemon is down, so that a restart reconnects to them.
    setsid sleep infinity </dev/null >/dev/null 2>&1 &
    echo $! > {holder_pid}
fi
cd /
exec /usr/sbin/libvirtd
"#,
            hold = q("hold"),
            holder_pid = q("holder.pid"),
            toml = q("hookrun.toml"),
            hooks = q("libvirt-hooks"),
            qemu_conf = q("qemu.conf"),
            etc_qemu = q("etc-qemu"),
            var_lib = q("var-lib"),
            var_cache = q("var-cache"),
            var_log = q("var-log"),
        )
    }
}

/// The identity of a process's mount and network namespaces.
fn namespaces_of(pid: i32) -> Option<(PathBuf, PathBuf)> {
    let mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    Some((mnt, net))
}

/// A real libvirtd in its own namespaces, started by [`Libvirtd::start`]. Dropped, it
/// stops the daemon (SIGTERM, then SIGKILL) and kills, by pid, every process left in
/// its namespaces (QEMU, hooks, async supervisors).
pub struct Libvirtd {
    child: Option<Child>,
    pid: Pid,
    namespaces: Option<(PathBuf, PathBuf)>,
    log: PathBuf,
}

impl Libvirtd {
    /// Starts the launcher with exactly `env` and waits until `virsh` gets answers
    /// (the QEMU driver initialised). Panics with the daemon's log if it does not.
    pub fn start(layout: &NsLayout, env: &[(&str, &str)]) -> Libvirtd {
        let log = std::fs::File::create(layout.daemon_log()).expect("create the daemon log");
        let mut cmd = Command::new("/usr/bin/unshare");
        cmd.args(["--mount", "--net", "--propagation", "private"])
            .arg(layout.launcher())
            .env_clear()
            .envs(env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .process_group(0);
        let spawned = {
            let _guard = crate::spawn_guard();
            cmd.spawn()
        };
        let child = spawned.unwrap_or_else(|e| panic!("cannot start unshare: {e}"));
        let mut daemon = Libvirtd {
            pid: Pid::from_raw(child.id() as i32),
            child: Some(child),
            namespaces: None,
            log: layout.daemon_log(),
        };
        daemon.wait_ready(Duration::from_secs(90));
        daemon
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Starts the daemon again, with exactly `env`, in the namespaces the first one ran
    /// in (kept alive by [`NsLayout::hold_namespaces`]), after [`Libvirtd::shutdown`]:
    /// a daemon restart with guests still running, as a package upgrade does one.
    pub fn restart(&mut self, layout: &NsLayout, env: &[(&str, &str)]) {
        assert!(
            self.child.is_none(),
            "restart needs the daemon shut down first"
        );
        let holder = std::fs::read_to_string(layout.root.join("holder.pid")).unwrap_or_else(|e| {
            panic!("no holder pid (call NsLayout::hold_namespaces before the first start): {e}")
        });
        let holder = holder.trim().to_owned();
        assert!(
            process_alive(Pid::from_raw(holder.parse().expect("a pid in holder.pid"))),
            "the namespace holder {holder} is gone"
        );
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(layout.daemon_log())
            .expect("open the daemon log");
        let mut cmd = Command::new("/usr/bin/nsenter");
        // -m -n without a pid namespace: nsenter execs libvirtd itself, same pid.
        cmd.args(["-t", &holder, "-m", "-n", "--", "/usr/sbin/libvirtd"])
            .env_clear()
            .envs(env.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .process_group(0);
        let spawned = {
            let _guard = crate::spawn_guard();
            cmd.spawn()
        };
        let child = spawned.unwrap_or_else(|e| panic!("cannot start nsenter: {e}"));
        self.pid = Pid::from_raw(child.id() as i32);
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(90));
    }

    /// The daemon's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_ready(&mut self, deadline: Duration) {
        let start = Instant::now();
        let ours = namespaces_of(std::process::id() as i32);
        // Until the launcher has become libvirtd, its mounts may not be there yet, and
        // `nsenter` could reach the host's namespaces instead.
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "libvirtd (launcher pid {}) exited with {status} before it was ready; its log:\n{}",
                    self.pid,
                    self.log_text()
                );
            }
            let comm =
                std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
            let ns = namespaces_of(self.pid.as_raw());
            if comm.trim() == "libvirtd" && ns.is_some() && ns != ours {
                self.namespaces = ns;
                break;
            }
            assert!(
                start.elapsed() < deadline,
                "the launcher did not exec libvirtd within {deadline:?}; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            let out = self.virsh(&["version"]);
            if out.success() {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "libvirtd exited with {status} before it answered; its log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < deadline,
                "libvirtd did not answer `virsh version` within {deadline:?}: {}\n{}\nits log:\n{}",
                out.stdout,
                out.stderr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `virsh -c qemu:///system <args>` inside the daemon's namespaces.
    pub fn virsh_run(&self, args: &[&str]) -> Run {
        Run::new("/usr/bin/nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--"])
            .args(["/usr/bin/virsh", "-q", "-c", "qemu:///system"])
            .args(args)
            .env("PATH", DAEMON_PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .deadline(Duration::from_secs(120))
    }

    pub fn virsh(&self, args: &[&str]) -> Outcome {
        self.virsh_run(args).run()
    }

    /// Runs `virsh`, panicking (with the daemon's log) unless it succeeds.
    pub fn virsh_ok(&self, args: &[&str]) -> Outcome {
        let out = self.virsh(args);
        if !out.success() {
            panic!(
                "virsh {args:?} failed: {}\n--- stdout ---\n{}--- stderr ---\n{}--- libvirtd log ---\n{}",
                out.status,
                out.stdout,
                out.stderr,
                self.log_text()
            );
        }
        out
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid, sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {}: {e}", self.pid));
    }

    /// Every live process in the daemon's namespaces (the daemon, hooks, async
    /// supervisors, and QEMU, which libvirt gives a mount namespace of its own but
    /// which stays in the daemon's network namespace), by pid.
    pub fn namespace_pids(&self) -> Vec<Pid> {
        let Some((mnt, net)) = &self.namespaces else {
            return Vec::new();
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| namespaces_of(*pid).is_some_and(|(m, n)| &m == mnt || &n == net))
            .map(Pid::from_raw)
            .filter(|pid| process_alive(*pid))
            .collect()
    }

    /// SIGTERM to the daemon and waits for it to exit (at most `deadline`), as a clean
    /// shutdown; returns its exit status, or `None` if it had to be killed.
    pub fn shutdown(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL, by pid) whatever is still in the daemon's namespaces and waits
    /// for it; returns what survived.
    pub fn kill_leftovers(&self) -> Vec<Pid> {
        let mut survivors = Vec::new();
        for _ in 0..3 {
            let pids = self.namespace_pids();
            if pids.is_empty() {
                return Vec::new();
            }
            kill_all(&pids);
            survivors = wait_dead(&pids, Duration::from_secs(5));
        }
        survivors
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // QEMU and the rest first, while the daemon is there to reap its children
            // (QEMU is one) — orphans may become zombies nobody reaps.
            let others: Vec<Pid> = self
                .namespace_pids()
                .into_iter()
                .filter(|p| *p != self.pid)
                .collect();
            kill_all(&others);
            wait_dead(&others, Duration::from_secs(5));
            self.shutdown(Duration::from_secs(15));
        }
        self.kill_leftovers();
        if process_alive(self.pid) {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
    }
}
