//! Human-readable logging to stderr, which is the platform's task log.
//!
//! Lines read `hookrun: message`, `hookrun: warning: message` or `hookrun: error:
//! message`: no timestamps (the platform adds its own) and no colours (it is a log file).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

struct Plain {
    program: &'static str,
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
        write!(w, "{}: {level}", self.program)?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the stderr logger. `HOOKRUN_LOG=debug|info|warn|error` changes the level
/// (default info); `quiet` lowers it to warnings, for commands whose stdout is the point.
pub fn init(program: &'static str, quiet: bool) {
    let level = match std::env::var("HOOKRUN_LOG").as_deref() {
        Ok("trace") => Level::TRACE,
        Ok("debug") => Level::DEBUG,
        Ok("warn") => Level::WARN,
        Ok("error") => Level::ERROR,
        Ok("info") => Level::INFO,
        _ if quiet => Level::WARN,
        _ => Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Plain { program })
        .try_init();
}
