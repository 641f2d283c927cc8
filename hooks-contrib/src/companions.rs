//! `--delete-companions` rules (`retentions` §4.4): `TYPE:MATCH:C1,C2,...`.
//!
//! TYPE is `prefix` or `suffix` (any case). The string is split on unescaped `:` (exactly
//! three parts) and the companion list on unescaped `,`; `\:` and `\,` stand for the
//! characters themselves. Whitespace around TYPE, MATCH and each companion is dropped.
//! One rule string with *k* companions becomes *k* rules. For a deleted file that a rule
//! matches, the companion name is the file name with MATCH replaced by the companion
//! (at the start for `prefix`, at the end for `suffix`); an empty MATCH matches every
//! file and the companion is then prepended or appended.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Prefix,
    Suffix,
}

/// One match/companion pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub kind: Kind,
    pub matching: String,
    pub companion: String,
}

/// Splits `text` on `delim` where it is not preceded by a backslash, then unescapes
/// `\delim`. Empty text is an error, as in `retentions`.
pub fn split_escaped(delim: char, text: &str, whole: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err(format!(
            "Invalid companion definition: {whole} - Missing value"
        ));
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev_backslash = false;
    for c in text.chars() {
        if c == delim && !prev_backslash {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        prev_backslash = c == '\\';
    }
    parts.push(cur);
    let escaped = format!("\\{delim}");
    Ok(parts
        .into_iter()
        .map(|p| p.replace(&escaped, &delim.to_string()))
        .collect())
}

/// Parses one rule string into its rules.
pub fn parse_rule(def: &str) -> Result<Vec<Rule>, String> {
    let parts = split_escaped(':', def, def)?;
    if parts.len() != 3 {
        return Err(format!(
            "Invalid companion definition: {def} - Expect 3 values, got {} values by splitting on ':'",
            parts.len()
        ));
    }
    let kind = match parts[0].trim().to_ascii_uppercase().as_str() {
        "PREFIX" => Kind::Prefix,
        "SUFFIX" => Kind::Suffix,
        _ => return Err(format!("Invalid CompanionType: {}", parts[0])),
    };
    let matching = parts[1].trim().to_owned();
    let mut rules = Vec::new();
    for companion in split_escaped(',', &parts[2], def)? {
        let companion = companion.trim().to_owned();
        if companion == matching {
            return Err(format!(
                "CompanionRule \"{def}\": 'match' and 'companion' must be different"
            ));
        }
        if companion.is_empty() {
            return Err(format!(
                "CompanionRule \"{def}\": 'companion' must not be empty"
            ));
        }
        rules.push(Rule {
            kind,
            matching: matching.clone(),
            companion,
        });
    }
    Ok(rules)
}

/// Parses every rule string; duplicates are dropped.
pub fn parse_rules(defs: &[String]) -> Result<Vec<Rule>, String> {
    let mut all = std::collections::BTreeSet::new();
    for d in defs {
        all.extend(parse_rule(d)?);
    }
    Ok(all.into_iter().collect())
}

impl Rule {
    pub fn matches(&self, name: &OsStr) -> bool {
        let n = name.as_bytes();
        match self.kind {
            _ if self.matching.is_empty() => true,
            Kind::Prefix => n.starts_with(self.matching.as_bytes()),
            Kind::Suffix => n.ends_with(self.matching.as_bytes()),
        }
    }

    /// The companion's name for `name` (which the rule matches).
    pub fn replace(&self, name: &OsStr) -> OsString {
        let n = name.as_bytes();
        let m = self.matching.len();
        let mut out = Vec::with_capacity(n.len() + self.companion.len());
        match self.kind {
            Kind::Prefix => {
                out.extend_from_slice(self.companion.as_bytes());
                out.extend_from_slice(&n[m.min(n.len())..]);
            }
            Kind::Suffix => {
                out.extend_from_slice(&n[..n.len() - m.min(n.len())]);
                out.extend_from_slice(self.companion.as_bytes());
            }
        }
        OsString::from_vec(out)
    }
}

/// The de-duplicated companion names of `name` under `rules`, in a stable order.
pub fn companions_of(rules: &[Rule], name: &OsStr) -> Vec<OsString> {
    let mut set: Vec<OsString> = rules
        .iter()
        .filter(|r| r.matches(name))
        .map(|r| r.replace(name))
        .collect();
    set.sort();
    set.dedup();
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(rules: &[Rule], name: &str) -> Vec<String> {
        companions_of(rules, OsStr::new(name))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_seed_rule() {
        let rules = parse_rules(&["suffix:.vma.zst.gpg:.vma.zst.notes,.log,.rec".into()]).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(
            names(&rules, "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.gpg"),
            [
                "vzdump-qemu-101-2026_01_31-01_00_00.log",
                "vzdump-qemu-101-2026_01_31-01_00_00.rec",
                "vzdump-qemu-101-2026_01_31-01_00_00.vma.zst.notes",
            ]
        );
        assert!(names(&rules, "other.tar").is_empty());
    }

    #[test]
    fn prefix_whitespace_case_and_empty_match() {
        let rules = parse_rules(&[" PREFIX : backup- : sum- , md5- ".into()]).unwrap();
        assert_eq!(names(&rules, "backup-1.tar"), ["md5-1.tar", "sum-1.tar"]);
        assert!(names(&rules, "x-backup-1.tar").is_empty());
        let rules = parse_rules(&["suffix::.sha256".into()]).unwrap();
        assert_eq!(names(&rules, "a.tar"), ["a.tar.sha256"]);
        let rules = parse_rules(&["prefix::old-".into()]).unwrap();
        assert_eq!(names(&rules, "a.tar"), ["old-a.tar"]);
    }

    #[test]
    fn escapes() {
        let rules = parse_rules(&[r"suffix:a\:b:c\,d,e".into()]).unwrap();
        assert_eq!(
            rules
                .iter()
                .map(|r| (r.matching.as_str(), r.companion.as_str()))
                .collect::<Vec<_>>(),
            [("a:b", "c,d"), ("a:b", "e")]
        );
        assert_eq!(names(&rules, "x.a:b"), ["x.c,d", "x.e"]);
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "suffix:.tar",
            "suffix:.tar:.log:x",
            "infix:.tar:.log",
            "suffix:.tar:",
            "suffix:.tar:.tar",
            "suffix:.tar:.log, ",
            "",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
