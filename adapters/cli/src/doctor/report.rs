//! Findings, their severity, and the report as text or JSON.

use std::fmt::Write as _;

use super::shown;
use crate::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Ok,
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub severity: Severity,
    pub subject: String,
    pub message: String,
    pub fix: Option<String>,
}

/// The findings of one platform (or of `hookrun` itself: what all platforms share).
#[derive(Debug)]
pub(crate) struct Section {
    pub name: String,
    pub in_use: bool,
    /// Why the platform is not in use, for the short list at the end of the text.
    pub unused: Option<String>,
    pub findings: Vec<Finding>,
}

impl Section {
    pub(crate) fn new(name: &str) -> Section {
        Section {
            name: name.to_owned(),
            in_use: true,
            unused: None,
            findings: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, severity: Severity, subject: &str, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            subject: subject.to_owned(),
            message: message.into(),
            fix: None,
        });
    }

    pub(crate) fn fix(
        &mut self,
        severity: Severity,
        subject: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            subject: subject.to_owned(),
            message: message.into(),
            fix: Some(fix.into()),
        });
    }

    /// The platform is not wired to hookrun and has no hooks directory: `why`, and how
    /// to wire it.
    pub(crate) fn not_in_use(&mut self, why: String, fix: Option<String>) {
        self.in_use = false;
        self.findings.push(Finding {
            severity: Severity::Note,
            subject: "wiring".into(),
            message: format!("not in use: {why}"),
            fix,
        });
        self.unused = Some(why);
    }

    pub(crate) fn ok(&mut self, subject: &str, message: impl Into<String>) {
        self.add(Severity::Ok, subject, message);
    }

    pub(crate) fn note(&mut self, subject: &str, message: impl Into<String>) {
        self.add(Severity::Note, subject, message);
    }
}
pub(super) fn text(host: &Host, sections: &[Section], errors: usize, warnings: usize) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "hookrun doctor: adapters expected in {}",
        shown(&host.path(&host.bin_dir))
    );
    if !host.is_real() {
        let _ = write!(out, " (root {})", shown(&host.root));
    }
    out.push('\n');
    let mut unused = Vec::new();
    for sec in sections {
        let problems = sec.findings.iter().any(|f| f.severity >= Severity::Warning);
        if !sec.in_use && !problems {
            let why = sec.unused.as_deref().unwrap_or_default();
            unused.push(format!("  {:<16} {why}", sec.name));
            continue;
        }
        let _ = writeln!(
            out,
            "\n{}{}",
            sec.name,
            if sec.in_use {
                ""
            } else {
                " (not in use by hookrun)"
            }
        );
        for f in &sec.findings {
            let _ = writeln!(
                out,
                "  {:<8} {}: {}",
                f.severity.as_str(),
                f.subject,
                f.message
            );
            if let Some(fix) = &f.fix
                && f.severity >= Severity::Warning
            {
                let _ = writeln!(out, "  {:<8} fix: {fix}", "");
            }
        }
    }
    if !unused.is_empty() {
        let _ = writeln!(
            out,
            "\nnot in use (hookrun install <platform> shows how to wire one):"
        );
        for u in unused {
            let _ = writeln!(out, "{u}");
        }
    }
    let _ = writeln!(
        out,
        "\n{errors} error(s), {warnings} warning(s){}",
        if errors > 0 {
            ": something is broken; run the fixes above"
        } else if warnings > 0 {
            ": nothing is broken, but see the warnings"
        } else {
            ": all good"
        }
    );
    out
}

pub(super) fn json(host: &Host, sections: &[Section], errors: usize, warnings: usize) -> String {
    let mut platforms = serde_json::Map::new();
    for sec in sections {
        let findings: Vec<serde_json::Value> = sec
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "severity": f.severity.as_str(),
                    "subject": f.subject,
                    "message": f.message,
                    "fix": f.fix,
                })
            })
            .collect();
        platforms.insert(
            sec.name.clone(),
            serde_json::json!({ "in_use": sec.in_use, "findings": findings }),
        );
    }
    let doc = serde_json::json!({
        "root": host.root,
        "bin_dir": host.bin_dir,
        "errors": errors,
        "warnings": warnings,
        "platforms": platforms,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise")
}
