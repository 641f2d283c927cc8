//! Contributed hooks (DESIGN §8). Not built yet: they arrive with their own issue, and
//! until then each binary refuses to run rather than pretending to have done its job.

/// Reports that `tool` is not available in this build; returns the exit code.
pub fn not_built(tool: &str) -> i32 {
    hookrun_core::logging::init("hookrun", false);
    tracing::error!("{tool} is not implemented in this build; nothing was done");
    70
}
