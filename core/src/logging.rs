//! Human-readable logging to stderr, which is the platform's task log, and to the
//! systemd journal too when its socket exists (DESIGN §5).
//!
//! Lines read `hookrun: message`, `hookrun: warning: message` or `hookrun: error:
//! message`: no timestamps (the platform adds its own) and no colours (it is a log file).
//! Journal entries carry the same message with a syslog priority and identifier, sent
//! with the journal's native datagram protocol; a missing or full journal never blocks
//! or fails a dispatch.

use std::fmt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

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

/// Sends each event to the journal as `PRIORITY`, `SYSLOG_IDENTIFIER` and `MESSAGE`.
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
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        let mut text = MessageText::default();
        event.record(&mut text);
        let _ = self.socket.send_to(
            &journal_datagram(priority, self.identifier, &text.0),
            &self.path,
        );
    }
}

/// One entry in the journal's native protocol. A value with a newline needs the binary
/// form: the field name, a newline, its length as 64-bit little endian, the bytes.
pub fn journal_datagram(priority: u8, identifier: &str, message: &str) -> Vec<u8> {
    let mut d = Vec::with_capacity(message.len() + 64);
    d.extend_from_slice(
        format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={identifier}\n").as_bytes(),
    );
    if message.contains('\n') {
        d.extend_from_slice(b"MESSAGE\n");
        d.extend_from_slice(&(message.len() as u64).to_le_bytes());
        d.extend_from_slice(message.as_bytes());
        d.push(b'\n');
    } else {
        d.extend_from_slice(b"MESSAGE=");
        d.extend_from_slice(message.as_bytes());
        d.push(b'\n');
    }
    d
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
    let _ = tracing_subscriber::registry()
        .with(stderr.with_filter(LevelFilter::from_level(level.min(stderr_max))))
        .with(journal(program).map(|j| j.with_filter(LevelFilter::from_level(level))))
        .try_init();
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
}
