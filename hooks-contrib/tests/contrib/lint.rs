//! Every contrib hook passes `hookrun lint --strict` and, for shell hooks, `shellcheck`;
//! the headers say what the README says they do.

use std::os::unix::fs::PermissionsExt;

use std::process::Command;

use hookrun_core::header::{self, Mode, OnError, Phases};

use crate::common::*;

fn hook_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(hooks_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(v.len() >= 4, "hooks.d lost its hooks: {v:?}");
    v
}

#[test]
fn shell_hooks_pass_shellcheck() {
    require_tool("shellcheck", "shellcheck");
    let mut checked = 0;
    for path in hook_files() {
        let content = std::fs::read_to_string(&path).unwrap();
        let first = content.lines().next().unwrap_or_default();
        if !(first.starts_with("#!/bin/sh")
            || first.starts_with("#!/bin/bash")
            || first.contains("env bash"))
        {
            continue;
        }
        let out = run(Command::new("shellcheck")
            .arg("--severity=style")
            .arg(&path));
        assert!(
            out.status.success(),
            "shellcheck {}:\n{}",
            path.display(),
            text(&out.stdout)
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "every contrib hook is a shell script");
}

#[test]
fn hooks_pass_hookrun_lint_strictly() {
    // Linted from a copy: a checkout's group/other write bits come from the umask of
    // whoever cloned it, not from the repository, and lint (rightly) refuses them. The
    // copy keeps each file's execute bits as git stored them.
    let copy = tempfile::tempdir().unwrap();
    std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for path in hook_files() {
        let dest = copy.path().join(path.file_name().unwrap());
        std::fs::copy(&path, &dest).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o755;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = run(Command::new(hookrun())
        .args(["lint", "--strict"])
        .arg(copy.path())
        .env_remove("HOOKRUN_CONFIG"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let n = hook_files().len();
    assert!(
        stdout.contains(&format!("{n} file(s) checked: 0 error(s), 0 warning(s)")),
        "{stdout}"
    );
}

fn parsed(name: &str) -> header::Header {
    let bytes = std::fs::read(hooks_dir().join(name)).unwrap();
    let h = header::parse(&bytes, false);
    assert!(h.errors.is_empty(), "{name}: {:?}", h.errors);
    h
}

fn phases(list: &[&str]) -> Option<Phases> {
    Some(Phases::List(list.iter().map(|s| s.to_string()).collect()))
}

#[test]
fn headers_are_as_documented() {
    let h = parsed("copy-encrypt-retain");
    assert_eq!(h.mode, Some(Mode::Async));
    assert_eq!(h.phases, phases(&["log-end"]));
    assert!(h.mk_job);
    assert_eq!(h.lock.as_deref(), Some("copy-encrypt-retain"));

    let h = parsed("require-mount");
    assert_eq!(h.mode, Some(Mode::Sync));
    assert_eq!(h.on_error, Some(OnError::Abort));
    assert_eq!(h.phases, phases(&["job-start", "pre-start", "prepare"]));
    assert!(h.timeout.is_some());

    let h = parsed("healthchecks-ping");
    assert_eq!(h.mode, Some(Mode::Sync));
    assert_eq!(h.on_error, Some(OnError::Warn));
    assert_eq!(
        h.phases,
        phases(&["job-start", "job-end", "job-abort", "backup-abort"])
    );

    let h = parsed("webhook");
    assert_eq!(h.mode, Some(Mode::Sync));
    assert_eq!(h.on_error, Some(OnError::Warn));
    assert!(h.timeout.is_some());

    for path in hook_files() {
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o755,
            "{}: hooks ship 0755 (hookrun refuses group/other-writable hooks)",
            path.display()
        );
    }
}

#[test]
fn the_readme_documents_every_hook_and_tool() {
    let readme = std::fs::read_to_string(hooks_dir().parent().unwrap().join("README.md")).unwrap();
    for path in hook_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not document {name}"
        );
    }
    for tool in ["hookrun-retain", "hookrun-copy-encrypt-retain"] {
        assert!(readme.contains(tool), "README.md does not document {tool}");
    }
}
