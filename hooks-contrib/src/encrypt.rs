//! Writing a file into place without ever leaving a partial one: `<name>.part`, fsync,
//! rename, fsync of the directory. The `.part` is removed on every failure path we live
//! through (gpg's error, gpg killed, disk full, our own SIGTERM/SIGINT/SIGHUP); after a
//! SIGKILL the next run removes it before it starts.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::Pid;

/// Why writing a file failed.
#[derive(Debug)]
pub enum Failure {
    /// An error, with the whole message (gpg's own text included).
    Error(String),
    /// We were told to stop by this signal.
    Interrupted(i32),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(m) => f.write_str(m),
            Failure::Interrupted(s) => write!(f, "interrupted by signal {s}"),
        }
    }
}

static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(signo: libc::c_int) {
    let _ = STOP.compare_exchange(0, signo, Ordering::Relaxed, Ordering::Relaxed);
}

/// Catches SIGTERM, SIGINT and SIGHUP so that a run being stopped (a timeout, an
/// operator) can remove its `.part` and kill gpg before it exits `128 + N`.
pub fn catch_stop_signals() {
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &action) };
    }
}

/// The stop signal received so far, if any.
pub fn stop_signal() -> Option<i32> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

fn check_stop() -> Result<(), Failure> {
    match stop_signal() {
        Some(s) => Err(Failure::Interrupted(s)),
        None => Ok(()),
    }
}

/// Lowers CPU and I/O priority like the seed's `ionice -c2 -n7 nice -n 19`, for this
/// process and everything it starts. Best effort: returns what could not be done.
pub fn lower_priority() -> Vec<String> {
    let mut problems = Vec::new();
    // SAFETY: plain system calls on the calling process, no pointers.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, 19) };
    if r != 0 {
        problems.push(format!("nice 19: {}", io::Error::last_os_error()));
    }
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    let prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7;
    // SAFETY: ioprio_set(2) takes three integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            prio,
        )
    };
    if r != 0 {
        problems.push(format!(
            "ioprio best-effort 7: {}",
            io::Error::last_os_error()
        ));
    }
    problems
}

/// `<path>.part`
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Removes the `.part` when dropped, unless it was renamed into place.
struct PartGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes a `.part` a killed earlier run may have left.
fn remove_stale(part: &Path) -> Result<(), Failure> {
    match std::fs::remove_file(part) {
        Ok(()) => {
            tracing::warn!("removed {} left by an earlier run", part.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::Error(format!(
            "cannot remove the stale {}: {e}",
            part.display()
        ))),
    }
}

/// fsyncs a directory, so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes a finished `.part` durable and moves it into place: mode 0600, the source's
/// mtime (so retention sees the backup's time however late the copy ran), fsync,
/// rename, fsync of the directory.
fn finish(part: &Path, dest: &Path, mtime: Option<SystemTime>) -> Result<(), Failure> {
    let err = |what: &str, e: io::Error| Failure::Error(format!("{what} {}: {e}", part.display()));
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(part)
        .map_err(|e| err("cannot open", e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot chmod", e))?;
    if let Some(t) = mtime {
        f.set_modified(t)
            .map_err(|e| err("cannot set the time of", e))?;
    }
    f.sync_all().map_err(|e| err("cannot fsync", e))?;
    drop(f);
    std::fs::rename(part, dest).map_err(|e| {
        Failure::Error(format!(
            "cannot rename {} to {}: {e}",
            part.display(),
            dest.display()
        ))
    })?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir).map_err(|e| {
            Failure::Error(format!("cannot fsync directory {}: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// Copies `src` to `dest` through `dest.part` (mode 0600), checking for a stop signal
/// between chunks.
pub fn copy_file(src: &Path, dest: &Path) -> Result<(), Failure> {
    let part = part_path(dest);
    remove_stale(&part)?;
    let mut input = File::open(src)
        .map_err(|e| Failure::Error(format!("cannot open {}: {e}", src.display())))?;
    let mtime = input.metadata().and_then(|m| m.modified()).ok();
    let mut guard = PartGuard {
        path: part.clone(),
        armed: false,
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part)
        .map_err(|e| Failure::Error(format!("cannot create {}: {e}", part.display())))?;
    guard.armed = true;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        check_stop()?;
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Error(format!(
                    "cannot read {}: {e}",
                    src.display()
                )));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Failure::Error(format!("cannot write {}: {e}", part.display())))?;
    }
    drop(out);
    finish(&part, dest, mtime)?;
    guard.armed = false;
    Ok(())
}

/// How to run gpg.
#[derive(Debug, Clone)]
pub struct Gpg {
    /// The program (`gpg`, found on PATH, or a path).
    pub program: PathBuf,
    /// `--homedir`, when given.
    pub homedir: Option<PathBuf>,
    pub recipients: Vec<String>,
}

impl Gpg {
    /// The arguments after the program name.
    pub fn args(&self, output: &Path, input: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(h) = &self.homedir {
            a.push("--homedir".into());
            a.push(h.into());
        }
        // `--auto-key-locate local`: an unknown recipient is an error, never a key
        // fetched from the network (WKD) at backup time.
        for s in [
            "--batch",
            "--yes",
            "--trust-model",
            "always",
            "--auto-key-locate",
            "local",
            "--encrypt",
        ] {
            a.push(s.into());
        }
        for r in &self.recipients {
            a.push("--recipient".into());
            a.push(r.into());
        }
        a.push("--output".into());
        a.push(output.into());
        a.push(input.into());
        a
    }
}

/// Encrypts `src` to `dest` with gpg: gpg writes `dest.part`, which is then fsynced and
/// renamed. gpg runs without a shell, stdin from /dev/null, its stderr collected for the
/// error message.
pub fn encrypt_file(gpg: &Gpg, src: &Path, dest: &Path) -> Result<(), Failure> {
    let part = part_path(dest);
    remove_stale(&part)?;
    let mtime = std::fs::metadata(src).and_then(|m| m.modified()).ok();
    let mut guard = PartGuard {
        path: part.clone(),
        armed: true,
    };
    check_stop()?;
    let args = gpg.args(&part, src);
    tracing::debug!("running {} {:?}", gpg.program.display(), args);
    let mut child = Command::new(&gpg.program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Error(format!("cannot run {}: {e}", gpg.program.display())))?;
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut s) = stderr {
            // Keep the first 64 KiB; read the rest away so gpg never blocks on us.
            let _ = s.by_ref().take(64 * 1024).read_to_end(&mut text);
            let _ = io::copy(&mut s, &mut io::sink());
        }
        let _ = tx.send(text);
    });
    let status = loop {
        if let Some(sig) = stop_signal() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Err(Failure::Interrupted(sig));
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
            Err(e) => return Err(Failure::Error(format!("cannot wait for gpg: {e}"))),
        }
    };
    // A process gpg left behind may hold its stderr open: do not wait for it forever.
    let text = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim_end().to_owned();
    if !status.success() {
        let how = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "an unknown status".into(),
        };
        return Err(Failure::Error(format!(
            "gpg failed ({how}) encrypting {}: {} was not written, and no partial {} is left{}",
            src.display(),
            dest.display(),
            part.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            if text.is_empty() {
                " (gpg printed nothing)".to_owned()
            } else {
                format!("; gpg said:\n{text}")
            }
        )));
    }
    if !text.is_empty() {
        tracing::info!("gpg: {text}");
    }
    if !part.is_file() {
        return Err(Failure::Error(format!(
            "gpg exited 0 but did not write {}",
            part.display()
        )));
    }
    check_stop()?;
    finish(&part, dest, mtime)?;
    guard.armed = false;
    Ok(())
}
