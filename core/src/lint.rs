//! Static checks of a hook's header (`hookrun lint`): the errors that make a hook refuse
//! to run, and the near-misses that make it silently do nothing — `# phase:`, `#Mode:`,
//! a key after the header has ended — which are worse, because nothing says so at 3 a.m.

use crate::header::{self, KEYS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

fn finding(line: Option<usize>, severity: Severity, message: String) -> Finding {
    Finding {
        line,
        severity,
        message,
    }
}

/// Lints the first bytes of a hook. `known_phases` is the platform's phase list, when the
/// platform is known.
pub fn lint_bytes(
    buf: &[u8],
    truncated: bool,
    known_phases: Option<(&str, &[&str])>,
) -> Vec<Finding> {
    let h = header::parse(buf, truncated);
    let mut out = Vec::new();
    for e in &h.errors {
        out.push(finding(
            Some(e.line),
            Severity::Error,
            format!("invalid value {:?} for '{}': {}", e.value, e.key, e.reason),
        ));
    }
    if !buf.starts_with(b"#!") && !buf.starts_with(b"\x7fELF") {
        out.push(finding(
            Some(1),
            Severity::Error,
            "no #! line: the kernel cannot execute this file; start it with e.g. #!/bin/sh".into(),
        ));
    }

    let mut header_end = None;
    // Counted once: counting per line made a file of short lines cost quadratic time.
    let last = buf.split(|&b| b == b'\n').count() - 1;
    for (index, raw) in buf.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let is_last_partial = truncated && index == last;
        if is_last_partial {
            break;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let in_header = header_end.is_none() && line.first() == Some(&b'#');
        if header_end.is_none() && !in_header {
            header_end = Some(number);
        }
        let trimmed = trim_start(line);
        let Some(body) = trimmed.strip_prefix(b"#") else {
            continue;
        };
        let body = trim(body);
        if let Some(key) = looks_like_known_key(body) {
            if !in_header {
                let end = header_end.unwrap_or(number);
                out.push(finding(
                    Some(number),
                    Severity::Warning,
                    format!(
                        "'# {key}' is after the end of the header (line {end} is the first line not starting with '#'), so it is ignored; move it up into the first block of comment lines"
                    ),
                ));
            }
            continue;
        }
        if !in_header {
            continue;
        }
        if let Some(m) = near_miss(body) {
            out.push(finding(Some(number), Severity::Warning, m));
        }
    }

    if h.phases.is_none() && !h.phases_invalid {
        out.push(finding(
            None,
            Severity::Warning,
            "no '# phases:' line: this hook never runs".into(),
        ));
    }
    if let (Some((platform, known)), Some(header::Phases::List(list))) = (known_phases, &h.phases) {
        for p in list {
            if !known.contains(&p.as_str()) {
                out.push(finding(
                    phases_line(buf),
                    Severity::Warning,
                    format!(
                        "'{p}' is not a {platform} phase, so this hook will not run for it unless {platform} adds it (known: {})",
                        known.join(" ")
                    ),
                ));
            }
        }
    }
    if h.mode.is_none() && h.phases.is_some() {
        out.push(finding(
            None,
            Severity::Info,
            "no '# mode:' line: the hook runs async (detached), the default".into(),
        ));
    }
    if truncated && header_end.is_none() {
        out.push(finding(
            None,
            Severity::Warning,
            format!(
                "the comment block is longer than {} bytes; only that much is read for the header",
                header::HEADER_LIMIT
            ),
        ));
    }
    out.sort_by_key(|f| (f.line.unwrap_or(usize::MAX), std::cmp::Reverse(f.severity)));
    out
}

fn phases_line(buf: &[u8]) -> Option<usize> {
    header::header_lines(buf, false)
        .find(|l| header::split_key(l.body).is_some_and(|(k, _)| k == b"phases"))
        .map(|l| l.number)
}

/// `Some(key)` when the comment line is a correctly spelled key line.
fn looks_like_known_key(body: &[u8]) -> Option<&'static str> {
    let (key, _) = header::split_key(body)?;
    KEYS.iter().copied().find(|k| k.as_bytes() == key)
}

