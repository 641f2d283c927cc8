//! Human-readable logging to stderr, which is the platform's task log, and to the
//! systemd journal too when its socket exists (DESIGN §5).
//!
//! Lines read `hookrun: message`, `hookrun: warning: message` or `hookrun: error:
//! message`: no timestamps (the platform adds its own) and no colours (it is a log file).
//! Journal entries carry the same message with a syslog priority and identifier, sent
//! with the journal's native datagram protocol; a missing or full journal never blocks
//! or fails a dispatch.
//!
//! Entries about a hook also carry `HOOKRUN_PLATFORM`, `HOOKRUN_PHASE`,
//! `HOOKRUN_OBJECT`, `HOOKRUN_HOOK`, `HOOKRUN_JOB`, `HOOKRUN_RUN_ID`, `HOOKRUN_MODE`,
//! `HOOKRUN_OUTCOME`, `HOOKRUN_EXIT_CODE`, `HOOKRUN_SIGNAL` and `HOOKRUN_DURATION_MS`
//! (those that apply), so `journalctl HOOKRUN_OUTCOME=failed` selects failures. The
//! dispatcher sets them for the events it logs about a hook with [`HookFields`]; the
//! stderr lines stay exactly as they were. An entry too large for one datagram goes
//! through a sealed memory file, as the journal's own client library does; should that
//! fail too, it is sent cut down, with `HOOKRUN_TRUNCATED=1` and a note in the message.
//!
//! Hand-written rather than libsystemd or a journald crate: the native protocol is a
//! datagram of `KEY=value` lines, and the dispatcher must stay static-linkable and small.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::record::{OutcomeKind, RunRecord};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter::LevelFilter};

/// Where journald listens; `HOOKRUN_JOURNAL_SOCKET` overrides it (tests, containers).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

struct Plain {
    program: &'static str,
    timestamps: bool,
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::DEBUG | Level::TRACE => "debug: ",
            Level::INFO => "",
        };
        if self.timestamps {
            write!(w, "{} ", crate::time::rfc3339(std::time::SystemTime::now()))?;
        }
        write!(w, "{}: {level}", self.program)?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Sends each event to the journal as `PRIORITY`, `SYSLOG_IDENTIFIER`, `MESSAGE`,
/// `CODE_FILE`, `CODE_LINE` and the fields of the current [`HookFields`].
struct Journal {
    socket: UnixDatagram,
    path: PathBuf,
    identifier: &'static str,
}

#[derive(Default)]
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let priority = priority_of(*meta.level());
        let mut text = MessageText::default();
        event.record(&mut text);
        let line = meta.line().map(|l| l.to_string());
        HOOK_FIELDS.with(|hook| {
            let hook = hook.borrow();
            let mut fields: Vec<(&str, &str)> = Vec::with_capacity(4 + hook.len());
            if let Some(file) = meta.file() {
                fields.push(("CODE_FILE", file));
            }
            if let Some(line) = &line {
                fields.push(("CODE_LINE", line));
            }
            fields.extend(hook.iter().map(|(k, v)| (*k, v.as_str())));
            self.send(priority, &text.0, &fields);
        });
    }
}

fn priority_of(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Set once the journal did not take an entry, so that is said once, not per entry.
static JOURNAL_FAILED: AtomicBool = AtomicBool::new(false);
/// Whether a journal layer is installed: without one, [`HookFields`] costs nothing.
static JOURNAL_ACTIVE: AtomicBool = AtomicBool::new(false);

/// The largest value sent whole when an entry has to be cut down.
const TRUNCATED_VALUE: usize = 16 << 10;

impl Journal {
    fn send(&self, priority: u8, message: &str, fields: &[(&str, &str)]) {
        let d = journal_entry(priority, self.identifier, message, fields);
        let result = match self.socket.send_to(&d, &self.path) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMSGSIZE | nix::libc::ENOBUFS)
                ) =>
            {
                send_memfd(&self.socket, &self.path, &d).or_else(|memfd| {
                    let d = truncated_entry(priority, self.identifier, message, fields);
                    self.socket
                        .send_to(&d, &self.path)
                        .map(drop)
                        .map_err(|e| std::io::Error::other(format!("{memfd}; cut down: {e}")))
                })
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result
            && !JOURNAL_FAILED.swap(true, Ordering::Relaxed)
        {
            // Not through tracing: that would come back here.
            write_stderr(&format!(
                "{}: warning: the journal at {} did not take a message ({e}); messages still go to stderr, but not all of them to the journal\n",
                self.identifier,
                self.path.display()
            ));
        }
    }
}

/// Straight to descriptor 2: usable where std's stderr handle and tracing are not
/// (inside the journal layer, from exit(3)).
fn write_stderr(line: &str) {
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: write(2) from a live buffer to the process's stderr descriptor.
        let n = unsafe { nix::libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        rest = &rest[n as usize..];
    }
}

