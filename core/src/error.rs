//! Typed errors of the core. Each says what is wrong, with what, and how to fix it.

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
