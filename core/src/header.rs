//! The machine-readable comment header at the top of a hook (DESIGN §2).
//!
//! The header is the initial block of lines starting with `#`; parsing stops at the first
//! line that does not. Only the first [`HEADER_LIMIT`] bytes of a file are ever looked at,
//! so a binary or a huge script costs one bounded read. Bytes need not be UTF-8 and lines
//! may end in CRLF.

use std::fmt;
use std::time::Duration;

use crate::objects::ObjectPattern;

/// How many bytes of a hook are read to find its header.
pub const HEADER_LIMIT: usize = 8 * 1024;

/// `# mode:` — whether the dispatcher waits for the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Async,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `# on-error:` — what a failure of the hook does to the rest of the dispatch (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop: later hooks are skipped and the dispatch fails.
    Abort,
    /// Keep going, but the dispatch fails at the end.
    Fail,
    /// Log and record only.
    Warn,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Abort => "abort",
            OnError::Fail => "fail",
            OnError::Warn => "warn",
        }
    }

    pub fn parse(s: &str) -> Option<OnError> {
        match s {
            "abort" => Some(OnError::Abort),
            "fail" => Some(OnError::Fail),
            "warn" => Some(OnError::Warn),
            _ => None,
        }
    }
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phases a hook asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phases {
    /// `*`: every phase.
    All,
    List(Vec<String>),
}

impl Phases {
    pub fn matches(&self, phase: &str) -> bool {
        match self {
            Phases::All => true,
            Phases::List(list) => list.iter().any(|p| p == phase),
        }
    }
}

impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phases::All => f.write_str("*"),
            Phases::List(list) => f.write_str(&list.join(" ")),
        }
    }
}

/// A recognised key whose value is wrong. The hook refuses to run while it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    /// 1-based line number in the file.
    pub line: usize,
    pub key: &'static str,
    pub value: String,
    pub reason: ValueError,
}

impl HeaderError {
    /// The remedy alone, when the reason gives one ([`ValueError::fix`]).
    pub fn fix(&self) -> Option<String> {
        self.reason.fix()
    }
}

impl std::error::Error for HeaderError {}

/// Why a header value is wrong: the text after "for 'key': " in a [`HeaderError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("'{key}' is already set on line {first}; keep one line")]
    Duplicate { key: &'static str, first: usize },
    #[error("expected 'sync' or 'async'")]
    Mode,
    #[error("'mk-job' takes no value; write the line as '# mk-job'")]
    MkJobValue,
    #[error("expected 'abort', 'fail' or 'warn'")]
    OnError,
    #[error(transparent)]
    Phases(#[from] PhasesError),
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error(transparent)]
    LockName(#[from] LockNameError),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectsError),
    #[error(transparent)]
    Privilege(#[from] crate::privilege::KeyError),
}

impl ValueError {
    /// The remedy alone, where the message gives one after its "; " (a message that
    /// only says what is expected has none: the expectation is the remedy).
    pub fn fix(&self) -> Option<String> {
        match self {
            ValueError::Duplicate { .. } => Some("keep one line".into()),
            ValueError::MkJobValue => Some("write the line as '# mk-job'".into()),
            ValueError::Mode | ValueError::OnError => None,
            ValueError::Phases(e) => e.fix(),
            ValueError::Duration(e) => e.fix(),
            ValueError::LockName(_) => None,
            ValueError::Objects(e) => e.fix(),
            ValueError::Privilege(e) => e.fix(),
        }
    }
}

/// Why a `# phases:` value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhasesError {
    #[error("no phase given; list phases separated by spaces, or '*' for every phase")]
    Empty,
    #[error("'*' already means every phase; do not combine it with names")]
    StarWithNames,
    #[error("phases are separated by spaces, not commas")]
    Commas,
    #[error("phase {0:?} has characters outside letters, digits, '-', '_', '.' and ':'")]
    BadCharacter(String),
}

impl PhasesError {
    /// The remedy alone, where the message gives one after its "; ".
    pub fn fix(&self) -> Option<String> {
        match self {
            PhasesError::Empty => {
                Some("list phases separated by spaces, or '*' for every phase".into())
            }
            PhasesError::StarWithNames => Some("do not combine it with names".into()),
            PhasesError::Commas | PhasesError::BadCharacter(_) => None,
        }
    }
}

/// Why a duration (`# timeout:`, the config's timeouts) is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a number of seconds, or a number followed by s, m or h (e.g. 90s, 5m, 1h)")]
    Syntax,
    #[error("must be greater than zero; leave the line out for no timeout")]
    Zero,
    #[error(
        "is too large: the most is {} seconds (8760h, 365 days); leave the line out for no timeout",
        MAX_DURATION_SECS
    )]
    TooLarge,
}

