//! `hookrun run`: the generic adapter for tools without one of their own.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

use hookrun_core::header::OnError;
use hookrun_core::{Request, discover};

use crate::cli::{OnErrorArg, RunArgs};
use crate::platforms;

pub fn main(args: &RunArgs) -> anyhow::Result<i32> {
    platforms::validate_name(&args.platform)?;
    if args.phase.is_empty() {
        anyhow::bail!("--phase must not be empty");
    }
    let env = args
        .env
        .iter()
        .map(|a| parse_env(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::Exit::error(crate::EXIT_USAGE, e))?;
    let config = crate::load_config()?;
    let settings = config.settings_for(&args.platform);
    let platform = platforms::get(&args.platform);
    let dir = match &args.hooks_dir {
        Some(d) => d.clone(),
        None => hookrun_core::resolve_hooks_dir(
            &settings,
            None,
            &platform.default_hooks_dir(&crate::host::Host::local()),
        ),
    };
    let default_on_error = match args.on_error_default {
        OnErrorArg::Abort => OnError::Abort,
        OnErrorArg::Fail => OnError::Fail,
        OnErrorArg::Warn => OnError::Warn,
    };
    if args.dry_run {
        let entries = discover::scan(&dir)?;
        print!(
            "{}",
            crate::list::plan(
                &settings,
                &dir,
                &entries,
                &args.phase,
                args.object.as_deref(),
                default_on_error
            )
        );
        return Ok(0);
    }
    let req = Request {
        platform: args.platform.clone(),
        phase: args.phase.clone(),
        object: args.object.clone().filter(|o| !o.is_empty()),
        args: args.args.clone(),
        env,
        stdin: None,
        default_on_error,
        may_fail: true,
        implicit: platform.implicit(),
        filter: false,
        platform_grace: None,
    };
    match hookrun_core::dispatch(&settings, &dir, &req) {
        Ok(report) => Ok(exit_code(&report, args.abort_code)),
        Err(e) => Err(crate::Exit::error(
            crate::EXIT_CONFIG,
            format!("{e}; no hooks were run"),
        )),
    }
}

/// The dispatch's exit code, with `--abort-code` applied: it replaces the code only when
/// the first failure that counts is an `on-error: abort` hook, so an earlier `fail`
/// hook's error is never turned into the caller's "skip quietly" code, and a stop by a
/// signal keeps its 128+N.
fn exit_code(report: &hookrun_core::Report, abort_code: Option<u8>) -> i32 {
    let Some(code) = abort_code else {
        return report.exit_code;
    };
    if report.exit_code == 0 || report.stopped_by.is_some() {
        return report.exit_code;
    }
    let first = report
        .hooks
        .iter()
        .find(|h| h.failed() && h.on_error != OnError::Warn);
    match first {
        Some(h) if h.on_error == OnError::Abort => i32::from(code),
        _ => report.exit_code,
    }
}

/// Splits one `--env NAME=VALUE`. The name must be a POSIX variable name (what a shell
/// hook can read as `$NAME`); the value is everything after the first `=`, bytes as
/// given, so newlines and non-UTF-8 survive. `HOOKRUN_*` is refused because hookrun
/// sets those itself and would silently override the caller's value.
fn parse_env(arg: &OsStr) -> Result<(OsString, OsString), String> {
    let bytes = arg.as_bytes();
    let shown = arg.to_string_lossy();
    let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
        return Err(format!(
            "--env {shown:?}: expected NAME=VALUE (for an empty value write {shown}=)"
        ));
    };
    let (name, value) = (&bytes[..eq], &bytes[eq + 1..]);
    let valid = name
        .first()
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    let name_shown = String::from_utf8_lossy(name);
    if !valid {
        return Err(format!(
            "--env {shown:?}: {name_shown:?} is not a valid variable name; use letters, digits and _, not starting with a digit (e.g. BACKREST_ERROR=...)"
        ));
    }
    if name.starts_with(b"HOOKRUN_") {
        return Err(format!(
            "--env {shown:?}: names starting with HOOKRUN_ are set by hookrun itself; pick another name"
        ));
    }
    Ok((
        OsStr::from_bytes(name).to_owned(),
        OsStr::from_bytes(value).to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;

    use super::parse_env;

    #[test]
    fn env_values_are_kept_byte_for_byte() {
        let raw = b"MSG=a=b\n'$x\xff\n";
        let (k, v) = parse_env(OsStr::from_bytes(raw)).expect("valid");
        assert_eq!(k.as_bytes(), b"MSG");
        assert_eq!(v.as_bytes(), &raw[4..]);
        let (k, v) = parse_env(OsStr::new("_EMPTY=")).expect("valid");
        assert_eq!((k.as_bytes(), v.as_bytes()), (&b"_EMPTY"[..], &b""[..]));
    }

    #[test]
    fn env_names_are_checked() {
        for bad in [
            "NOEQUALS",
            "=x",
            "1ABC=x",
            "A-B=x",
            "A B=x",
            "É=x",
            "HOOKRUN_PHASE=x",
        ] {
            let err = parse_env(OsStr::new(bad)).expect_err(bad);
            assert!(err.starts_with("--env "), "{bad}: {err}");
        }
    }
}
