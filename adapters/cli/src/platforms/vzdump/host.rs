//! Where the host wires vzdump: `/etc/vzdump.conf` and the backup jobs of
//! `/etc/pve/jobs.cfg`.

pub const VZDUMP_CONF: &str = "/etc/vzdump.conf";
pub const JOBS_CFG: &str = "/etc/pve/jobs.cfg";

/// The active `script:` line of `/etc/vzdump.conf`: `(line number, value)`. vzdump
/// reads it with `PVE::JSONSchema::parse_config`: surrounding whitespace is stripped,
/// lines starting with `#` are comments, `key: value` with the key ending at the first
/// `:`, and a later line wins.
pub fn vzdump_script(text: &str) -> Option<(usize, String)> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(value) = script_line_value(line) {
            found = Some((i + 1, value.to_owned()));
        }
    }
    found
}

/// The value of a `script:` line of vzdump.conf.
pub fn script_line_value(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("script:")?;
    Some(rest.trim()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzdump_script_reads_lines_like_parse_config() {
        let text = "# comment\n#script: /x\ntmpdir: /tmp\nscript: /usr/bin/a\n  script:/b  \r\nscript : /usr/bin/c\n";
        assert_eq!(vzdump_script(text), Some((5, "/b".into())));
        assert_eq!(vzdump_script("  #script: FILENAME\nscript:\n"), None);
    }
}