impl DurationError {
    /// The remedy alone, where the message gives one after its "; ".
    pub fn fix(&self) -> Option<String> {
        match self {
            DurationError::Syntax => None,
            DurationError::Zero | DurationError::TooLarge => {
                Some("leave the line out for no timeout".into())
            }
        }
    }
}

/// Why a lock name (`# lock:`, a worker's name) is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LockNameError {
    #[error("no lock name given")]
    Empty,
    #[error("lock names are at most 64 characters")]
    TooLong,
    #[error("lock names use letters, digits, '-', '_' and '.', and do not start with '.'")]
    BadCharacter,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: invalid value {:?} for '{}': {}",
            self.line, self.value, self.key, self.reason
        )
    }
}

/// Everything the header says. Absent keys are `None`; their defaults come from the
/// configuration and the platform, not from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub mode: Option<Mode>,
    pub phases: Option<Phases>,
    pub mk_job: bool,
    pub timeout: Option<Duration>,
    pub on_error: Option<OnError>,
    pub lock: Option<String>,
    pub objects: Option<Vec<ObjectPattern>>,
    /// `# nice:`, `# io-class:`, `# user:` ([`crate::privilege`]).
    pub nice: Option<u8>,
    pub io_class: Option<crate::privilege::IoClass>,
    pub user: Option<crate::privilege::Identity>,
    pub errors: Vec<HeaderError>,
    /// True when the `# phases:` line was present but invalid: the hook is then treated
    /// as asking for every phase, so its error is reported wherever it could have run.
    pub phases_invalid: bool,
    /// True when the `# objects:` line was present but invalid (same reasoning).
    pub objects_invalid: bool,
}

/// The keys the dispatcher understands.
pub const KEYS: &[&str] = &[
    "mode", "phases", "mk-job", "timeout", "on-error", "lock", "objects", "nice", "io-class",
    "user",
];

impl Header {
    /// The hook's mode, `async` when the header does not say (the seed's default).
    pub fn mode_or_default(&self) -> Mode {
        self.mode.unwrap_or(Mode::Async)
    }

    /// Whether the hook asked for `phase`. A hook without `# phases:` never runs.
    pub fn wants_phase(&self, phase: &str) -> bool {
        if self.phases_invalid {
            return true;
        }
        self.phases.as_ref().is_some_and(|p| p.matches(phase))
    }

    /// Whether the hook runs for `object`. Without `# objects:` a hook runs for every
    /// object and for dispatches without one; with it, only for a listed object.
    pub fn wants_object(&self, object: Option<&str>) -> bool {
        if self.objects_invalid {
            return true;
        }
        match (&self.objects, object) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(obj)) => patterns.iter().any(|p| p.matches(obj)),
        }
    }
}

/// One line of the header block, with its key split off when it looks like `key: value`.
#[derive(Debug)]
pub struct CommentLine<'a> {
    pub number: usize,
    /// The text after `#`, CR and surrounding whitespace removed.
    pub body: &'a [u8],
}

/// Iterates over the header block of `buf`: the leading lines that start with `#`.
///
/// A final line cut off by the read limit is not part of the header (it may be a longer
/// line that simply did not fit), so callers pass `truncated = true` when `buf` was filled
/// to the limit.
pub fn header_lines(buf: &[u8], truncated: bool) -> impl Iterator<Item = CommentLine<'_>> {
    let mut rest = buf;
    let mut number = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next, complete) = match memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..], true),
            None => (rest, &rest[rest.len()..], false),
        };
        if !complete && truncated {
            return None;
        }
        rest = next;
        number += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let body = line.strip_prefix(b"#")?;
        Some(CommentLine {
            number,
            body: trim(body),
        })
    })
}

