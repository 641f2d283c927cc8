//! hookrun-tests: the harness for hookrun's cross-crate end-to-end suites.
//!
//! In the style of casey/just's test harness, a test reads as a sentence:
//!
//! ```text
//! let env = TestEnv::new();
//! env.hook("10-log").sync().phases("job-start").body("echo hi").write();
//! env.run_entry().arg("job-start").run().assert_code(0).assert_stdout_eq("[10-log] hi\n");
//! ```
//!
//! - [`bin`] builds the workspace binaries once per test process (with the `cargo` that
//!   builds the tests, so plain `cargo test --workspace` and `cargo test -p
//!   hookrun-tests` both work from a clean checkout) and returns their paths;
//! - [`TestEnv`] is one private temporary tree per test: the seed's layout (the entry
//!   point in `<tmp>/entry/` with `hooks.d` beside it), a config file that sends
//!   hookrun's records and locks into the tree, and helpers to write hooks and to read
//!   back what they logged ([`HookCall`]) and what hookrun recorded ([`Record`]);
//! - [`Run`] runs a program with a fully controlled environment (`env_clear` plus
//!   exactly the variables given), reads stdout and stderr as pipes until EOF on both
//!   and only then waits for the exit status, like the platforms do; [`Outcome`] holds
//!   all three together with assertion helpers that print everything on failure;
//! - [`vzdump`] simulates whole Proxmox vzdump jobs on top of that, and [`pve`] a node
//!   starting and stopping guests with a hookscript.
//!
//! Tests run as root (hookrun refuses hooks and hook directories that are writable by
//! group or others or owned by anyone but root or the invoking user), and in parallel
//! threads: nothing here uses global state except the one-time build and a lock that
//! keeps file writes and process starts apart (see `SPAWN_LOCK`).

pub mod libvirt;
pub mod procfs;
pub mod pve;
pub mod require;
pub mod vzdump;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The `PATH` hookrun gives hooks when the platform gave none (vzdump clears it).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long any one program may run before the harness kills it and fails the test, so
/// that a hanging dispatcher fails the suite instead of hanging it.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Variables the shell that runs a test hook adds on its own: dash exports `PWD`, bash
/// also `SHLVL` and `_`. Neither hookrun nor the platform sets them, so they are dropped
/// from what hooks log before environments are compared.
pub const SHELL_ADDED_VARS: &[&str] = &["PWD", "SHLVL", "_", "OLDPWD"];

// ---------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_owned()
}

/// The binary packages the suites run, built together by one `cargo build`.
const BIN_PACKAGES: &[&str] = &[
    "hookrun-vzdump",
    "hookrun",
    "hookrun-pve-guest",
    "hookrun-worker",
    "hookrun-libvirt",
];

/// Path of the workspace binary `name` (one of [`BIN_PACKAGES`]' binaries), debug profile.
///
/// The first call in a test process runs `$CARGO build --bins -p <packages>` in the
/// workspace root (the `cargo` that built this crate, so the toolchain matches); later
/// calls return at once. `cargo test` builds the tests crate but not other packages'
/// binaries, hence this step; when they are fresh it costs a fraction of a second.
/// The target directory is `CARGO_TARGET_DIR` when set, else `<root>/target`, unless
/// cargo reports the artifact somewhere else (e.g. `build.target-dir` in a config).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(build_bins);
    match built.get(name) {
        Some(p) => p.clone(),
        None => {
            panic!("binary {name} is not built by the harness; add its package to BIN_PACKAGES")
        }
    }
}

/// The `hookrun-vzdump` binary.
pub fn hookrun_vzdump() -> PathBuf {
    bin("hookrun-vzdump")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

fn build_bins() -> BTreeMap<String, PathBuf> {
    let cargo = env!("CARGO");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--bins")
        .arg("--message-format=json-render-diagnostics");
    for p in BIN_PACKAGES {
        cmd.arg("-p").arg(p);
    }
    cmd.current_dir(workspace_root());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the binaries under test: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // json-render-diagnostics: the compiler's messages are rendered on stderr.
        panic!(
            "building the binaries under test failed ({cmd:?} in {}): {}\n--- cargo's stderr ---\n{}",
            workspace_root().display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
        );
    }
    let mut bins = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    for p in BIN_PACKAGES {
        bins.entry((*p).to_owned())
            .or_insert_with(|| target_dir().join("debug").join(p));
    }
    for (name, path) in &bins {
        assert!(
            path.is_file(),
            "cargo built {name}, but {} does not exist",
            path.display()
        );
    }
    bins
}

