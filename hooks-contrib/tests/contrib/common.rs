//! Shared helpers: the binaries under test, running with a deadline, file times, tmpfs
//! mounts, the workspace's `hookrun` binary.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const RETAIN: &str = env!("CARGO_BIN_EXE_hookrun-retain");
pub const CER: &str = env!("CARGO_BIN_EXE_hookrun-copy-encrypt-retain");

/// The `PATH` hooks get from hookrun when the platform cleared the environment.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest any one program may run before the test fails (and kills it).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion with stdin from /dev/null, killing it after [`DEADLINE`].
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let start = Instant::now();
    // Read the pipes in threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Seconds since the epoch → SystemTime.
pub fn system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// Creates `path` with `content` and sets its mtime and atime to `ts`.
pub fn file_at(path: &Path, content: &[u8], ts: i64) {
    std::fs::write(path, content).unwrap();
    set_times(path, ts, ts);
}

pub fn set_times(path: &Path, mtime: i64, atime: i64) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_times(
        FileTimes::new()
            .set_modified(system_time(mtime))
            .set_accessed(system_time(atime)),
    )
    .unwrap();
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Fails the test (never skips it) when a program the tests need is missing.
pub fn require_tool(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
        || Path::new(program).is_file();
    assert!(
        found,
        "{program} is required by these tests and is not installed: apt-get install -y {package}"
    );
}

/// A tmpfs mounted for the life of the guard (the tests run as root).
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path()));
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (these tests run as root with CAP_SYS_ADMIN): {}",
            text(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// The workspace root (this crate is `<root>/hooks-contrib`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn hooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks.d")
}

/// The workspace's `hookrun` binary, built on first use with the `cargo` that built
/// these tests (fast when it is fresh).
pub fn hookrun() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = env!("CARGO");
            let out = Command::new(cargo)
                .args([
                    "build",
                    "-p",
                    "hookrun",
                    "--bin",
                    "hookrun",
                    "--message-format=json-render-diagnostics",
                ])
                .current_dir(workspace_root())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
            assert!(
                out.status.success(),
                "building hookrun failed: {}",
                text(&out.stderr)
            );
            let mut exes: BTreeMap<String, PathBuf> = BTreeMap::new();
            for line in text(&out.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if let (Some(name), Some(exe)) = (
                    v.pointer("/target/name").and_then(|n| n.as_str()),
                    v.get("executable").and_then(|e| e.as_str()),
                ) {
                    exes.insert(name.to_owned(), PathBuf::from(exe));
                }
            }
            exes.remove("hookrun")
                .expect("cargo reported no hookrun executable")
        })
        .clone()
}

/// A command with a cleared environment plus `PATH`, like vzdump gives its hook.
pub fn clean(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear().env("PATH", PATH);
    c
}