/// Splits `key: value` (whitespace around key and colon is free). Returns `None` for
/// prose comments, the shebang and anything that is not an identifier before a colon.
pub fn split_key(body: &[u8]) -> Option<(&[u8], &[u8])> {
    if body.first() == Some(&b'!') {
        return None;
    }
    match memchr(b':', body) {
        Some(i) => {
            let key = trim(&body[..i]);
            if key.is_empty()
                || !key
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return None;
            }
            Some((key, trim(&body[i + 1..])))
        }
        // A bare word such as `mk-job`.
        None if !body.is_empty()
            && body
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some((body, &[][..]))
        }
        None => None,
    }
}

/// Parses the header from the first bytes of a hook. `truncated` says whether `buf` was
/// cut at [`HEADER_LIMIT`].
pub fn parse(buf: &[u8], truncated: bool) -> Header {
    let mut h = Header::default();
    let mut seen: [Option<usize>; KEYS.len()] = [None; KEYS.len()];
    for line in header_lines(buf, truncated) {
        let Some((key, value)) = split_key(line.body) else {
            continue;
        };
        let Some(index) = KEYS.iter().position(|k| k.as_bytes() == key) else {
            continue;
        };
        let key_name = KEYS[index];
        let value_str = String::from_utf8_lossy(value);
        let problem = if let Some(first) = seen[index] {
            Some(ValueError::Duplicate {
                key: key_name,
                first,
            })
        } else {
            seen[index] = Some(line.number);
            apply(&mut h, key_name, value, &value_str).err()
        };
        if let Some(reason) = problem {
            h.errors.push(HeaderError {
                line: line.number,
                key: key_name,
                value: value_str.into_owned(),
                reason,
            });
        }
    }
    h
}

/// Stores one recognised key's value in `h`, or says why the value is wrong.
fn apply(h: &mut Header, key: &str, value: &[u8], value_str: &str) -> Result<(), ValueError> {
    match key {
        "mode" => match value {
            b"sync" => h.mode = Some(Mode::Sync),
            b"async" => h.mode = Some(Mode::Async),
            _ => return Err(ValueError::Mode),
        },
        "phases" => match parse_phases(value_str) {
            Ok(p) => h.phases = Some(p),
            Err(reason) => {
                h.phases_invalid = true;
                return Err(reason.into());
            }
        },
        "mk-job" if value.is_empty() => h.mk_job = true,
        "mk-job" => return Err(ValueError::MkJobValue),
        "timeout" => h.timeout = Some(parse_duration(value_str)?),
        "on-error" => {
            h.on_error = Some(OnError::parse(value_str).ok_or(ValueError::OnError)?);
        }
        "lock" => {
            validate_lock_name(value_str)?;
            h.lock = Some(value_str.to_owned());
        }
        "objects" => match crate::objects::parse_list(value_str) {
            Ok(list) => h.objects = Some(list),
            Err(reason) => {
                h.objects_invalid = true;
                return Err(reason.into());
            }
        },
        "nice" => h.nice = Some(crate::privilege::parse_nice(value_str)?),
        "io-class" => h.io_class = Some(crate::privilege::parse_io_class(value_str)?),
        "user" => h.user = Some(crate::privilege::parse_user(value_str)?),
        _ => unreachable!("every entry of KEYS is handled"),
    }
    Ok(())
}

fn parse_phases(value: &str) -> Result<Phases, PhasesError> {
    if value.is_empty() {
        return Err(PhasesError::Empty);
    }
    let mut list = Vec::new();
    for word in value.split_ascii_whitespace() {
        if word == "*" {
            return if value.split_ascii_whitespace().count() == 1 {
                Ok(Phases::All)
            } else {
                Err(PhasesError::StarWithNames)
            };
        }
        if word.contains(',') {
            return Err(PhasesError::Commas);
        }
        if !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(PhasesError::BadCharacter(word.to_owned()));
        }
        list.push(word.to_owned());
    }
    Ok(Phases::List(list))
}

