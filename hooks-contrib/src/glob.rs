//! Shell-style name patterns as `retentions` uses them: Python's `fnmatch` on the file
//! **name** (`pathlib.Path.glob` of a one-component pattern, and `fnmatch` for
//! `--protect`). Case-sensitive (POSIX), `*` matches any run of bytes including a
//! leading dot, `?` one character, `[abc]`, `[a-z]` and `[!abc]` a set; an unclosed `[`
//! is a literal. Matching is on bytes, with UTF-8 sequences treated as one character for
//! `?` and sets, so non-UTF-8 names still match `*`.
//!
//! Hand-written because `fnmatch`'s exact semantics are the contract (the glob crates
//! treat leading dots, `[!` and unclosed `[` differently).

/// One compiled pattern element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Set {
        negate: bool,
        items: Vec<(char, char)>,
    },
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    toks: Vec<Tok>,
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    toks.push(Tok::Any);
                    i += 1;
                }
                '[' => match parse_set(&chars, i) {
                    Some((tok, next)) => {
                        toks.push(tok);
                        i = next;
                    }
                    None => {
                        toks.push(Tok::Lit('['));
                        i += 1;
                    }
                },
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        Pattern {
            source: pattern.to_owned(),
            toks,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` (a file name, not a path) matches the whole pattern.
    pub fn matches(&self, name: &[u8]) -> bool {
        let chars = decode(name);
        match_from(&self.toks, &chars)
    }
}

/// Parses `[...]` starting at `start` (the `[`); `None` when it is not closed.
fn parse_set(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let mut negate = false;
    if i < chars.len() && chars[i] == '!' {
        negate = true;
        i += 1;
    }
    let mut items = Vec::new();
    // A `]` right after `[` or `[!` is a literal member.
    if i < chars.len() && chars[i] == ']' {
        items.push((']', ']'));
        i += 1;
    }
    while i < chars.len() && chars[i] != ']' {
        let lo = chars[i];
        if i + 2 < chars.len() && chars[i + 1] == '-' && chars[i + 2] != ']' {
            let hi = chars[i + 2];
            // Python drops empty ranges such as z-a.
            if lo <= hi {
                items.push((lo, hi));
            }
            i += 3;
        } else {
            items.push((lo, lo));
            i += 1;
        }
    }
    if i >= chars.len() {
        return None;
    }
    Some((Tok::Set { negate, items }, i + 1))
}

/// One matched unit of a name: a decoded character, or a byte that is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Char(char),
    Byte(u8),
}

fn decode(name: &[u8]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        out.extend(chunk.valid().chars().map(Unit::Char));
        out.extend(chunk.invalid().iter().map(|&b| Unit::Byte(b)));
    }
    out
}

fn match_one(tok: &Tok, unit: Unit) -> bool {
    match (tok, unit) {
        (Tok::Any, _) => true,
        (Tok::Lit(c), Unit::Char(u)) => *c == u,
        (Tok::Set { negate, items }, Unit::Char(u)) => {
            items.iter().any(|&(lo, hi)| lo <= u && u <= hi) != *negate
        }
        (Tok::Set { negate, .. }, Unit::Byte(_)) => *negate,
        (Tok::Lit(_), Unit::Byte(_)) | (Tok::Star, _) => false,
    }
}

/// Iterative wildcard matching with single-star backtracking (linear in practice).
fn match_from(toks: &[Tok], name: &[Unit]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if t < toks.len() && toks[t] == Tok::Star {
            star = Some((t, n));
            t += 1;
        } else if t < toks.len() && match_one(&toks[t], name[n]) {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            t = st + 1;
            n = sn + 1;
            star = Some((st, sn + 1));
        } else {
            return false;
        }
    }
    toks[t..].iter().all(|x| *x == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", ".retentions.lock", true),
            ("*", "", true),
            (
                "vzdump-qemu-*.vma.zst.gpg",
                "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.gpg",
                true,
            ),
            (
                "vzdump-qemu-*.vma.zst.gpg",
                "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.notes",
                false,
            ),
            (
                "vzdump-qemu-*.vma.zst.gpg",
                "vzdump-lxc-101-2026_01_31-01_00_00.vma.zst.gpg",
                false,
            ),
            ("*.log", "a.log", true),
            ("*.log", "a.log.1", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aäc", true),
            ("[ab]*", "banana", true),
            ("[!ab]*", "banana", false),
            ("[!ab]*", "cherry", true),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[]]x", "]x", true),
            ("[x", "[x", true),
            ("[x", "x", false),
            ("*.TAR", "a.tar", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**", "x", true),
        ];
        for &(p, name, want) in cases {
            assert_eq!(
                Pattern::new(p).matches(name.as_bytes()),
                want,
                "{p:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn non_utf8_names() {
        assert!(Pattern::new("a*").matches(b"a\xff\xfe"));
        assert!(Pattern::new("a?").matches(b"a\xff"));
        assert!(!Pattern::new("a[b]").matches(b"a\xff"));
        assert!(Pattern::new("a[!b]").matches(b"a\xff"));
    }
}