/// Explains a header line that is almost a key.
fn near_miss(body: &[u8]) -> Option<String> {
    if let Some((key, _)) = header::split_key(body) {
        let key = String::from_utf8_lossy(key);
        let lower = key.to_ascii_lowercase().replace('_', "-");
        if let Some(k) = KEYS.iter().find(|k| **k == lower) {
            return Some(format!(
                "'{key}' is not recognised (keys are lower case, with '-'): write '# {k}:'"
            ));
        }
        if let Some(k) = KEYS.iter().find(|k| {
            let d = edit_distance(&lower, k);
            // Two edits only for long keys: 'note' is two edits from 'mode' and is prose.
            d == 1 || (d == 2 && k.len() >= 6)
        }) {
            return Some(format!("'{key}' is not a header key; did you mean '{k}'?"));
        }
        return None;
    }
    // `# mode sync`: a key without its colon.
    let text = String::from_utf8_lossy(body);
    let mut words = text.split_ascii_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    if words.next().is_some() && KEYS.contains(&first.as_str()) && first != "mk-job" {
        return Some(format!(
            "'{first}' without ':' is not read as a header key: write '# {first}: ...'"
        ));
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_of_many_short_lines_lints_in_linear_time() {
        // Found while fuzzing (the header target ran fifty times slower than the others):
        // the last-line check counted all lines again for every line. These four inputs
        // now take milliseconds; the quadratic version took minutes in a debug build.
        let buf = vec![b'\n'; header::HEADER_LIMIT * 4];
        let start = std::time::Instant::now();
        for _ in 0..4 {
            lint_bytes(&buf, true, None);
        }
        let took = start.elapsed();
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    }

    const VZ: &[&str] = &["job-start", "log-end", "backup-start"];

    fn lint(text: &str) -> Vec<(Option<usize>, Severity, String)> {
        lint_bytes(text.as_bytes(), false, Some(("vzdump", VZ)))
            .into_iter()
            .map(|f| (f.line, f.severity, f.message))
            .collect()
    }

    #[test]
    fn clean_hook_has_no_findings() {
        assert_eq!(
            lint("#!/bin/sh\n# mode: sync\n# phases: log-end\nexit 0\n"),
            vec![]
        );
    }

    #[test]
    fn near_misses() {
        let f = lint(
            "#!/bin/sh\n# mode: sync\n# phase: log-end\n#Mode: async\n# on_error: warn\n# timout: 5\n# lock sync\n",
        );
        let msgs: Vec<_> = f
            .iter()
            .filter(|f| f.1 == Severity::Warning)
            .map(|f| (f.0, f.2.clone()))
            .collect();
        assert!(
            msgs.iter()
                .any(|(l, m)| *l == Some(3) && m.contains("did you mean 'phases'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, m)| *l == Some(4) && m.contains("'# mode:'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, m)| *l == Some(5) && m.contains("'# on-error:'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, m)| *l == Some(6) && m.contains("did you mean 'timeout'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, m)| *l == Some(7) && m.contains("without ':'")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, m)| l.is_none() && m.contains("never runs")),
            "{msgs:?}"
        );
    }

    #[test]
    fn key_after_header_end() {
        let f = lint("#!/bin/sh\n\n# mode: sync\n# phases: log-end\n");
        assert!(
            f.iter()
                .any(|f| f.0 == Some(3) && f.2.contains("line 2 is the first line")),
            "{f:?}"
        );
        assert!(f.iter().any(|f| f.2.contains("never runs")), "{f:?}");
        let f = lint("#!/bin/sh\n# mode: sync\n  # phases: log-end\n");
        assert!(
            f.iter()
                .any(|f| f.0 == Some(3) && f.2.contains("after the end of the header")),
            "{f:?}"
        );
    }

    #[test]
    fn errors_unknown_phases_and_shebang() {
        let f = lint("# mode: asnyc\n# phases: log-end backup-started\n");
        assert!(
            f.iter()
                .any(|f| f.0 == Some(1) && f.1 == Severity::Error && f.2.contains("asnyc")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|f| f.0 == Some(1) && f.1 == Severity::Error && f.2.contains("#!")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|f| f.0 == Some(2) && f.2.contains("'backup-started' is not a vzdump phase")),
            "{f:?}"
        );
    }

    #[test]
    fn prose_is_not_a_near_miss() {
        assert_eq!(
            lint(
                "#!/bin/sh\n# mode: sync\n# phases: log-end\n# Copies backups offsite.\n# Note: needs gpg\n# timeouts are handled by hookrun\n"
            ),
            vec![]
        );
    }
}