/// The longest duration any header line or configuration key may give: 365 days
/// (`8760h`). Far beyond any sensible hook timeout, and small enough that adding it to
/// an `Instant`, to a grace period, or converting it to milliseconds in a `u64` can
/// never overflow — so a value that parses can never make the dispatcher panic.
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_SECS);

/// [`MAX_DURATION`] in seconds.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

/// Refuses durations above [`MAX_DURATION`], naming the limit.
pub fn check_duration_range(secs: u64) -> Result<Duration, DurationError> {
    if secs > MAX_DURATION_SECS {
        return Err(DurationError::TooLarge);
    }
    Ok(Duration::from_secs(secs))
}

/// Parses `90`, `90s`, `5m`, `1h` into a duration of at most [`MAX_DURATION`]. Zero is
/// refused: it would either mean "no time at all" or "no limit", and a reader cannot
/// tell which was meant.
pub fn parse_duration(value: &str) -> Result<Duration, DurationError> {
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(DurationError::Syntax),
    };
    if digits.is_empty() {
        return Err(DurationError::Syntax);
    }
    // Only digits remain, so a failed parse is a number beyond u64: too large.
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    if n == 0 {
        return Err(DurationError::Zero);
    }
    check_duration_range(n.saturating_mul(factor))
}

/// Lock names become file names under the lock directory, so they must not be able to
/// name anything else.
pub fn validate_lock_name(name: &str) -> Result<(), LockNameError> {
    if name.is_empty() {
        return Err(LockNameError::Empty);
    }
    if name.len() > 64 {
        return Err(LockNameError::TooLong);
    }
    if name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(LockNameError::BadCharacter);
    }
    Ok(())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Header {
        parse(text.as_bytes(), false)
    }

    #[test]
    fn seed_header() {
        let h =
            p("#!/bin/bash\n# mode: async\n# phases: log-end\n# mk-job\nset -e\n# mode: sync\n");
        assert_eq!(h.mode, Some(Mode::Async));
        assert_eq!(h.phases, Some(Phases::List(vec!["log-end".into()])));
        assert!(h.mk_job);
        assert!(h.errors.is_empty());
    }

    #[test]
    fn parsing_stops_at_first_non_comment_line() {
        let h = p("#!/bin/sh\n\n# phases: job-end\n");
        assert_eq!(h.phases, None);
        assert!(!h.wants_phase("job-end"));
    }

    #[test]
    fn whitespace_is_free_and_crlf_tolerated() {
        let h = p("#!/bin/sh\r\n#mode:sync\r\n#   phases :  a   b\tc  \r\n#  mk-job  \r\n");
        assert_eq!(h.mode, Some(Mode::Sync));
        assert_eq!(
            h.phases,
            Some(Phases::List(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert!(h.mk_job);
        assert!(h.errors.is_empty(), "{:?}", h.errors);
    }

    #[test]
    fn all_keys() {
        let h = p(
            "#!/bin/sh\n# mode: sync\n# phases: *\n# timeout: 2m\n# on-error: abort\n# lock: backup.nfs\n# objects: 101 200-299 web-*\n",
        );
        assert_eq!(h.phases, Some(Phases::All));
        assert!(h.wants_phase("anything"));
        assert_eq!(h.timeout, Some(Duration::from_secs(120)));
        assert_eq!(h.on_error, Some(OnError::Abort));
        assert_eq!(h.lock.as_deref(), Some("backup.nfs"));
        assert!(h.wants_object(Some("250")));
        assert!(h.wants_object(Some("web-1")));
        assert!(!h.wants_object(Some("300")));
        assert!(!h.wants_object(None));
        assert!(h.errors.is_empty());
    }

    #[test]
    fn defaults() {
        let h = p("#!/bin/sh\n# phases: x\n");
        assert_eq!(h.mode_or_default(), Mode::Async);
        assert!(h.wants_object(None));
        assert!(h.wants_object(Some("101")));
        assert!(!h.wants_phase("y"));
    }

    #[test]
    fn invalid_values_name_line_and_value() {
        let h = p("#!/bin/sh\n# mode: asnyc\n# phases: log-end\n");
        assert_eq!(h.errors.len(), 1);
        let e = &h.errors[0];
        assert_eq!((e.line, e.key, e.value.as_str()), (2, "mode", "asnyc"));
        assert_eq!(
            e.to_string(),
            "line 2: invalid value \"asnyc\" for 'mode': expected 'sync' or 'async'"
        );
    }

    #[test]
    fn every_malformed_value_is_an_error() {
        for (line, key) in [
            ("# mode: SYNC", "mode"),
            ("# mode:", "mode"),
            ("# phases:", "phases"),
            ("# phases: log-end,job-end", "phases"),
            ("# phases: * log-end", "phases"),
            ("# phases: a/b", "phases"),
            ("# mk-job: yes", "mk-job"),
            ("# timeout: 0", "timeout"),
            ("# timeout: 5d", "timeout"),
            ("# timeout: soon", "timeout"),
            ("# timeout: -5", "timeout"),
            ("# timeout: 99999999999999999999h", "timeout"),
            ("# on-error: ignore", "on-error"),
            ("# lock: ../etc/passwd", "lock"),
            ("# lock: .hidden", "lock"),
            ("# lock:", "lock"),
            ("# objects:", "objects"),
            ("# objects: 300-200", "objects"),
            ("# objects: a/b", "objects"),
        ] {
            let h = p(&format!("#!/bin/sh\n{line}\n"));
            assert_eq!(h.errors.len(), 1, "{line}: {:?}", h.errors);
            assert_eq!(h.errors[0].key, key, "{line}");
            assert_eq!(h.errors[0].line, 2, "{line}");
        }
    }

    /// The words each error prints (the dispatcher, `list`, `lint` and `doctor` show
    /// them) and the remedy [`HeaderError::fix`] gives alone.
    #[test]
    fn messages_and_their_fixes() {
        const LEAVE_OUT: Option<&str> = Some("leave the line out for no timeout");
        for (line, reason, fix) in [
            ("# mode: SYNC", "expected 'sync' or 'async'", None),
            (
                "# phases:",
                "no phase given; list phases separated by spaces, or '*' for every phase",
                Some("list phases separated by spaces, or '*' for every phase"),
            ),
            (
                "# phases: * a",
                "'*' already means every phase; do not combine it with names",
                Some("do not combine it with names"),
            ),
            (
                "# phases: a,b",
                "phases are separated by spaces, not commas",
                None,
            ),
            (
                "# phases: a/b",
                "phase \"a/b\" has characters outside letters, digits, '-', '_', '.' and ':'",
                None,
            ),
            (
                "# mk-job: yes",
                "'mk-job' takes no value; write the line as '# mk-job'",
                Some("write the line as '# mk-job'"),
            ),
            (
                "# timeout: soon",
                "expected a number of seconds, or a number followed by s, m or h (e.g. 90s, 5m, 1h)",
                None,
            ),
            (
                "# timeout: 5d",
                "expected a number of seconds, or a number followed by s, m or h (e.g. 90s, 5m, 1h)",
                None,
            ),
            (
                "# timeout: 0",
                "must be greater than zero; leave the line out for no timeout",
                LEAVE_OUT,
            ),
            (
                "# timeout: 8761h",
                "is too large: the most is 31536000 seconds (8760h, 365 days); leave the line out for no timeout",
                LEAVE_OUT,
            ),
            (
                "# on-error: ignore",
                "expected 'abort', 'fail' or 'warn'",
                None,
            ),
            ("# lock:", "no lock name given", None),
            (
                "# lock: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "lock names are at most 64 characters",
                None,
            ),
            (
                "# lock: ../etc",
                "lock names use letters, digits, '-', '_' and '.', and do not start with '.'",
                None,
            ),
            (
                "# objects: 9-1",
                "range \"9-1\" is backwards; write the lower bound first",
                Some("write the lower bound first"),
            ),
            (
                "# nice: 20",
                "expected a whole number from 0 to 19 (19 = lowest CPU priority)",
                None,
            ),
            ("# io-class: idle:1", "'idle' takes no level", None),
            (
                "# user: Not-A-Name",
                "expected a user name, optionally ':' and a group name (e.g. nobody or backup:disk)",
                None,
            ),
        ] {
            let h = p(&format!("#!/bin/sh\n{line}\n"));
            assert_eq!(h.errors.len(), 1, "{line}: {:?}", h.errors);
            let e = &h.errors[0];
            assert_eq!(e.reason.to_string(), reason, "{line}");
            assert_eq!(
                e.to_string(),
                format!(
                    "line 2: invalid value {:?} for '{}': {reason}",
                    e.value, e.key
                )
            );
            assert_eq!(e.fix().as_deref(), fix, "{line}");
        }
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let h = p("#!/bin/sh\n# mode: sync\n# mode: async\n");
        assert_eq!(h.mode, Some(Mode::Sync));
        assert_eq!(h.errors.len(), 1);
        assert_eq!(
            h.errors[0].to_string(),
            "line 3: invalid value \"async\" for 'mode': 'mode' is already set on line 2; keep one line"
        );
        assert_eq!(h.errors[0].fix().as_deref(), Some("keep one line"));
    }

    #[test]
    fn invalid_phases_match_everywhere_so_the_error_is_seen() {
        let h = p("#!/bin/sh\n# phases: a,b\n");
        assert!(h.wants_phase("job-start"));
        let h = p("#!/bin/sh\n# phases: a\n# objects: 9-1\n");
        assert!(h.wants_object(None));
    }

    #[test]
    fn near_misses_and_prose_are_ignored_at_run_time() {
        let h = p(
            "#!/bin/sh\n# Mode: sync\n# phase: log-end\n# This hook copies: files\n# phases: x\n",
        );
        assert_eq!(h.mode, None);
        assert_eq!(h.phases, Some(Phases::List(vec!["x".into()])));
        assert!(h.errors.is_empty());
    }

    #[test]
    fn non_utf8_is_tolerated() {
        let mut buf = b"#!/bin/sh\n# caf\xe9 \xff\n# phases: job-end\n".to_vec();
        buf.extend_from_slice(b"\x00\x01binary");
        let h = parse(&buf, false);
        assert!(h.wants_phase("job-end"));
        let h = parse(b"# mode: \xffsync\n", false);
        assert_eq!(h.errors.len(), 1);
        assert_eq!(h.errors[0].value, "\u{fffd}sync");
    }

    #[test]
    fn truncated_last_line_is_dropped() {
        assert_eq!(parse(b"# phases: a\n# mode: sy", true).mode, None);
        assert_eq!(
            parse(b"# phases: a\n# mode: sync", false).mode,
            Some(Mode::Sync)
        );
    }

    #[test]
    fn shebang_with_colon_is_not_a_key() {
        let h = p("#!/usr/bin/env -S mode: sync\n# phases: a\n");
        assert_eq!(h.mode, None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.5m").is_err());
    }

    #[test]
    fn durations_are_bounded_so_nothing_can_overflow() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("31536000"), Ok(MAX_DURATION));
        for huge in [
            "8761h",
            "31536001",
            "525601m",
            "9223372036854775807",
            "18446744073709552",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999h",
        ] {
            let e = parse_duration(huge).unwrap_err().to_string();
            assert!(e.contains("the most is 31536000 seconds"), "{huge}: {e}");
        }
        // What the limit promises: the dispatcher's arithmetic on it cannot overflow.
        let now = std::time::Instant::now();
        let _ = now + MAX_DURATION + MAX_DURATION;
        assert!(u64::try_from(MAX_DURATION.as_millis()).is_ok());
        let h = p("#!/bin/sh\n# phases: x\n# timeout: 9223372036854775807\n");
        assert_eq!(h.errors.len(), 1);
        assert_eq!((h.errors[0].line, h.errors[0].key), (3, "timeout"));
        assert_eq!(h.timeout, None);
    }

    /// Property tests: any bytes parse without panicking, a generated valid header
    /// parses back to the values it was made from, and the whitespace and CRLF freedom
    /// the design promises changes nothing.
    mod props {
        use super::*;
        use crate::objects::ObjectPattern;
        use proptest::prelude::*;

        /// What a header line says, to be rendered in any spacing.
        #[derive(Debug, Clone)]
        enum Line {
            /// `key: words...` (a single word for scalar keys).
            Key(&'static str, Vec<String>),
            /// `# mk-job`.
            MkJob,
            /// A comment that is not a key line.
            Prose(&'static str),
        }

        const PROSE: &[&str] = &[
            "",
            "Copies each finished archive to the NAS.",
            "note: the NAS must be mounted",
            "---",
            "see https://example.org/x?a=b",
            "Mode of operation: careful",
        ];

        fn phase_word() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_.:-]{1,12}"
        }

        fn lock_name() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}"
        }

        fn object() -> impl Strategy<Value = ObjectPattern> {
            prop_oneof![
                (0u64..1_000_000, 0u64..1000).prop_map(|(lo, n)| ObjectPattern::Range(lo, lo + n)),
                "[a-z][a-z0-9-]{0,8}".prop_map(ObjectPattern::Exact),
                "[a-z]{1,4}[*?][a-z0-9]{0,3}".prop_map(ObjectPattern::Glob),
            ]
        }

        /// A header (as the parser should see it) and the lines that say it.
        fn valid_header() -> impl Strategy<Value = (Header, Vec<Line>)> {
            (
                proptest::option::of(prop_oneof![Just(Mode::Sync), Just(Mode::Async)]),
                proptest::option::of(prop_oneof![
                    Just(Phases::All),
                    proptest::collection::vec(phase_word(), 1..5).prop_map(Phases::List),
                ]),
                any::<bool>(),
                proptest::option::of((1u64..100_000, 0usize..4)),
                proptest::option::of(prop_oneof![
                    Just(OnError::Abort),
                    Just(OnError::Fail),
                    Just(OnError::Warn)
                ]),
                proptest::option::of(lock_name()),
                proptest::option::of(proptest::collection::vec(object(), 1..5)),
                proptest::collection::vec(proptest::sample::select(PROSE), 0..4),
            )
                .prop_flat_map(
                    |(mode, phases, mk_job, timeout, on_error, lock, objects, prose)| {
                        let mut h = Header {
                            mode,
                            mk_job,
                            on_error,
                            lock: lock.clone(),
                            ..Header::default()
                        };
                        let mut lines = Vec::new();
                        if let Some(m) = mode {
                            lines.push(Line::Key("mode", vec![m.as_str().into()]));
                        }
                        if let Some(p) = &phases {
                            let words = match p {
                                Phases::All => vec!["*".to_owned()],
                                Phases::List(l) => l.clone(),
                            };
                            lines.push(Line::Key("phases", words));
                        }
                        h.phases = phases;
                        if mk_job {
                            lines.push(Line::MkJob);
                        }
                        if let Some((n, unit)) = timeout {
                            let (suffix, factor) =
                                [("", 1), ("s", 1), ("m", 60), ("h", 3600)][unit];
                            // Within MAX_DURATION, whatever the unit.
                            let n = 1 + (n - 1) % (MAX_DURATION_SECS / factor);
                            h.timeout = Some(Duration::from_secs(n * factor));
                            lines.push(Line::Key("timeout", vec![format!("{n}{suffix}")]));
                        }
                        if let Some(o) = on_error {
                            lines.push(Line::Key("on-error", vec![o.as_str().into()]));
                        }
                        if let Some(l) = lock {
                            lines.push(Line::Key("lock", vec![l]));
                        }
                        if let Some(list) = &objects {
                            lines.push(Line::Key(
                                "objects",
                                list.iter().map(ToString::to_string).collect(),
                            ));
                        }
                        h.objects = objects;
                        lines.extend(prose.into_iter().map(Line::Prose));
                        (Just(h), Just(lines).prop_shuffle())
                    },
                )
        }

        /// Free spacing: runs of spaces and tabs (possibly none).
        fn gaps(n: usize) -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec("[ \t]{0,3}", n)
        }

        /// Renders `lines` as a hook: shebang, header, then a body whose comment lines
        /// must be ignored. `gap` yields the spacing around `#`, key, `:` and values,
        /// `crlf` says which lines end in CRLF.
        fn render(lines: &[Line], gap: &mut dyn FnMut() -> String, crlf: &[bool]) -> Vec<u8> {
            let mut out = Vec::new();
            let end = |out: &mut Vec<u8>, i: usize| {
                if crlf.get(i).copied().unwrap_or(false) {
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.push(b'\n');
                }
            };
            out.extend_from_slice(b"#!/bin/sh");
            end(&mut out, 0);
            for (i, line) in lines.iter().enumerate() {
                let text = match line {
                    Line::Key(key, words) => {
                        let mut value = String::new();
                        for (j, w) in words.iter().enumerate() {
                            if j > 0 {
                                // Between list words at least one blank.
                                value.push_str(if j % 2 == 0 { " " } else { "\t" });
                                value.push_str(&gap());
                            }
                            value.push_str(w);
                        }
                        format!("#{}{key}{}:{}{value}{}", gap(), gap(), gap(), gap())
                    }
                    Line::MkJob => format!("#{}mk-job{}", gap(), gap()),
                    Line::Prose(p) => format!("# {p}"),
                };
                out.extend_from_slice(text.as_bytes());
                end(&mut out, i + 1);
            }
            out.extend_from_slice(b"set -e\n# mode: sync\n# phases: after-the-header\nexit 0\n");
            out
        }

        fn tight() -> String {
            String::new()
        }

        /// Fragments that make header-like garbage more likely than plain random bytes.
        const FRAGMENTS: &[&[u8]] = &[
            b"#",
            b"#!",
            b" ",
            b"\t",
            b":",
            b"\n",
            b"\r",
            b"\r\n",
            b"mode",
            b"phases",
            b"mk-job",
            b"timeout",
            b"on-error",
            b"lock",
            b"objects",
            b"sync",
            b"async",
            b"*",
            b"abort",
            b"1-2",
            b"99999999999999999999",
            b"h",
            b"web-*",
            b"?",
            b",",
            b"/",
            b"..",
            b"\xff",
            b"\xc3",
            b"\x00",
            b"-",
            b"0",
            b"a",
        ];

        fn garbage() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..HEADER_LIMIT + 64),
                proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..400)
                    .prop_map(|f| f.concat()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_parse_without_panicking(buf in garbage(), truncated: bool) {
                let h = parse(&buf, truncated);
                let lines = buf.split(|&b| b == b'\n').count();
                for e in &h.errors {
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e:?} of {lines} lines");
                    prop_assert!(KEYS.contains(&e.key));
                }
                // Lint reads the same bytes, plus its own passes over them.
                let _ = crate::lint::lint_bytes(&buf, truncated, Some(("vzdump", &["job-start"])));
            }

            #[test]
            fn a_valid_header_parses_back_to_its_values((want, lines) in valid_header()) {
                let text = render(&lines, &mut tight, &[]);
                let got = parse(&text, false);
                prop_assert_eq!(&got, &want, "{}", String::from_utf8_lossy(&text));
            }

            #[test]
            fn spacing_and_crlf_change_nothing(
                (want, lines) in valid_header(),
                spacing in gaps(64),
                crlf in proptest::collection::vec(any::<bool>(), 16),
            ) {
                let mut next = spacing.into_iter().cycle();
                let mut gap = || next.next().unwrap_or_default();
                let text = render(&lines, &mut gap, &crlf);
                let got = parse(&text, false);
                prop_assert_eq!(&got, &want, "{:?}", String::from_utf8_lossy(&text));
            }

            #[test]
            fn a_truncated_read_drops_only_the_cut_line(
                (_want, lines) in valid_header(),
                cut in any::<proptest::sample::Index>(),
            ) {
                let text = render(&lines, &mut tight, &[]);
                let at = cut.index(text.len() + 1);
                let head = &text[..at];
                // What a read cut at `at` may use: the complete lines before the cut.
                let complete = match head.iter().rposition(|&b| b == b'\n') {
                    Some(i) => &head[..=i],
                    None => &head[..0],
                };
                prop_assert_eq!(parse(head, true), parse(complete, false));
            }
        }
    }
}
