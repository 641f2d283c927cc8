//! Typed errors of the core. Each says what is wrong, with what, and how to fix it.
//!
//! The errors of one module live beside it: [`crate::perms::PermError`],
//! [`crate::header::HeaderError`] (with [`crate::header::ValueError`]),
//! [`crate::lock::LockError`], [`crate::objects::ObjectsError`],
//! [`crate::privilege::KeyError`]. `Display` is the whole message, the words every
//! command prints; `fix()` is the remedy alone, so a report can show it apart without
//! cutting it out of the text.

use std::fmt;
use std::path::PathBuf;

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Why a whole dispatch could not look at its hooks.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "hooks directory {path} does not exist; create it (mkdir -m 0755 {path}) or point HOOKRUN_HOOKS_DIR / hooks_dir in the config at the right one"
    )]
    HooksDirMissing { path: String },
    #[error("hooks directory {path} is not a directory")]
    HooksDirNotADirectory { path: String },
    #[error("cannot read hooks directory {path}: {source}")]
    HooksDirUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl DispatchError {
    /// The command that fixes it, when there is one.
    pub fn fix(&self) -> Option<String> {
        match self {
            DispatchError::HooksDirMissing { path } => Some(format!("mkdir -m 0755 {path}")),
            DispatchError::HooksDirNotADirectory { .. }
            | DispatchError::HooksDirUnreadable { .. }
            | DispatchError::Config(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_hooks_directory_names_the_command_that_makes_it() {
        let e = DispatchError::HooksDirMissing {
            path: "/etc/hookrun/vzdump.d".into(),
        };
        let fix = e.fix().expect("a fix");
        assert_eq!(fix, "mkdir -m 0755 /etc/hookrun/vzdump.d");
        assert!(e.to_string().contains(&format!("({fix})")), "{e}");
        let e = DispatchError::HooksDirNotADirectory {
            path: "/etc/hookrun/vzdump.d".into(),
        };
        assert_eq!(e.fix(), None);
    }
}