// ---------------------------------------------------------------------------------------
// File helpers
// ---------------------------------------------------------------------------------------

/// Sets a path's permission bits exactly (umask does not apply).
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Creates a directory with mode `mode` exactly.
pub fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    chmod(path, mode);
}

/// Serialises writing files against starting processes.
///
/// Tests run in threads of one process. A process started by one thread while another
/// thread has a file open for writing inherits that descriptor until its `exec` closes
/// it (close-on-exec); if the file is a hook that a dispatcher is about to run, `execve`
/// fails with `ETXTBSY` ("Text file busy"). So files are written under the write lock
/// and processes are started under the read lock: no child can ever hold a hook open
/// for writing. (`spawn` returns only once the child has exec'd.) A test harness
/// matter only: a dispatcher writes no executables.
static SPAWN_LOCK: RwLock<()> = RwLock::new(());

fn spawn_guard() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWN_LOCK
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `contents` to `path` and then sets `mode` (create, then chmod: the umask
/// cannot interfere).
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    {
        let _guard = SPAWN_LOCK
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    chmod(path, mode);
}

/// Single-quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Polls until `path` exists and holds at least `lines` complete lines; returns them.
/// Panics after `deadline`.
pub fn wait_for_lines(path: &Path, lines: usize, deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let complete: Vec<String> = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| l.trim_end().to_owned())
                .collect();
            if complete.len() >= lines {
                return complete;
            }
        }
        assert!(
            start.elapsed() < deadline,
            "{} did not get {lines} line(s) within {deadline:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads whitespace-separated PIDs from a file.
pub fn read_pids(path: &Path) -> Vec<Pid> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .split_whitespace()
        .map(|w| {
            Pid::from_raw(
                w.parse()
                    .unwrap_or_else(|_| panic!("not a pid in {}: {w:?}", path.display())),
            )
        })
        .collect()
}

/// Whether `pid` is a live process. A zombie (state `Z` in `/proc/<pid>/stat`) is dead:
/// processes a hook left behind end up re-parented to an init that may not reap them.
pub fn process_alive(pid: Pid) -> bool {
    if nix::sys::signal::kill(pid, None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].split_whitespace().next(), Some("Z" | "X")),
            None => true,
        },
        Err(_) => false,
    }
}

