//! `hookrun demo`: a simulated job of the platform that has a demo (see its folder
//! under `platforms/`), run through its real adapter binary and the example hooks.

use crate::cli::DemoArgs;

pub fn main(args: &DemoArgs) -> anyhow::Result<i32> {
    crate::platforms::all()
        .iter()
        .find_map(|p| p.demo(args))
        .unwrap_or_else(|| anyhow::bail!("no platform has a demo"))
}