/// An entry in a sealed memory file, its descriptor passed to journald: the native
/// protocol's way for entries larger than a datagram.
fn send_memfd(socket: &UnixDatagram, path: &Path, entry: &[u8]) -> std::io::Result<()> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    use std::io::Write as _;
    use std::os::fd::AsRawFd;
    let fd = memfd_create(
        "hookrun-journal",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(entry)?;
    // journald takes only memory files that can no longer change.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::all()),
    )?;
    let addr = UnixAddr::new(path)?;
    let fds = [file.as_raw_fd()];
    sendmsg(
        socket.as_raw_fd(),
        &[],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&addr),
    )?;
    Ok(())
}

/// [`journal_entry`] with every value cut to [`TRUNCATED_VALUE`] bytes, saying so.
fn truncated_entry(
    priority: u8,
    identifier: &str,
    message: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let cut = |v: &str| -> String {
        let mut end = v.len().min(TRUNCATED_VALUE);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v[..end].to_owned()
    };
    let message = if message.len() > TRUNCATED_VALUE {
        format!(
            "{} [hookrun: message truncated, {} of {} bytes sent]",
            cut(message),
            cut(message).len(),
            message.len()
        )
    } else {
        message.to_owned()
    };
    let values: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, cut(v))).collect();
    let mut all: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("HOOKRUN_TRUNCATED", "1"));
    journal_entry(priority, identifier, &message, &all)
}

/// One entry in the journal's native protocol. A value with a newline needs the binary
/// form: the field name, a newline, its length as 64-bit little endian, the bytes.
pub fn journal_datagram(priority: u8, identifier: &str, message: &str) -> Vec<u8> {
    journal_entry(priority, identifier, message, &[])
}

/// [`journal_datagram`] with more fields after `MESSAGE`.
pub fn journal_entry(
    priority: u8,
    identifier: &str,
    message: &str,
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut d = Vec::with_capacity(
        message.len()
            + 64
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 10)
                .sum::<usize>(),
    );
    d.extend_from_slice(
        format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={identifier}\n").as_bytes(),
    );
    for (name, value) in std::iter::once(("MESSAGE", message)).chain(fields.iter().copied()) {
        d.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            d.push(b'\n');
            d.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            d.push(b'=');
        }
        d.extend_from_slice(value.as_bytes());
        d.push(b'\n');
    }
    d
}

thread_local! {
    static HOOK_FIELDS: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
}

/// While alive, every journal entry this thread writes carries the `HOOKRUN_*` fields
/// of one hook's run; dropping it restores what was there before.
#[must_use = "the fields apply only while the guard is alive"]
pub struct HookFields {
    previous: Option<Vec<(&'static str, String)>>,
}

/// Whether entries go to the journal at all (so callers can skip building fields).
pub fn journal_active() -> bool {
    JOURNAL_ACTIVE.load(Ordering::Relaxed)
}

impl HookFields {
    pub fn enter(record: &RunRecord) -> HookFields {
        if !JOURNAL_ACTIVE.load(Ordering::Relaxed) {
            return HookFields { previous: None };
        }
        let fields = hook_fields(record);
        let previous = HOOK_FIELDS.with(|f| std::mem::replace(&mut *f.borrow_mut(), fields));
        HookFields {
            previous: Some(previous),
        }
    }
}

impl Drop for HookFields {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            HOOK_FIELDS.with(|f| *f.borrow_mut() = previous);
        }
    }
}

/// The journal fields of a run: what its record says, under `HOOKRUN_*` names.
pub fn hook_fields(r: &RunRecord) -> Vec<(&'static str, String)> {
    let mut v = Vec::with_capacity(11);
    v.push(("HOOKRUN_PLATFORM", r.platform.clone()));
    v.push(("HOOKRUN_PHASE", r.phase.clone()));
    if let Some(o) = &r.object {
        v.push(("HOOKRUN_OBJECT", o.clone()));
    }
    v.push(("HOOKRUN_HOOK", r.hook.clone()));
    v.push(("HOOKRUN_JOB", r.job.clone()));
    v.push(("HOOKRUN_RUN_ID", r.run_id.clone()));
    v.push(("HOOKRUN_MODE", r.mode.clone()));
    if r.outcome != OutcomeKind::Running {
        v.push(("HOOKRUN_OUTCOME", r.outcome.as_str().to_owned()));
        v.push(("HOOKRUN_DURATION_MS", r.duration_ms.to_string()));
    }
    if let Some(c) = r.exit_code {
        v.push(("HOOKRUN_EXIT_CODE", c.to_string()));
    }
    if let Some(s) = r.signal {
        v.push(("HOOKRUN_SIGNAL", s.to_string()));
    }
    v
}

