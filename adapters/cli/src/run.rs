//! `hookrun run`: the generic adapter for tools without one of their own.

use hookrun_core::header::OnError;
use hookrun_core::{Request, discover};

use crate::cli::{OnErrorArg, RunArgs};
use crate::platforms;

pub fn main(args: &RunArgs) -> anyhow::Result<i32> {
    platforms::validate_name(&args.platform)?;
    if args.phase.is_empty() {
        anyhow::bail!("--phase must not be empty");
    }
    let config = crate::load_config()?;
    let settings = config.settings_for(&args.platform);
    let platform = platforms::platform(&args.platform);
    let dir = match &args.hooks_dir {
        Some(d) => d.clone(),
        None => hookrun_core::resolve_hooks_dir(&settings, None, &platform.default_hooks_dir),
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
        env: Vec::new(),
        stdin: None,
        default_on_error,
        may_fail: true,
        implicit: platform.implicit,
        filter: false,
        platform_grace: None,
    };
    match hookrun_core::dispatch(&settings, &dir, &req) {
        Ok(report) => Ok(report.exit_code),
        Err(e) => Err(crate::Exit::error(
            crate::EXIT_CONFIG,
            format!("{e}; no hooks were run"),
        )),
    }
}
