//! Licences: the crates.io crates linked into the packaged binaries, for the copyright
//! file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use cargo_metadata::{DependencyKind, MetadataCommand, PackageId, TargetKind};

use super::*;

/// The crates.io crates linked into the packaged binaries (normal dependencies of the
/// packaged crates for the host, proc macros excluded), one ` name version (license)`
/// line each.
pub(super) fn linked_crates(root: &Path) -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "rustc".into());
    let host = output(Command::new(rustc).arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")?;
    let meta = MetadataCommand::new()
        .cargo_path(crate::cargo())
        .current_dir(root)
        .other_options(vec![
            "--locked".to_owned(),
            "--filter-platform".to_owned(),
            host,
        ])
        .exec()
        .context("cargo metadata failed")?;
    let nodes = &meta
        .resolve
        .as_ref()
        .context("cargo metadata: no resolve")?
        .nodes;
    let is_proc_macro = |id: &PackageId| {
        meta.packages.iter().any(|p| {
            &p.id == id
                && p.targets
                    .iter()
                    .any(|t| t.kind.contains(&TargetKind::ProcMacro))
        })
    };
    let mut queue: Vec<&PackageId> = meta
        .workspace_packages()
        .into_iter()
        .filter(|p| CRATES.contains(&p.name.as_str()))
        .map(|p| &p.id)
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id) {
            continue;
        }
        let deps = nodes
            .iter()
            .find(|n| &n.id == id)
            .map(|n| n.deps.as_slice());
        for dep in deps.unwrap_or_default() {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            if normal && !is_proc_macro(&dep.pkg) {
                queue.push(&dep.pkg);
            }
        }
    }
    let mut lines: Vec<String> = seen
        .into_iter()
        .filter(|id| !meta.workspace_members.contains(id))
        .map(|id| {
            let p = &meta[id];
            let license = p.license.as_deref().unwrap_or("license not declared");
            format!(" {} {} ({license})", p.name, p.version)
        })
        .collect();
    lines.sort();
    lines.dedup();
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn linked_crates_are_the_normal_non_macro_dependencies_of_the_packaged_crates() {
        let list = super::linked_crates(&crate::project_root()).unwrap();
        let names: Vec<&str> = list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for linked in ["clap", "nix", "serde_json", "jiff", "quick-xml"] {
            assert!(names.contains(&linked), "{linked} missing from:\n{list}");
        }
        for not_linked in [
            "clap_derive",    // a proc macro
            "proptest",       // a dev-dependency
            "cargo_metadata", // xtask's own, not packaged
            "hookrun-core",   // a workspace member
        ] {
            assert!(!names.contains(&not_linked), "{not_linked} listed:\n{list}");
        }
        assert!(
            list.lines().all(|l| l.starts_with(' ') && l.ends_with(')')),
            "' name version (license)' lines:\n{list}"
        );
    }
}