/// Waits up to `deadline` for every pid to be gone; returns those still alive.
pub fn wait_dead(pids: &[Pid], deadline: Duration) -> Vec<Pid> {
    let start = Instant::now();
    loop {
        let alive: Vec<Pid> = pids.iter().copied().filter(|p| process_alive(*p)).collect();
        if alive.is_empty() || start.elapsed() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills leftovers of a test (best effort), so a failing test does not leave sleepers.
pub fn kill_all(pids: &[Pid]) {
    for pid in pids {
        if process_alive(*pid) {
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Test environment
// ---------------------------------------------------------------------------------------

/// One test's private tree, laid out like the seed:
///
/// ```text
/// <root>/                    0755, root-owned (tests run as root)
///   hookrun.toml             HOOKRUN_CONFIG: log_dir and lock_dir below point here
///   entry/hookrun-vzdump     symlink to the built binary: the entry point vzdump calls
///   entry/hooks.d/           the hooks (found beside argv[0], which contains a '/')
///   log/runs.jsonl           run records, written by hookrun
///   lock/                    hookrun's locks
///   calls.log                what the logging hooks saw ([`HookCall`])
/// ```
///
/// `HOOKRUN_CONFIG` is the one variable a test adds to the platform's environment: it
/// keeps records and locks out of `/var/log` and `/run`, so tests cannot see each other.
pub struct TestEnv {
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::with_config("")
    }

    /// A tree whose config file has `extra` appended (TOML, e.g. `kill_grace = 1`).
    pub fn with_config(extra: &str) -> TestEnv {
        let tmp = tempfile::Builder::new()
            .prefix("hookrun-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        // Canonical, so paths hooks see (`$0`) match paths the test computes.
        let root = tmp
            .path()
            .canonicalize()
            .expect("canonicalize the temporary directory");
        chmod(&root, 0o755);
        let env = TestEnv { root, _tmp: tmp };
        mkdir(&env.entry_dir(), 0o755);
        mkdir(&env.hooks_dir(), 0o755);
        let config = format!(
            "log_dir = {}\nlock_dir = {}\n{extra}\n",
            toml_string(&env.log_dir().to_string_lossy()),
            toml_string(&env.root.join("lock").to_string_lossy()),
        );
        write_file(&env.config_path(), config, 0o644);
        std::os::unix::fs::symlink(hookrun_vzdump(), env.entry_point())
            .expect("symlink the entry point into the test tree");
        env
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<rel>`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn entry_dir(&self) -> PathBuf {
        self.root.join("entry")
    }

    /// The path vzdump is configured to call (`script:`): `<root>/entry/hookrun-vzdump`.
    pub fn entry_point(&self) -> PathBuf {
        self.entry_dir().join("hookrun-vzdump")
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.entry_dir().join("hooks.d")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("hookrun.toml")
    }

    /// `HOOKRUN_CONFIG` and its value, to add to a platform's environment.
    pub fn config_var(&self) -> (String, String) {
        (
            "HOOKRUN_CONFIG".to_owned(),
            self.config_path().to_string_lossy().into_owned(),
        )
    }

    /// Where logging hooks append their [`HookCall`] lines.
    pub fn calls_log(&self) -> PathBuf {
        self.root.join("calls.log")
    }

    /// Starts a hook file `hooks.d/<name>`.
    pub fn hook(&self, name: &str) -> HookBuilder<'_> {
        HookBuilder {
            env: self,
            name: name.to_owned(),
            shebang: "#!/bin/sh".to_owned(),
            header: Vec::new(),
            body: String::new(),
            mode: 0o755,
            log_calls: false,
        }
    }

    /// Writes `hooks.d/<name>` verbatim with `mode`.
    pub fn write_hook(&self, name: &str, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.hooks_dir().join(name);
        write_file(&path, contents, mode);
        path
    }

    /// A [`Run`] of the entry point with exactly `HOOKRUN_CONFIG` in its environment;
    /// add the platform's variables and arguments.
    pub fn run_entry(&self) -> Run {
        let (k, v) = self.config_var();
        Run::new(self.entry_point()).env(k, v)
    }

    /// Every call the logging hooks recorded, in order, with the shell's own variables
    /// ([`SHELL_ADDED_VARS`]) removed.
    pub fn calls(&self) -> Vec<HookCall> {
        match std::fs::read_to_string(self.calls_log()) {
            Ok(text) => text.lines().map(HookCall::parse).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", self.calls_log().display()),
        }
    }

    /// The run records in `<log_dir>/runs.jsonl`; none when the file does not exist.
    pub fn records(&self) -> Vec<Record> {
        let path = self.log_dir().join("runs.jsonl");
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .map(|l| {
                    Record(
                        serde_json::from_str(l)
                            .unwrap_or_else(|e| panic!("bad record line {l:?}: {e}")),
                    )
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// A hook file under construction.
#[must_use]
pub struct HookBuilder<'a> {
    env: &'a TestEnv,
    name: String,
    shebang: String,
    header: Vec<String>,
    body: String,
    mode: u32,
    log_calls: bool,
}

impl HookBuilder<'_> {
    /// Replaces the `#!/bin/sh` line (`""` for none).
    pub fn shebang(mut self, line: &str) -> Self {
        self.shebang = line.to_owned();
        self
    }

    /// Adds a header line; `"mode: sync"` becomes `# mode: sync`.
    pub fn header(mut self, line: &str) -> Self {
        self.header.push(format!("# {line}"));
        self
    }

    /// `# mode: sync`.
    pub fn sync(self) -> Self {
        self.header("mode: sync")
    }

    /// `# phases: <list>`.
    pub fn phases(self, list: &str) -> Self {
        self.header(&format!("phases: {list}"))
    }

    /// Appends shell code to the body (after the header).
    pub fn body(mut self, code: &str) -> Self {
        self.body.push_str(code);
        if !code.ends_with('\n') {
            self.body.push('\n');
        }
        self
    }

    /// Makes the hook log each call to [`TestEnv::calls_log`] before its body runs.
    pub fn log_calls(mut self) -> Self {
        self.log_calls = true;
        self
    }

    /// File mode (default 0755), set after the file is written.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// The file's text as it will be written.
    pub fn text(&self) -> String {
        let mut text = String::new();
        if !self.shebang.is_empty() {
            text.push_str(&self.shebang);
            text.push('\n');
        }
        for line in &self.header {
            text.push_str(line);
            text.push('\n');
        }
        if self.log_calls {
            text.push_str(&log_call_snippet(&self.env.calls_log()));
        }
        text.push_str(&self.body);
        text
    }

    /// Writes the hook; returns its path.
    pub fn write(self) -> PathBuf {
        let text = self.text();
        self.env.write_hook(&self.name, text, self.mode)
    }
}

/// Shell code appending one [`HookCall`] line to `log`: the hook's file name and its
/// arguments separated by US (0x1f), RS (0x1e), then every `NAME=value` of `env`
/// followed by US. Only `env` is run from `PATH`; the rest is shell built-ins. The line
/// is assembled first and appended with one `printf` (one `write` on an `O_APPEND`
/// descriptor), so hooks running at the same time (async) do not interleave. The
/// helper variables are not exported, so they do not show up in `env`.
pub fn log_call_snippet(log: &Path) -> String {
    format!(
        "__us=$(printf '\\037'); __line=${{0##*/}}; for __a in \"$@\"; do __line=$__line$__us$__a; done\n\
         __line=$__line$(printf '\\036')$(env | while IFS= read -r __l; do printf '%s\\037' \"$__l\"; done)\n\
         printf '%s\\n' \"$__line\" >> {}\n",
        shell_quote(&log.to_string_lossy())
    )
}

/// One call of a logging hook: its file name, its arguments and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub hook: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl HookCall {
    /// Parses a line written by [`log_call_snippet`], dropping [`SHELL_ADDED_VARS`].
    pub fn parse(line: &str) -> HookCall {
        let (head, env) = line
            .split_once('\x1e')
            .unwrap_or_else(|| panic!("malformed call log line {line:?}"));
        let mut head = head.split('\x1f');
        let hook = head.next().unwrap_or_default().to_owned();
        let argv = head.map(str::to_owned).collect();
        let env = env
            .split('\x1f')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .filter(|(k, _)| !SHELL_ADDED_VARS.contains(&k.as_str()))
            .collect();
        HookCall { hook, argv, env }
    }

    /// Removes and returns `HOOKRUN_RUN_ID`, whose value the test cannot predict.
    pub fn take_run_id(&mut self) -> Option<String> {
        self.env.remove("HOOKRUN_RUN_ID")
    }
}

/// One line of `runs.jsonl`, kept as JSON so tests check the file format itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Record(pub serde_json::Value);

/// The fields of a run record (DESIGN §5), in the order the design lists them.
pub const RECORD_FIELDS: &[&str] = &[
    "time",
    "run_id",
    "platform",
    "phase",
    "object",
    "hook",
    "mode",
    "outcome",
    "exit_code",
    "signal",
    "duration_ms",
    "job",
];

impl Record {
    /// A string field; `None` when absent or null.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }

    /// An integer field; `None` when absent or null.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(|v| v.as_i64())
    }

    pub fn hook(&self) -> &str {
        self.str("hook").unwrap_or_default()
    }

    pub fn outcome(&self) -> &str {
        self.str("outcome").unwrap_or_default()
    }

    /// Panics unless the record has exactly [`RECORD_FIELDS`] with plausible types.
    pub fn assert_well_formed(&self) -> &Self {
        let obj = self
            .0
            .as_object()
            .unwrap_or_else(|| panic!("record is not an object: {}", self.0));
        // `message` is the one optional field: why, for outcomes other than ok.
        if let Some(m) = obj.get("message") {
            assert!(
                m.as_str().is_some_and(|m| !m.is_empty()) && self.outcome() != "ok",
                "record field message must be a non-empty string, and only on outcomes other than ok: {}",
                self.0
            );
        }
        let mut keys: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "message")
            .collect();
        keys.sort_unstable();
        let mut want = RECORD_FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(
            keys, want,
            "record fields differ from DESIGN §5: {}",
            self.0
        );
        for key in [
            "time", "run_id", "platform", "phase", "hook", "mode", "outcome", "job",
        ] {
            assert!(
                self.str(key).is_some_and(|s| !s.is_empty()),
                "record field {key} must be a non-empty string: {}",
                self.0
            );
        }
        assert!(
            obj["object"].is_null() || obj["object"].is_string(),
            "object: {}",
            self.0
        );
        assert!(
            obj["exit_code"].is_null() || obj["exit_code"].is_i64(),
            "exit_code: {}",
            self.0
        );
        assert!(
            obj["signal"].is_null() || obj["signal"].is_i64(),
            "signal: {}",
            self.0
        );
        assert!(obj["duration_ms"].is_u64(), "duration_ms: {}", self.0);
        let time = self.str("time").unwrap_or_default();
        assert!(is_rfc3339(time), "time is not RFC 3339: {time:?}");
        assert!(
            matches!(self.str("mode"), Some("sync" | "async")),
            "mode: {}",
            self.0
        );
        assert!(
            matches!(
                self.outcome(),
                "ok" | "failed"
                    | "timeout"
                    | "signal"
                    | "refused"
                    | "spawn-error"
                    | "skipped"
                    | "lock-timeout"
                    | "lost"
            ),
            "outcome: {}",
            self.0
        );
        self
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || rest == "z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':')
}

// ---------------------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------------------

/// What the program's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// A pipe whose write end is closed at once (vzdump: `open3` and `close $writer`).
    ClosedPipe,
    /// A pipe kept open until the program has exited: reading it would block.
    OpenPipe,
}

/// A program to run with exactly the given arguments and environment.
#[must_use]
#[derive(Debug, Clone)]
pub struct Run {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: StdinMode,
    cwd: Option<PathBuf>,
    deadline: Duration,
}

impl Run {
    /// `program` with no arguments, an empty environment, stdin a closed pipe.
    pub fn new(program: impl Into<PathBuf>) -> Run {
        Run {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: StdinMode::ClosedPipe,
            cwd: None,
            deadline: RUN_DEADLINE,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds (or replaces) one variable of the otherwise empty environment.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        let k = k.as_ref().to_owned();
        self.env.retain(|(old, _)| *old != k);
        self.env.push((k, v.as_ref().to_owned()));
        self
    }

    pub fn envs<I: IntoIterator<Item = (K, V)>, K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: I,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn stdin(mut self, mode: StdinMode) -> Self {
        self.stdin = mode;
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// How long the program may run before it is killed and the test fails.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// The command line and environment, for messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            let _ = write!(
                s,
                "{}={} ",
                k.to_string_lossy(),
                shell_quote(&v.to_string_lossy())
            );
        }
        s.push_str(&shell_quote(&self.program.to_string_lossy()));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }

    /// Starts the program; read its outcome with [`Running::wait`].
    pub fn spawn(self) -> Running {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let spawned = {
            let _guard = spawn_guard();
            cmd.spawn()
        };
        let mut child = spawned.unwrap_or_else(|e| panic!("cannot start {}: {e}", self.describe()));
        let stdin = child.stdin.take();
        let stdin = match self.stdin {
            StdinMode::ClosedPipe => {
                drop(stdin);
                None
            }
            StdinMode::OpenPipe => stdin,
        };
        let (tx, rx) = mpsc::channel();
        let readers = [
            (
                0usize,
                Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
            ),
            (
                1usize,
                Box::new(child.stderr.take().expect("piped stderr")) as Box<dyn Read + Send>,
            ),
        ];
        for (which, mut pipe) in readers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((which, buf));
            });
        }
        Running {
            child,
            waited: false,
            stdin,
            output: rx,
            started: Instant::now(),
            run: self,
        }
    }

    /// Runs the program to the end.
    pub fn run(self) -> Outcome {
        self.spawn().wait()
    }
}