/// Writes the end of an async run to the journal only: the supervisor's stderr is the
/// hook's async log, which has its own end line.
pub fn journal_async_end(identifier: &'static str, record: &RunRecord, message: Option<&str>) {
    let Some(j) = journal(identifier) else {
        return;
    };
    let secs = record.duration_ms as f64 / 1000.0;
    let (priority, text) = match (record.outcome, message) {
        (OutcomeKind::Ok, _) => (6, format!("{}: ok ({secs:.2}s, async)", record.hook)),
        (_, Some(m)) => (4, format!("{}: {m} (async, after {secs:.2}s)", record.hook)),
        (outcome, None) => {
            let what: Cow<'_, str> = match (outcome, record.exit_code, record.signal) {
                (OutcomeKind::Failed, Some(c), _) => format!("failed with exit code {c}").into(),
                (OutcomeKind::Signal, _, Some(s)) => format!("killed by signal {s}").into(),
                (OutcomeKind::Timeout, _, _) => "timed out".into(),
                (o, _, _) => o.as_str().into(),
            };
            (
                4,
                format!("{}: {what} (async, after {secs:.2}s)", record.hook),
            )
        }
    };
    // HOOKRUN_LOG=warn leaves out the ok ones, as it does for the dispatcher's lines.
    if priority > SETUP.get().map_or(6, |s| s.2) {
        return;
    }
    let fields = hook_fields(record);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    j.send(priority, &text, &fields);
}

fn journal(identifier: &'static str) -> Option<Journal> {
    let path = std::env::var_os("HOOKRUN_JOURNAL_SOCKET")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from);
    if !path.exists() {
        return None;
    }
    let socket = UnixDatagram::unbound().ok()?;
    // A journal that stops reading must never stall a backup.
    socket.set_nonblocking(true).ok()?;
    Some(Journal {
        socket,
        path,
        identifier,
    })
}

