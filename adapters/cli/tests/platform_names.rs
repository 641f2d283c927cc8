//! Everything the CLI knows about a platform lives in `src/platforms/<name>/`: no file
//! outside `src/platforms/` may name a platform, its host paths or its phases — in
//! code, strings or comments. A new check for one platform written into `doctor/` or
//! `install.rs` fails here and belongs in that platform's folder.

use std::path::{Path, PathBuf};

/// Words that only mean something for one platform (matched case-insensitively):
/// platform and adapter names, the programs that call the adapters, their files and
/// directories, and phase names no other platform has.
const PLATFORM_WORDS: &[&str] = &[
    "vzdump",
    "pve-guest",
    "pve_guest",
    "pveguest",
    "proxmox",
    "libvirt",
    "qemu",
    "lxc",
    "virsh",
    "hookrun-worker",
    "hookrun_worker",
    "/etc/pve",
    "/etc/libvirt",
    "jobs.cfg",
    "storage.cfg",
    "snippets",
    "backup-start",
    "job-start",
    "job-init",
    "pre-start",
    "post-start",
];

/// The one exception: `cli.rs`'s help text. clap's derive takes it from doc comments
/// and literal `about` strings, and it is also the source of the man pages and shell
/// completions (`docs/man/`, `completions/`), which name the platforms for the reader.
/// Every value that means a platform (`install`'s platforms, `--driver`'s drivers,
/// `list`'s default) comes from the registry.
fn is_help_text(file: &Path, line: &str, in_about: bool) -> bool {
    file.file_name().is_some_and(|n| n == "cli.rs")
        && (line.trim_start().starts_with("///") || in_about)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut items: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `file:line: word` for every platform word outside the allowed places.
fn offences(src: &Path) -> Vec<String> {
    let platforms = src.join("platforms");
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&platforms)) {
        let text = std::fs::read_to_string(file).unwrap();
        let mut in_about = false;
        for (i, line) in text.lines().enumerate() {
            // `long_about = "..."` spans lines: its continuation lines are help text.
            let opens = line.trim_start().starts_with("long_about = \"");
            in_about |= opens;
            let lower = line.to_lowercase();
            if !is_help_text(file, line, in_about) {
                for w in PLATFORM_WORDS.iter().filter(|w| lower.contains(*w)) {
                    found.push(format!("{}:{}: {w}", file.display(), i + 1));
                }
            }
            if in_about && line.trim_end().ends_with("\",") {
                in_about = false;
            }
        }
    }
    found
}

#[test]
fn only_the_platform_folders_name_platforms() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = offences(&src);
    assert!(
        found.is_empty(),
        "platform-specific words outside src/platforms/ (move the code into the platform's folder, or ask the registry):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_a_platform_word() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("platforms/vzdump")).unwrap();
    std::fs::create_dir_all(src.join("doctor")).unwrap();
    // Inside the platforms' folders: allowed.
    std::fs::write(
        src.join("platforms/vzdump/mod.rs"),
        "const C: &str = \"/etc/vzdump.conf\";\n",
    )
    .unwrap();
    // Outside: in code, in a comment, in cli.rs's code; but not cli.rs's help text.
    std::fs::write(
        src.join("doctor/mod.rs"),
        "fn f() {}\n// checks /etc/PVE/jobs.cfg\nlet p = \"pre-start\";\n",
    )
    .unwrap();
    std::fs::write(
        src.join("cli.rs"),
        "    /// Walk a vzdump job\n    long_about = \"for libvirt \\\nand LXC\",\n    default_value = \"qemu\",\n",
    )
    .unwrap();
    let found = offences(&src);
    let shown: Vec<String> = found
        .iter()
        .map(|f| {
            f.strip_prefix(&format!("{}/", src.display()))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        shown,
        [
            "cli.rs:4: qemu",
            "doctor/mod.rs:2: /etc/pve",
            "doctor/mod.rs:2: jobs.cfg",
            "doctor/mod.rs:3: pre-start",
        ]
    );
}
