//! Licences: the crates.io crates linked into the packaged binaries, for the copyright
//! file.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use super::*;

/// The crates.io crates linked into the packaged binaries (normal dependencies of the
/// packaged crates, proc macros excluded), one ` name version (license)` line each.
pub(super) fn linked_crates(root: &Path) -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "rustc".into());
    let host = output(Command::new(rustc).arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")?;
    let json = output(
        Command::new(crate::cargo())
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .current_dir(root),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&json)?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let by_id = |id: &str| packages.iter().find(|p| p["id"] == id);
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata: no resolve")?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut queue: Vec<String> = members
        .iter()
        .filter(|id| by_id(id).is_some_and(|p| CRATES.iter().any(|c| p["name"] == *c)))
        .map(|id| (*id).to_owned())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == *id.as_str());
        for dep in node
            .and_then(|n| n["deps"].as_array())
            .into_iter()
            .flatten()
        {
            let normal = dep["dep_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()));
            let proc_macro = by_id(dep["pkg"].as_str().unwrap_or_default()).is_some_and(|p| {
                p["targets"].as_array().into_iter().flatten().any(|t| {
                    t["kind"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k == "proc-macro")
                })
            });
            if normal
                && !proc_macro
                && let Some(pkg) = dep["pkg"].as_str()
            {
                queue.push(pkg.to_owned());
            }
        }
    }
    let mut lines: Vec<String> = seen
        .iter()
        .filter(|id| !members.contains(&id.as_str()))
        .filter_map(|id| by_id(id))
        .map(|p| {
            format!(
                " {} {} ({})",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["license"].as_str().unwrap_or("license not declared")
            )
        })
        .collect();
    lines.sort();
    lines.dedup();
    Ok(lines.join("\n"))
}