/// What [`init_with`] was given: the program, timestamps, and the highest syslog
/// priority number (least severe) that is logged.
static SETUP: std::sync::OnceLock<(&'static str, bool, u8)> = std::sync::OnceLock::new();

/// A warning written the way the logger writes it (stderr, and the journal when there
/// is one), for code that runs from exit(3): glibc has destroyed the thread-locals
/// tracing needs by then.
pub fn warn_at_exit(message: &str) {
    let Some(&(program, timestamps, _)) = SETUP.get() else {
        return;
    };
    let mut line = String::with_capacity(message.len() + 48);
    if timestamps {
        line.push_str(&crate::time::rfc3339(std::time::SystemTime::now()));
        line.push(' ');
    }
    line.push_str(program);
    line.push_str(": warning: ");
    line.push_str(message);
    line.push('\n');
    write_stderr(&line);
    if JOURNAL_ACTIVE.load(Ordering::Relaxed)
        && let Some(j) = journal(program)
    {
        j.send(4, message, &[]);
    }
}

/// Installs the stderr logger. `HOOKRUN_LOG=debug|info|warn|error` changes the level
/// (default info); `quiet` lowers it to warnings, for commands whose stdout is the point.
pub fn init(program: &'static str, quiet: bool) {
    init_with(program, quiet, false);
}

/// Like [`init`]; `timestamps` starts each line with the time, for container logs that
/// have none of their own.
pub fn init_with(program: &'static str, quiet: bool, timestamps: bool) {
    init_split(program, quiet, timestamps, Level::TRACE);
}

/// Like [`init_with`], with stderr no more verbose than `stderr_max` (unless
/// `HOOKRUN_LOG` says otherwise) while the journal keeps the full level: for libvirt,
/// which shows a failing hook's stderr to the user as the error, where hookrun's "ok"
/// lines would only bury the reason.
pub fn init_split(program: &'static str, quiet: bool, timestamps: bool, stderr_max: Level) {
    let stderr_max = match std::env::var_os("HOOKRUN_LOG") {
        Some(v) if !v.is_empty() => Level::TRACE,
        _ => stderr_max,
    };
    let level = match std::env::var("HOOKRUN_LOG").as_deref() {
        Ok("trace") => Level::TRACE,
        Ok("debug") => Level::DEBUG,
        Ok("warn") => Level::WARN,
        Ok("error") => Level::ERROR,
        Ok("info") => Level::INFO,
        _ if quiet => Level::WARN,
        _ => Level::INFO,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Plain {
            program,
            timestamps,
        });
    let _ = SETUP.set((program, timestamps, priority_of(level)));
    let journal = journal(program);
    let active = journal.is_some();
    if tracing_subscriber::registry()
        .with(stderr.with_filter(LevelFilter::from_level(level.min(stderr_max))))
        .with(journal.map(|j| j.with_filter(LevelFilter::from_level(level))))
        .try_init()
        .is_ok()
    {
        JOURNAL_ACTIVE.store(active, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams() {
        assert_eq!(
            journal_datagram(4, "hookrun", "x: failed"),
            b"PRIORITY=4\nSYSLOG_IDENTIFIER=hookrun\nMESSAGE=x: failed\n".to_vec()
        );
        let d = journal_datagram(3, "hookrun", "a\nb");
        let mut expect = b"PRIORITY=3\nSYSLOG_IDENTIFIER=hookrun\nMESSAGE\n".to_vec();
        expect.extend_from_slice(&3u64.to_le_bytes());
        expect.extend_from_slice(b"a\nb\n");
        assert_eq!(d, expect);
    }

    #[test]
    fn entries_carry_fields_binary_when_they_hold_a_newline() {
        let d = journal_entry(
            6,
            "hookrun",
            "m",
            &[("HOOKRUN_HOOK", "10-x"), ("HOOKRUN_OBJECT", "a\nb")],
        );
        let mut expect =
            b"PRIORITY=6\nSYSLOG_IDENTIFIER=hookrun\nMESSAGE=m\nHOOKRUN_HOOK=10-x\nHOOKRUN_OBJECT\n".to_vec();
        expect.extend_from_slice(&3u64.to_le_bytes());
        expect.extend_from_slice(b"a\nb\n");
        assert_eq!(d, expect);
    }

    #[test]
    fn a_cut_down_entry_says_so() {
        let big = "x".repeat(TRUNCATED_VALUE * 3);
        let d = truncated_entry(3, "hookrun", &big, &[("HOOKRUN_OBJECT", &big)]);
        let text = String::from_utf8(d).unwrap();
        assert!(text.len() < TRUNCATED_VALUE * 3, "{}", text.len());
        assert!(text.contains(&format!(
            "[hookrun: message truncated, {TRUNCATED_VALUE} of {} bytes sent]",
            big.len()
        )));
        assert!(text.ends_with("HOOKRUN_TRUNCATED=1\n"));
    }

    #[test]
    fn hook_fields_follow_the_record() {
        let r = RunRecord {
            time: "t".into(),
            run_id: "r1".into(),
            platform: "vzdump".into(),
            phase: "backup-end".into(),
            object: None,
            hook: "10-x".into(),
            mode: "sync".into(),
            outcome: OutcomeKind::Timeout,
            exit_code: None,
            signal: Some(15),
            duration_ms: 1200,
            job: "vzdump-10-x".into(),
            message: None,
        };
        let f = hook_fields(&r);
        let names: Vec<&str> = f.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "HOOKRUN_PLATFORM",
                "HOOKRUN_PHASE",
                "HOOKRUN_HOOK",
                "HOOKRUN_JOB",
                "HOOKRUN_RUN_ID",
                "HOOKRUN_MODE",
                "HOOKRUN_OUTCOME",
                "HOOKRUN_DURATION_MS",
                "HOOKRUN_SIGNAL"
            ]
        );
        assert!(f.contains(&("HOOKRUN_OUTCOME", "timeout".into())));
        assert!(f.contains(&("HOOKRUN_DURATION_MS", "1200".into())));
    }
}

/// Where syslog listens on every Linux system that has one.
const SYSLOG_SOCKET: &str = "/dev/log";

/// One message to syslog (`/dev/log`), for a report that must not be lost when the
/// journal and the log files cannot be written. Does nothing without a syslog socket.
pub fn syslog(priority: u8, message: &str) {
    let _ = syslog_to(Path::new(SYSLOG_SOCKET), priority, message);
}

fn syslog_to(socket: &Path, priority: u8, message: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.send_to(&syslog_datagram(priority, message), socket)
        .map(drop)
}

/// `<PRI>hookrun[PID]: MESSAGE` (RFC 3164 as `logger` sends it to `/dev/log`; the
/// daemon adds the time and host), facility daemon, control characters escaped.
pub fn syslog_datagram(priority: u8, message: &str) -> Vec<u8> {
    let clean: String = message
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    format!(
        "<{}>hookrun[{}]: {clean}",
        (3 << 3) | u32::from(priority & 7),
        std::process::id()
    )
    .into_bytes()
}

#[cfg(test)]
mod syslog_tests {
    use super::*;

    #[test]
    fn a_syslog_datagram_reaches_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        syslog_to(&path, 3, "20-copy: cannot write\nits record").unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(
            got,
            format!(
                "<27>hookrun[{}]: 20-copy: cannot write\\nits record",
                std::process::id()
            )
        );
        // No socket: nothing happens, no panic.
        assert!(syslog_to(&dir.path().join("none"), 3, "x").is_err());
    }
}
