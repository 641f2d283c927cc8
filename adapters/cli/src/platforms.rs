//! What the CLI knows about each platform, from the adapter libraries.

use std::path::PathBuf;

use hookrun_core::OnError;

pub struct Platform {
    pub name: String,
    /// The complete phase list, when the platform has a fixed one.
    pub phases: Option<&'static [&'static str]>,
    pub default_hooks_dir: PathBuf,
    /// `on-error` for hooks that do not say; per phase where the platform distinguishes.
    pub default_on_error: Box<dyn Fn(&str) -> OnError>,
    /// Header-less files that are hooks by name (the worker convention).
    pub implicit: Option<hookrun_core::discover::ImplicitHooks>,
}

pub fn platform(name: &str) -> Platform {
    match name {
        hookrun_vzdump::PLATFORM => Platform {
            name: name.to_owned(),
            phases: Some(hookrun_vzdump::PHASES),
            default_hooks_dir: PathBuf::from(hookrun_vzdump::DEFAULT_HOOKS_DIR),
            default_on_error: Box::new(|_| OnError::Fail),
            implicit: None,
        },
        hookrun_pve_guest::PLATFORM => Platform {
            name: name.to_owned(),
            phases: Some(hookrun_pve_guest::PHASES),
            default_hooks_dir: PathBuf::from(hookrun_pve_guest::DEFAULT_HOOKS_DIR),
            default_on_error: Box::new(hookrun_pve_guest::default_on_error),
            implicit: None,
        },
        hookrun_worker::PLATFORM => Platform {
            name: name.to_owned(),
            phases: None,
            default_hooks_dir: PathBuf::from(
                if std::path::Path::new(hookrun_worker::CONTAINER_HOOKS_DIR).is_dir() {
                    hookrun_worker::CONTAINER_HOOKS_DIR
                } else {
                    hookrun_worker::DEFAULT_HOOKS_DIR
                },
            ),
            default_on_error: Box::new(|_| OnError::Warn),
            implicit: Some(hookrun_worker::IMPLICIT),
        },
        _ if name
            .strip_prefix("libvirt-")
            .is_some_and(|d| hookrun_libvirt::DRIVERS.contains(&d)) =>
        {
            let driver = name.trim_start_matches("libvirt-").to_owned();
            Platform {
                name: name.to_owned(),
                phases: Some(hookrun_libvirt::phases(&driver)),
                default_hooks_dir: PathBuf::from(format!("/etc/hookrun/{name}.d")),
                default_on_error: Box::new(move |op| {
                    hookrun_libvirt::default_on_error(&driver, op)
                }),
                implicit: None,
            }
        }
        _ => Platform {
            name: name.to_owned(),
            phases: None,
            default_hooks_dir: PathBuf::from(format!("/etc/hookrun/{name}.d")),
            default_on_error: Box::new(|_| OnError::Fail),
            implicit: None,
        },
    }
}

/// Platform names become directory and file names: keep them plain.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        || name.starts_with('-')
    {
        return Err(crate::Exit::error(
            crate::EXIT_USAGE,
            format!(
                "platform name {name:?} must be lower-case letters, digits, '-' and '_' (e.g. backrest, borgmatic)"
            ),
        ));
    }
    Ok(())
}
