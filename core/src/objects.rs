//! `# objects:` patterns: the VMIDs, domain or network names, or workers a hook is for.

use std::fmt;

/// One word of an `# objects:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectPattern {
    /// `200-299`: every decimal number in the range, bounds included.
    Range(u64, u64),
    /// A word with `*` or `?` in it, matched against the whole object name.
    Glob(String),
    Exact(String),
}

impl ObjectPattern {
    pub fn matches(&self, object: &str) -> bool {
        match self {
            ObjectPattern::Range(lo, hi) => {
                // Only plain decimal numbers are in a range: "0101" or "+5" are names.
                let canonical = !object.is_empty()
                    && object.bytes().all(|b| b.is_ascii_digit())
                    && (object == "0" || !object.starts_with('0'));
                canonical
                    && object
                        .parse::<u64>()
                        .is_ok_and(|n| (*lo..=*hi).contains(&n))
            }
            ObjectPattern::Glob(glob) => glob_match(glob.as_bytes(), object.as_bytes()),
            ObjectPattern::Exact(name) => name == object,
        }
    }
}

impl fmt::Display for ObjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectPattern::Range(lo, hi) => write!(f, "{lo}-{hi}"),
            ObjectPattern::Glob(s) | ObjectPattern::Exact(s) => f.write_str(s),
        }
    }
}

/// Why an `# objects:` value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectsError {
    #[error("no object given; list VMIDs, ranges (200-299) or names (web-*) separated by spaces")]
    Empty,
    #[error("objects are separated by spaces, not commas")]
    Commas,
    #[error("object {0:?} contains '/' or a control character")]
    BadCharacter(String),
    #[error("range {0:?} is too large")]
    RangeTooLarge(String),
    #[error("range {0:?} is backwards; write the lower bound first")]
    Backwards(String),
}

impl ObjectsError {
    /// The remedy alone, where the message gives one after its "; ".
    pub fn fix(&self) -> Option<String> {
        match self {
            ObjectsError::Empty => {
                Some("list VMIDs, ranges (200-299) or names (web-*) separated by spaces".into())
            }
            ObjectsError::Backwards(_) => Some("write the lower bound first".into()),
            ObjectsError::Commas
            | ObjectsError::BadCharacter(_)
            | ObjectsError::RangeTooLarge(_) => None,
        }
    }
}

/// Parses the value of an `# objects:` line.
pub fn parse_list(value: &str) -> Result<Vec<ObjectPattern>, ObjectsError> {
    if value.trim().is_empty() {
        return Err(ObjectsError::Empty);
    }
    value.split_ascii_whitespace().map(parse_one).collect()
}

fn parse_one(word: &str) -> Result<ObjectPattern, ObjectsError> {
    if word.contains(',') {
        return Err(ObjectsError::Commas);
    }
    if word.contains('/') || word.bytes().any(|b| b.is_ascii_control()) {
        return Err(ObjectsError::BadCharacter(word.to_owned()));
    }
    if let Some((lo, hi)) = word.split_once('-')
        && !lo.is_empty()
        && !hi.is_empty()
        && lo.bytes().all(|b| b.is_ascii_digit())
        && hi.bytes().all(|b| b.is_ascii_digit())
    {
        let (lo, hi): (u64, u64) = match (lo.parse(), hi.parse()) {
            (Ok(lo), Ok(hi)) => (lo, hi),
            _ => return Err(ObjectsError::RangeTooLarge(word.to_owned())),
        };
        if lo > hi {
            return Err(ObjectsError::Backwards(word.to_owned()));
        }
        return Ok(ObjectPattern::Range(lo, hi));
    }
    if word.contains(['*', '?']) {
        Ok(ObjectPattern::Glob(word.to_owned()))
    } else {
        Ok(ObjectPattern::Exact(word.to_owned()))
    }
}

/// Shell-style matching of `*` and `?` (no character classes: object names are simple).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(list: &str, object: &str) -> bool {
        parse_list(list).unwrap().iter().any(|p| p.matches(object))
    }

    #[test]
    fn ranges() {
        assert!(matches("200-299", "200"));
        assert!(matches("200-299", "299"));
        assert!(!matches("200-299", "300"));
        assert!(!matches("200-299", "0250"));
        assert!(!matches("200-299", "web"));
        assert!(matches("0-5", "0"));
    }

    #[test]
    fn globs_and_exact() {
        assert!(matches("web-*", "web-1"));
        assert!(matches("web-*", "web-"));
        assert!(!matches("web-*", "db-1"));
        assert!(matches("*-prod", "db-prod"));
        assert!(matches("vm?", "vm1"));
        assert!(!matches("vm?", "vm12"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("101", "101"));
        assert!(!matches("101", "1010"));
        // A word with a dash that is not two numbers is a name.
        assert!(matches("win-10", "win-10"));
    }

    #[test]
    fn errors() {
        assert!(parse_list("").is_err());
        assert!(parse_list("101,102").is_err());
        assert!(parse_list("5-1").is_err());
        assert!(parse_list("99999999999999999999999-1").is_err());
        assert!(parse_list("../x").is_err());
    }

    #[test]
    fn messages_and_fixes() {
        for (value, message, fix) in [
            (
                "",
                "no object given; list VMIDs, ranges (200-299) or names (web-*) separated by spaces",
                Some("list VMIDs, ranges (200-299) or names (web-*) separated by spaces"),
            ),
            (
                "101,102",
                "objects are separated by spaces, not commas",
                None,
            ),
            (
                "a/b",
                "object \"a/b\" contains '/' or a control character",
                None,
            ),
            (
                "1-99999999999999999999999",
                "range \"1-99999999999999999999999\" is too large",
                None,
            ),
            (
                "5-1",
                "range \"5-1\" is backwards; write the lower bound first",
                Some("write the lower bound first"),
            ),
        ] {
            let e = parse_list(value).unwrap_err();
            assert_eq!(e.to_string(), message);
            assert_eq!(e.fix().as_deref(), fix, "{value}");
        }
    }
}