/// A started program. Dropped without [`Running::wait`] (a test failed half-way), it
/// is killed, so no dispatcher outlives its test.
pub struct Running {
    child: Child,
    waited: bool,
    stdin: Option<ChildStdin>,
    output: mpsc::Receiver<(usize, Vec<u8>)>,
    started: Instant,
    run: Run,
}

impl Running {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` to the program (not to its group).
    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {}: {e}", self.pid()));
    }

    /// Reads stdout and stderr until EOF on both, then waits for the exit status — the
    /// order vzdump's `run_command` uses. Kills the program and panics after the
    /// deadline.
    pub fn wait(mut self) -> Outcome {
        let limit = self.started + self.run.deadline;
        let mut streams: [Option<Vec<u8>>; 2] = [None, None];
        while streams.iter().any(Option::is_none) {
            let left = limit.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok((which, data)) => streams[which] = Some(data),
                Err(_) => {
                    // Drop kills and reaps it.
                    panic!(
                        "{} did not close stdout and stderr within {:?}; killed",
                        self.run.describe(),
                        self.run.deadline
                    );
                }
            }
        }
        let eof = self.started.elapsed();
        let status = self.child.wait().expect("waitpid");
        self.waited = true;
        drop(self.stdin.take());
        let [stdout, stderr] =
            streams.map(|s| String::from_utf8_lossy(&s.unwrap_or_default()).into_owned());
        Outcome {
            command: self.run.describe(),
            status,
            stdout,
            stderr,
            elapsed: eof,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a program ended and what it said.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line with its environment, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From start until EOF on both pipes.
    pub elapsed: Duration,
}

impl Outcome {
    /// The exit code; `None` when a signal killed the program.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    fn context(&self) -> String {
        format!(
            "command: {}\nstatus: {}\nelapsed: {:?}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }

    /// Panics with the whole outcome unless `ok` holds.
    pub fn check(&self, ok: bool, what: &str) -> &Self {
        assert!(ok, "{what}\n{}", self.context());
        self
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        self.check(
            self.code() == Some(code),
            &format!("expected exit code {code}"),
        )
    }

    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    pub fn assert_stdout_eq(&self, want: &str) -> &Self {
        self.check(
            self.stdout == want,
            &format!("expected stdout {want:?}, got {:?}", self.stdout),
        )
    }

    pub fn assert_stdout_contains(&self, want: &str) -> &Self {
        self.check(
            self.stdout.contains(want),
            &format!("expected stdout to contain {want:?}"),
        )
    }

    pub fn assert_stderr_contains(&self, want: &str) -> &Self {
        self.check(
            self.stderr.contains(want),
            &format!("expected stderr to contain {want:?}"),
        )
    }

    pub fn assert_stderr_lacks(&self, unwanted: &str) -> &Self {
        self.check(
            !self.stderr.contains(unwanted),
            &format!("expected stderr not to contain {unwanted:?}"),
        )
    }

    /// Panics unless some stderr line contains every one of `parts`.
    pub fn assert_stderr_line(&self, parts: &[&str]) -> &Self {
        let found = self
            .stderr
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)));
        self.check(
            found,
            &format!("expected a stderr line containing all of {parts:?}"),
        )
    }

    /// Panics unless EOF on both pipes came within `limit`.
    pub fn assert_faster_than(&self, limit: Duration) -> &Self {
        self.check(
            self.elapsed < limit,
            &format!("expected to finish within {limit:?}"),
        )
    }
}

pub use procfs::children_of;
